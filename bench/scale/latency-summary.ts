import { percentileOfSorted } from '../stats.js';

/** One pod made Ready: how long until the watcher had it, or null when it never arrived in time. */
export interface LatencySample {
  pod: string;
  ms: number | null;
}

export interface LatencySummary {
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  samples: number;
  /** Samples that did not arrive within the timeout; they count as the timeout in the percentiles. */
  missed: number;
}

/** Nearest-rank percentiles; a missed sample counts as `timeoutMs`, so misses push p99 up instead of vanishing. */
export function summarizeLatency(samples: readonly LatencySample[], timeoutMs: number): LatencySummary {
  const values = Float64Array.from(samples.map((s) => s.ms ?? timeoutMs)).sort();
  const missed = samples.filter((s) => s.ms === null).length;
  if (values.length === 0) return { p50Ms: null, p99Ms: null, maxMs: null, samples: 0, missed };
  return { p50Ms: percentileOfSorted(values, 0.5), p99Ms: percentileOfSorted(values, 0.99), maxMs: values[values.length - 1]!, samples: samples.length, missed };
}
