/**
 * Durations as users write them in values and flags: Go-style sums of number+unit (`24h`, `1h30m`,
 * `500ms`, `1.5h`), plus `d` for days (`90d`). The control plane and ztunnel parse the
 * WORKLOAD_CERT_TTL / MAX_WORKLOAD_CERT_TTL environment variables with the same function.
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/** Milliseconds in `text`, or undefined when it is not a positive duration. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!WHOLE.test(trimmed)) return undefined;
  let total = 0;
  for (const [, amount, unit] of trimmed.matchAll(PART)) total += Number(amount) * UNIT_MS[unit!]!;
  return total > 0 && Number.isFinite(total) ? Math.round(total) : undefined;
}

export class DurationError extends Error {}

/** Like parseDuration, but throws a message naming `what` (a flag or field) and the bad text. */
export function requireDuration(text: string, what: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new DurationError(`${what}: expected a duration like 24h, 20s or 90d, got "${text}"`);
  return ms;
}

/** Shortest readable form: 90d, 24h, 1h30m, 20s, 500ms. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const unit of ['d', 'h', 'm', 's', 'ms'] as const) {
    const size = UNIT_MS[unit]!;
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('');
}
