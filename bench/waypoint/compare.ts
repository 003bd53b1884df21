/**
 * The waypoint case's rows compared with each other (the waypoint and HAProxy in mode http relative
 * to ambit L4), the check that only the waypoint row goes through the waypoint, and the issue's goals
 * against Istio's published waypoint cost. Pure: the case fills its rows with these, the report's
 * targets read them.
 */
import type { PathName } from '../paths/path.js';
import type { CaseRow } from '../report/types.js';
import { ratio } from '../stats.js';

/** Row variants: the server pod IP (ztunnels only), the Service's cluster IP (through the waypoint), HAProxy in mode http. */
export const L4 = 'L4';
export const WAYPOINT = 'waypoint';
export const HAPROXY_HTTP = 'http';
/** Through the waypoint with a 90/10 VirtualService by DestinationRule subsets (issue 14's bench case). */
export const ROUTES = 'waypoint+routes';
export const WAYPOINT_VARIANTS = [L4, WAYPOINT, ROUTES, HAPROXY_HTTP] as const;
export type WaypointVariant = (typeof WAYPOINT_VARIANTS)[number];
export const ROW_PATH: Record<WaypointVariant, PathName> = { [L4]: 'ambit', [WAYPOINT]: 'ambit', [ROUTES]: 'ambit', [HAPROXY_HTTP]: 'haproxy' };
export const rowName = (variant: WaypointVariant) => `${ROW_PATH[variant]} ${variant}`;

/** Istio's published waypoint cost at 1,000 req/s: about 0.25 vCPU (0.25 CPU-s per 1,000 requests) and 60 MB. */
export const ISTIO_WAYPOINT_CPU_PER_1K = 0.25;
export const ISTIO_WAYPOINT_RSS_MB = 60;
/** The issue's goals (reported, never asserted). */
export const GOAL_CPU_PER_1K = 0.2;
export const GOAL_RSS_MB = 80;
export const GOAL_ADDED_P50_MS = 0.5;

/** 1 MB = 10^6 bytes (Istio's and the goal's unit); RSS is measured in MiB (2^20 bytes). */
export const mibToMb = (mib: number) => (mib * 1024 * 1024) / 1e6;

const usable = (rows: readonly CaseRow[], variant: WaypointVariant) => rows.find((r) => r.variant === variant && !r.error);
const difference = (a: number | null | undefined, b: number | null | undefined) => (a != null && b != null && Number.isFinite(a) && Number.isFinite(b) ? a - b : null);

/** A row relative to ambit L4: rates (lower is slower) and latencies (higher is slower) as ratios, latencies also as ms added. */
export interface VersusL4 {
  rps1: number | null;
  rps32: number | null;
  p50: number | null;
  p99: number | null;
  /** The row's proxies' CPU-s per 1,000 requests at 1,000 req/s over L4's (ztunnels'). */
  cpu: number | null;
  addedMs: { p50: number | null; p90: number | null; p99: number | null };
}

export function versusL4(row: CaseRow | undefined, l4: CaseRow | undefined): VersusL4 {
  const r = (key: string) => ratio(row?.values[key], l4?.values[key]);
  const d = (key: string) => difference(row?.values[key], l4?.values[key]);
  return { rps1: r('rps1'), rps32: r('rps32'), p50: r('p50'), p99: r('p99'), cpu: r('cpuPer1kAtRate'), addedMs: { p50: d('p50'), p90: d('p90'), p99: d('p99') } };
}

/** The rows with their comparisons to L4 as values of their own (shown in the case's table). */
export function withWaypointComparisons(rows: readonly CaseRow[]): CaseRow[] {
  const l4 = usable(rows, L4);
  return rows.map((row) => {
    if (row.error) return row;
    const v = versusL4(row, l4);
    return {
      ...row,
      values: {
        ...row.values,
        rps1VsL4: v.rps1,
        rps32VsL4: v.rps32,
        p50VsL4: v.p50,
        p99VsL4: v.p99,
        cpuVsL4: v.cpu,
        p50OverL4Ms: v.addedMs.p50,
        p90OverL4Ms: v.addedMs.p90,
        p99OverL4Ms: v.addedMs.p99,
      },
    };
  });
}

const times = (v: number | null) => (v == null ? '–' : `${v.toFixed(2)}×`);
const plusMs = (v: number | null) => (v == null ? '–' : `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(3)} ms`);
const num = (v: number | null | undefined, digits: number) => (v == null || !Number.isFinite(v) ? '–' : v.toFixed(digits));

function inWords(v: VersusL4): string {
  return `keep-alive requests/s ${times(v.rps1)} at 1 connection, ${times(v.rps32)} at 32; at 1,000 req/s p50 ${times(v.p50)}, p99 ${times(v.p99)}, added p50 ${plusMs(v.addedMs.p50)}, p90 ${plusMs(v.addedMs.p90)}, p99 ${plusMs(v.addedMs.p99)}; proxy CPU per request ${times(v.cpu)}`;
}

