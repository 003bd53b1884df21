/** Reading untyped Kubernetes objects field by field: each problem names the object and the field. */
import type { KubernetesObject } from '@kubernetes/client-node';

export interface Problem {
  /** `<Kind>/<namespace>/<name>`. */
  object: string;
  /** JSONPath-ish, as the user wrote it: `spec.http[0].route[0].destination.host`. */
  field: string;
  message: string;
}

export class InvalidObjectError extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.object}: ${problem.field}: ${problem.message}`);
  }
}

export function objectKey(kind: string, object: KubernetesObject): string {
  return `${kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

/** A cursor on one field of one object; every accessor throws InvalidObjectError naming the field. */
export class Field {
  constructor(
    readonly object: string,
    readonly path: string,
    readonly value: unknown,
  ) {}

  fail(message: string): never {
    throw new InvalidObjectError({ object: this.object, field: this.path, message });
  }

  child(key: string): Field {
    const record = this.value === undefined || this.value === null ? undefined : this.mapping();
    return new Field(this.object, this.path ? `${this.path}.${key}` : key, record?.[key]);
  }

  get present(): boolean {
    return this.value !== undefined && this.value !== null;
  }

  mapping(): Record<string, unknown> {
    if (typeof this.value !== 'object' || this.value === null || Array.isArray(this.value)) this.fail(`expected a mapping, got ${describe(this.value)}`);
    return this.value as Record<string, unknown>;
  }

  /** Items of a list (absent: none). */
  items(): Field[] {
    if (!this.present) return [];
    if (!Array.isArray(this.value)) this.fail(`expected a list, got ${describe(this.value)}`);
    return this.value.map((item, i) => new Field(this.object, `${this.path}[${i}]`, item));
  }

  string(): string {
    if (typeof this.value !== 'string') this.fail(`expected a string, got ${describe(this.value)}`);
    return this.value;
  }

  optionalString(): string | undefined {
    return this.present ? this.string() : undefined;
  }

  nonEmptyString(): string {
    const value = this.string();
    if (value === '') this.fail('must not be empty');
    return value;
  }

  integer(min: number, max: number): number {
    if (typeof this.value !== 'number' || !Number.isInteger(this.value)) this.fail(`expected a whole number, got ${describe(this.value)}`);
    if (this.value < min || this.value > max) this.fail(`must be between ${min} and ${max}, got ${this.value}`);
    return this.value;
  }

  port(): number {
    return this.integer(1, 65535);
  }

  /** A mapping of strings to strings (label selectors, header maps keyed by name). */
  stringMap(): Record<string, string> {
    if (!this.present) return {};
    const out: Record<string, string> = {};
    for (const key of Object.keys(this.mapping())) out[key] = this.child(key).string();
    return out;
  }

  /** A protobuf Duration as Istio writes it (`2s`, `0.5s`, `100ms`, `1m`, `1h`), in whole milliseconds within [min, max]. */
  durationMs(minMs = 1, maxMs = 86_400_000): number {
    const text = this.string();
    // One or more number+unit parts: "2s", "0.5s", "100ms", "1m30s" (Gateway API's form too).
    if (!/^(\d+(?:\.\d+)?(ms|s|m|h))+$/.test(text)) this.fail(`expected a duration such as "2s", "100ms" or "1m30s", got "${text.slice(0, 40)}"`);
    const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
    let total = 0;
    for (const part of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(part[1]) * units[part[2] as keyof typeof units];
    const ms = Math.round(total);
    if (ms < minMs || ms > maxMs) this.fail(`must be between ${minMs} ms and ${maxMs} ms, got ${text}`);
    return ms;
  }

  /** A percentage 0–100 (Istio's `Percent { value }` or a number). */
  percent(): number {
    const value = typeof this.value === 'object' && this.value !== null && !Array.isArray(this.value) ? this.child('value').value : this.value;
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(`expected a percentage, got ${describe(value)}`);
    if (value < 0 || value > 100) this.fail(`must be between 0 and 100, got ${value}`);
    return value;
  }

  /** A regular expression that must compile (matched against the whole value). */
  regex(): string {
    const source = this.string();
    try {
      new RegExp(`^(?:${source})$`);
    } catch (err) {
      this.fail(`not a valid regular expression: ${(err as Error).message}`);
    }
    return source;
  }
}

function describe(value: unknown): string {
  if (value === undefined || value === null) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return typeof value === 'string' ? `"${value.slice(0, 100)}"` : `${typeof value} ${String(value)}`;
}

export function specOf(kind: string, object: KubernetesObject): Field {
  return new Field(objectKey(kind, object), 'spec', (object as { spec?: unknown }).spec ?? {});
}
