/**
 * The mixed-network case's rows, compared with each other: the same-network and the gateway path
 * relative to the in-cluster one, and what the gateway adds over the same-network path. Pure: the
 * case fills its rows with these, and the report's targets read them.
 */
import type { CaseRow } from '../report/types.js';
import { ratio } from '../stats.js';

/** Row variants, one per target service: each has exactly one path from the client. */
export const IN_CLUSTER = 'in-cluster';
export const SAME_NETWORK = 'same network, other cluster';
export const GATEWAY = 'other network, east-west gateway';
export const MIXED_VARIANTS = [IN_CLUSTER, SAME_NETWORK, GATEWAY] as const;
export type MixedVariant = (typeof MIXED_VARIANTS)[number];

/** The same-network p50 latency target, as a multiple of the in-cluster p50. */
export const SAME_NETWORK_P50_LIMIT = 1.1;

/** Keys of a row's measured values. */
export const LATENCY_KEYS = ['p50', 'p99', 'p999'] as const;
type LatencyKey = (typeof LATENCY_KEYS)[number];

/** A path relative to the in-cluster one: latencies (higher is slower) and rates (lower is slower). */
export interface VersusInCluster {
  p50: number | null;
  p99: number | null;
  p999: number | null;
  /** Keep-alive requests/s at saturation. */
  rps: number | null;
  /** New connections/s. */
  cps: number | null;
}

export interface MixedComparison {
  sameNetwork: VersusInCluster;
  gateway: VersusInCluster;
  /** Gateway path latency − same-network latency, ms. */
  gatewayAddedMs: Record<LatencyKey, number | null>;
}

const usable = (rows: readonly CaseRow[], variant: MixedVariant) => rows.find((r) => r.variant === variant && !r.error);

const difference = (a: number | null | undefined, b: number | null | undefined) => (a != null && b != null && Number.isFinite(a) && Number.isFinite(b) ? a - b : null);

function versus(row: CaseRow | undefined, base: CaseRow | undefined): VersusInCluster {
  const r = (key: string) => ratio(row?.values[key], base?.values[key]);
  return { p50: r('p50'), p99: r('p99'), p999: r('p999'), rps: r('rps'), cps: r('cps') };
}

/** Rows that failed (or are missing) give nulls. */
export function compareMixed(rows: readonly CaseRow[]): MixedComparison {
  const inCluster = usable(rows, IN_CLUSTER);
  const same = usable(rows, SAME_NETWORK);
  const gateway = usable(rows, GATEWAY);
  return {
    sameNetwork: versus(same, inCluster),
    gateway: versus(gateway, inCluster),
    gatewayAddedMs: { p50: difference(gateway?.values.p50, same?.values.p50), p99: difference(gateway?.values.p99, same?.values.p99), p999: difference(gateway?.values.p999, same?.values.p999) },
  };
}

/** The rows with their comparisons as values of their own (shown in the case's table). */
export function withMixedComparisons(rows: readonly CaseRow[]): CaseRow[] {
  const c = compareMixed(rows);
  return rows.map((row) => {
    if (row.error) return row;
    const v = row.variant === SAME_NETWORK ? c.sameNetwork : row.variant === GATEWAY ? c.gateway : row.variant === IN_CLUSTER ? versus(row, row) : undefined;
    if (!v) return row;
    return {
      ...row,
      values: {
        ...row.values,
        p50VsInCluster: v.p50,
        p99VsInCluster: v.p99,
        p999VsInCluster: v.p999,
        rpsVsInCluster: v.rps,
        cpsVsInCluster: v.cps,
        ...Object.fromEntries(LATENCY_KEYS.map((k) => [`${k}OverSameNetworkMs`, row.variant === GATEWAY ? c.gatewayAddedMs[k] : null])),
      },
    };
  });
}

const times = (v: number | null) => (v == null ? '–' : `${v.toFixed(2)}×`);
const plusMs = (v: number | null) => (v == null ? '–' : `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(3)} ms`);

function versusInWords(v: VersusInCluster): string {
  return `latency p50 ${times(v.p50)}, p99 ${times(v.p99)}, p99.9 ${times(v.p999)}; keep-alive requests/s ${times(v.rps)}; new connections/s ${times(v.cps)}`;
}

/** The comparisons in words, under the case's table. */
export function mixedNotes(rows: readonly CaseRow[]): string[] {
  const c = compareMixed(rows);
  const gatewayCpu = usable(rows, GATEWAY)?.values.gatewayCpuPer1k;
  return [
    `Same network / in-cluster: ${versusInWords(c.sameNetwork)}.`,
    `Gateway / in-cluster: ${versusInWords(c.gateway)}.`,
    `Gateway path, added over the same-network path: p50 ${plusMs(c.gatewayAddedMs.p50)}, p99 ${plusMs(c.gatewayAddedMs.p99)}, p99.9 ${plusMs(c.gatewayAddedMs.p999)}` +
      (gatewayCpu != null ? `; the east-west gateway spent ${gatewayCpu.toFixed(4)} CPU-s per 1,000 keep-alive requests.` : '.'),
  ];
}

/** The same-network target: p50 at the fixed rate within SAME_NETWORK_P50_LIMIT × in-cluster. */
export function sameNetworkLatencyVerdict(rows: readonly CaseRow[]): { value: number; measured: string; met: boolean } | undefined {
  const value = compareMixed(rows).sameNetwork.p50;
  if (value == null) return undefined;
  const same = usable(rows, SAME_NETWORK)!.values;
  const inCluster = usable(rows, IN_CLUSTER)!.values;
  const p99 = ratio(same.p99, inCluster.p99);
  return {
    value,
    measured: `${value.toFixed(2)}× in-cluster (same network ${same.p50!.toFixed(3)} ms, in-cluster ${inCluster.p50!.toFixed(3)} ms; p99 ${times(p99)})`,
    met: value <= SAME_NETWORK_P50_LIMIT,
  };
}

/** The gateway path's extra cost, reported without a target. */
export function gatewayCostSummary(rows: readonly CaseRow[]): { value: number; measured: string } | undefined {
  const c = compareMixed(rows);
  const added = c.gatewayAddedMs.p50;
  if (added == null) return undefined;
  const gatewayCpu = usable(rows, GATEWAY)?.values.gatewayCpuPer1k;
  return {
    value: added,
    measured:
      `p50 ${plusMs(added)}, p99 ${plusMs(c.gatewayAddedMs.p99)} over same network; vs in-cluster: p50 ${times(c.gateway.p50)}, keep-alive req/s ${times(c.gateway.rps)}, new conn/s ${times(c.gateway.cps)}` +
      (gatewayCpu != null ? `; gateway ${gatewayCpu.toFixed(4)} CPU-s / 1k req` : ''),
  };
}
