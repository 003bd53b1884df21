/** Parses wrk 4.x's text report (run with --latency). */
export interface WrkResult {
  requests: number;
  durationSeconds: number;
  requestsPerSecond: number;
  latencyMs: { avg: number; stdev: number; max: number; p50?: number; p75?: number; p90?: number; p99?: number };
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  non2xx3xx: number;
  /** Every failed request wrk counts: socket errors plus non-2xx/3xx answers. */
  errors: number;
}

export class WrkParseError extends Error {}

const TIME_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** wrk prints times as e.g. "812.00us", "1.23ms", "2.00s", "1.00m". */
export function parseWrkTimeMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new WrkParseError(`not a wrk time: ${JSON.stringify(text)}`);
  // Microseconds are divided rather than multiplied by 0.001, which keeps e.g. 301.55us exactly 0.30155.
  return m[2] === 'us' ? Number(m[1]) / 1000 : Number(m[1]) * TIME_UNITS_MS[m[2]!]!;
}

/** wrk prints durations of the whole run as e.g. "10.01s" or "1.00m". */
function parseDurationSeconds(text: string): number {
  return parseWrkTimeMs(text) / 1000;
}

export function parseWrk(output: string): WrkResult {
  const total = /^\s*(\d+) requests in ([\d.]+(?:us|ms|s|m|h)),/m.exec(output);
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(output);
  if (!total || !rps) throw new WrkParseError(`wrk output has no totals (did it fail?): ${output.trim().slice(0, 500)}`);
  const latencyLine = /^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)/m.exec(output);
  const latencyMs: WrkResult['latencyMs'] = latencyLine
    ? { avg: parseWrkTimeMs(latencyLine[1]!), stdev: parseWrkTimeMs(latencyLine[2]!), max: parseWrkTimeMs(latencyLine[3]!) }
    : { avg: Number.NaN, stdev: Number.NaN, max: Number.NaN };
  // "Latency Distribution" lines: "     99%   44.46ms" (only they start with a percentage).
  for (const m of output.matchAll(/^\s+(50|75|90|99)%\s+(\S+)\s*$/gm)) {
    latencyMs[`p${m[1]}` as 'p50' | 'p75' | 'p90' | 'p99'] = parseWrkTimeMs(m[2]!);
  }
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const socketErrors = socket
    ? { connect: Number(socket[1]), read: Number(socket[2]), write: Number(socket[3]), timeout: Number(socket[4]) }
    : { connect: 0, read: 0, write: 0, timeout: 0 };
  const non2xx3xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  return {
    requests: Number(total[1]),
    durationSeconds: parseDurationSeconds(total[2]!),
    requestsPerSecond: Number(rps[1]),
    latencyMs,
    socketErrors,
    non2xx3xx,
    errors: socketErrors.connect + socketErrors.read + socketErrors.write + socketErrors.timeout + non2xx3xx,
  };
}
