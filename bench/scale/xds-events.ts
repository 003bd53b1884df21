/**
 * What the xDS watcher (bench/tools/xds-watch.ts) prints, one JSON object per line, and how the
 * bench reads it back. Times are wall-clock milliseconds (Date.now()): the watcher and the bench
 * run on the same host, so their clocks are the same.
 */

export type XdsResourceType = 'address' | 'authorization';
export type WorkloadHealth = 'HEALTHY' | 'UNHEALTHY';

export type XdsEvent =
  /** The watcher process started (`processStart`: when node started it) and opens its stream at `t`. */
  | { ev: 'start'; t: number; processStart: number }
  | { ev: 'upsert'; t: number; type: XdsResourceType; name: string; kind?: 'workload' | 'service'; status?: WorkloadHealth; capacity?: number }
  | { ev: 'remove'; t: number; type: XdsResourceType; name: string }
  /** The first response of every type was applied: by the delta protocol, the full state. */
  | { ev: 'synced'; t: number; resources: number };

export type UpsertEvent = Extract<XdsEvent, { ev: 'upsert' }>;

export const formatXdsEvent = (event: XdsEvent): string => JSON.stringify(event);

/** A line of the watcher's output, or undefined for anything else (its log lines share the file). */
export function parseXdsEvent(line: string): XdsEvent | undefined {
  if (!line.startsWith('{"ev":')) return undefined;
  try {
    const event = JSON.parse(line) as XdsEvent;
    return typeof event.t === 'number' ? event : undefined;
  } catch {
    return undefined;
  }
}

export interface ResourceState {
  type: XdsResourceType;
  kind?: 'workload' | 'service';
  status?: WorkloadHealth;
  capacity?: number;
  /** When this version arrived. */
  t: number;
}

export interface FirstFullConfig {
  /** From opening the stream to the full state (the `synced` event), ms. */
  syncedMs: number | null;
  /** From the watcher process's start to the full state, ms (includes starting Node.js). */
  fromProcessStartMs: number | null;
  /** Resources in the full state. */
  resources: number | null;
  /** The first burst: resources that arrived before the first gap of `quietMs`, and when its last one came (ms from stream open). */
  burstResources: number;
  burstEndMs: number | null;
}

/** Every event of one watcher, and the state they add up to. */
export class XdsRecorder {
  readonly events: XdsEvent[] = [];
  readonly state = new Map<string, ResourceState>();

  add(event: XdsEvent): void {
    this.events.push(event);
    if (event.ev === 'upsert') {
      this.state.set(event.name, { type: event.type, t: event.t, ...(event.kind ? { kind: event.kind } : {}), ...(event.status ? { status: event.status } : {}), ...(event.capacity !== undefined ? { capacity: event.capacity } : {}) });
    } else if (event.ev === 'remove') {
      this.state.delete(event.name);
    }
  }

  /** The first upsert of `name` at or after `since` that satisfies `accept`. */
  firstUpsert(name: string, since: number, accept: (e: UpsertEvent) => boolean): UpsertEvent | undefined {
    for (const e of this.events) if (e.ev === 'upsert' && e.name === name && e.t >= since && accept(e)) return e;
    return undefined;
  }

  /** Workloads whose name starts with `prefix`, by health. */
  countWorkloads(prefix: string): { healthy: number; unhealthy: number } {
    let healthy = 0;
    let unhealthy = 0;
    for (const [name, s] of this.state) {
      if (s.kind !== 'workload' || !name.startsWith(prefix)) continue;
      if (s.status === 'HEALTHY') healthy++;
      else unhealthy++;
    }
    return { healthy, unhealthy };
  }

  firstFullConfig(quietMs = 1000): FirstFullConfig {
    const start = this.events.find((e): e is Extract<XdsEvent, { ev: 'start' }> => e.ev === 'start');
    const synced = this.events.find((e): e is Extract<XdsEvent, { ev: 'synced' }> => e.ev === 'synced');
    const burst = firstBurst(this.events.filter((e) => e.ev === 'upsert').map((e) => e.t), quietMs);
    return {
      syncedMs: start && synced ? synced.t - start.t : null,
      fromProcessStartMs: start && synced ? synced.t - start.processStart : null,
      resources: synced ? synced.resources : null,
      burstResources: burst.count,
      burstEndMs: start && burst.lastAt !== undefined ? burst.lastAt - start.t : null,
    };
  }
}

/** The arrivals before the first gap of at least `quietMs` (ascending times). */
export function firstBurst(times: readonly number[], quietMs: number): { count: number; lastAt?: number } {
  if (times.length === 0) return { count: 0 };
  let count = 1;
  while (count < times.length && times[count]! - times[count - 1]! < quietMs) count++;
  return { count, lastAt: times[count - 1]! };
}
