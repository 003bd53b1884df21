/**
 * From the probe's log and the moments policies were written, how long each change took to be
 * enforced: on new connections (both directions) and on the open keep-alive connection. Pure.
 */
import { summarize } from '../stats.js';
import type { AttemptEvent, ProbeEvent } from './events.js';

/** One write of the policy to the Kubernetes API: request sent at `sent`, response received at `ack` (wall-clock ms). */
export interface PolicyWrite {
  change: 'applied' | 'removed';
  sent: number;
  ack: number;
}

export interface TransitionOptions {
  /** The outcome the write leads to: answered once the DENY is removed, refused once it is applied. */
  expectAnswered: boolean;
  /** How long (by connection start) the new outcome must hold without exception to count as enforced. */
  settleMs: number;
  /** Attempts that started at or after this are not looked at: the next write, or while the bench waits, the moment before which every attempt has been logged. */
  until: number;
}

/**
 * ms from the write's acknowledgement to the first new-outcome connection of the run of
 * new-outcome connections after which no connection had the old outcome (up to `until`); that
 * run must span `settleMs`. Connections are ordered by when they were opened; the latency runs
 * to the earliest moment one of them saw the new outcome. Undefined: not (yet) enforced. Can be
 * ≤ 0 when the change was enforced before the API's answer reached the bench.
 */
export function newConnectionLatency(attempts: readonly AttemptEvent[], write: PolicyWrite, o: TransitionOptions): number | undefined {
  const seen = attempts.filter((a) => a.start >= write.sent && a.start < o.until).sort((a, b) => a.start - b.start);
  let lastOld = -1;
  for (let i = 0; i < seen.length; i++) if (seen[i]!.answered !== o.expectAnswered) lastOld = i;
  const run = seen.slice(lastOld + 1);
  if (!run.length || run[run.length - 1]!.start - run[0]!.start < o.settleMs) return undefined;
  return Math.min(...run.map((a) => a.end)) - write.ack;
}

export type OpenConnectionCut =
  | { state: 'cut'; ms: number; reason: string }
  | { state: 'not cut' }
  /** No keep-alive connection was open when the write was sent (nothing to measure). */
  | { state: 'none open' };

/** The keep-alive connection open when the DENY was written: ms from the write's acknowledgement to its end (before `until`). */
export function openConnectionCut(events: readonly ProbeEvent[], write: PolicyWrite, until: number): OpenConnectionCut {
  let open: number | undefined;
  let openSince = -Infinity;
  for (const e of events) if (e.kind === 'established' && e.t < write.sent && e.t > openSince) [open, openSince] = [e.conn, e.t];
  if (open === undefined) return { state: 'none open' };
  const closed = events.find((e) => e.kind === 'closed' && e.conn === open);
  if (closed?.kind !== 'closed') return { state: 'not cut' };
  if (closed.t < write.sent) return { state: 'none open' };
  if (closed.t >= until) return { state: 'not cut' };
  return { state: 'cut', ms: closed.t - write.ack, reason: closed.reason };
}

/** A keep-alive connection got its first answer after `t`. */
export const keepAliveEstablishedAfter = (events: readonly ProbeEvent[], t: number) => events.some((e) => e.kind === 'established' && e.t > t);

export interface LatencySummary {
  samples: number;
  /** Changes not enforced within the bench's wait: they count as slower than every other sample. */
  missed: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

/** Nearest-rank percentiles in ms; a missed sample (undefined) ranks above all others, so a percentile that lands on one is null. */
export function summarizeLatencies(samples: ReadonlyArray<number | undefined>): LatencySummary {
  const s = summarize(samples.map((v) => v ?? Infinity));
  const finite = (v: number) => (Number.isFinite(v) ? v : null);
  return { samples: samples.length, missed: samples.filter((v) => v === undefined).length, p50: finite(s.p50), p90: finite(s.p90), p99: finite(s.p99), max: finite(s.max) };
}