/** The comparisons, the waypoint's cost against Istio's and the goals, and the path check, in words under the table. */
export function waypointNotes(rows: readonly CaseRow[], pathCheck?: string): string[] {
  const l4 = usable(rows, L4);
  const waypoint = usable(rows, WAYPOINT);
  const haproxy = usable(rows, HAPROXY_HTTP);
  const routed = usable(rows, ROUTES);
  const w = waypoint?.values ?? {};
  const wr = routed?.values ?? {};
  const rssLoad = w.waypointRssLoadMiB;
  const notes = [
    `${rowName(WAYPOINT)} / ${rowName(L4)}: ${inWords(versusL4(waypoint, l4))} (goal: added p50 ≤ ${GOAL_ADDED_P50_MS} ms).`,
    `${rowName(HAPROXY_HTTP)} / ${rowName(L4)}: ${inWords(versusL4(haproxy, l4))}.`,
    `The waypoint alone: ${num(w.waypointCpuPer1kAtRate, 4)} CPU-s per 1,000 requests at 1,000 req/s (${num(w.waypointCpuPer1kSaturated, 4)} saturated), ` +
      `RSS ${num(rssLoad, 1)} MiB (${rssLoad == null ? '–' : mibToMb(rssLoad).toFixed(1)} MB) under load, ${num(w.waypointRssIdleMiB, 1)} MiB idle. ` +
      `Istio's published waypoint cost at 1,000 req/s is about ${ISTIO_WAYPOINT_CPU_PER_1K} vCPU (${ISTIO_WAYPOINT_CPU_PER_1K} CPU-s per 1,000 requests) and ${ISTIO_WAYPOINT_RSS_MB} MB; ` +
      `the goals are ≤ ${GOAL_CPU_PER_1K} CPU-s per 1,000 requests and ≤ ${GOAL_RSS_MB} MB.`,
  ];
  if (pathCheck) notes.push(pathCheck);
  if (routed) {
    notes.push(`${rowName(ROUTES)} / ${rowName(WAYPOINT)} (what the 90/10 route costs): ${inWords(versusL4(routed, waypoint))}; the waypoint alone ${num(wr.waypointCpuPer1kAtRate, 4)} CPU-s per 1,000 requests at 1,000 req/s with the route, ${num(w.waypointCpuPer1kAtRate, 4)} without.`);
  }
  return notes;
}

/** Request counts of the check before measuring: what the client sent each way and what the waypoint's istio_requests_total grew by. */
export interface PathCheckCounts {
  sent: number;
  /** Growth while the client sent `sent` requests to the server pod IP (the L4 row): must be 0. */
  countedForL4: number;
  /** Growth while it sent `sent` requests to the Service's cluster IP (the waypoint row): must be ≥ sent. */
  countedForWaypoint: number;
}

/** Why the rows do not take the paths they are named for, or undefined when they do. */
export function pathCheckProblem(c: PathCheckCounts): string | undefined {
  if (c.countedForL4 > 0) {
    return `the waypoint counted ${c.countedForL4} request(s) while the client sent ${c.sent} to the server pod IP: the L4 row must not cross the waypoint (is the pod or its namespace labelled istio.io/use-waypoint?)`;
  }
  if (c.countedForWaypoint < c.sent) {
    return `the waypoint counted ${c.countedForWaypoint} of the ${c.sent} requests sent to the Service's cluster IP: ztunnel does not send the Service's traffic to the waypoint`;
  }
  return undefined;
}

/** The check in words (a note under the table). */
export function pathCheckSentence(c: PathCheckCounts): string {
  return `Path check before measuring: the waypoint's istio_requests_total grew by ${c.countedForWaypoint} while the client sent ${c.sent} requests to the Service's cluster IP, and by ${c.countedForL4} while it sent ${c.sent} to the server pod IP.`;
}

export interface Verdict {
  value: number;
  measured: string;
  met: boolean;
}

export interface WaypointVerdicts {
  cpu?: Verdict;
  rss?: Verdict;
  addedP50?: Verdict;
}

/** The three goals, from the rows (a goal whose rows failed is missing). */
export function waypointVerdicts(rows: readonly CaseRow[]): WaypointVerdicts {
  const out: WaypointVerdicts = {};
  const waypoint = usable(rows, WAYPOINT);
  const cpu = waypoint?.values.waypointCpuPer1kAtRate;
  if (cpu != null) out.cpu = { value: cpu, measured: `${cpu.toFixed(4)} CPU-s (Istio's published waypoint: about ${ISTIO_WAYPOINT_CPU_PER_1K})`, met: cpu <= GOAL_CPU_PER_1K };
  const rss = waypoint?.values.waypointRssLoadMiB;
  if (rss != null) {
    const mb = mibToMb(rss);
    const idle = waypoint?.values.waypointRssIdleMiB;
    out.rss = { value: mb, measured: `${mb.toFixed(1)} MB (${rss.toFixed(1)} MiB; idle ${idle == null ? '–' : `${mibToMb(idle).toFixed(1)} MB`}; Istio's published waypoint: about ${ISTIO_WAYPOINT_RSS_MB} MB)`, met: mb <= GOAL_RSS_MB };
  }
  const l4 = usable(rows, L4);
  const added = versusL4(waypoint, l4).addedMs.p50;
  if (added != null) out.addedP50 = { value: added, measured: `${plusMs(added)} (waypoint ${waypoint!.values.p50!.toFixed(3)} ms, L4 ${l4!.values.p50!.toFixed(3)} ms)`, met: added <= GOAL_ADDED_P50_MS };
  return out;
}
