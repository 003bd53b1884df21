import type { PathName } from '../paths/path.js';

/** Cases measured between two nodes of one cluster (or the abench-* namespaces with --skip-lab). */
export const ONE_CLUSTER_CASE_IDS = ['throughput', 'keepalive', 'newconns', 'latency', 'cost', 'policy', 'waypoint'] as const;
/** Cases that need two clusters on two networks (topologies/two-networks.yaml); they run after the others. */
export const TWO_NETWORK_CASE_IDS = ['crossnet', 'controlplane'] as const;
/** Cases that need three clusters, two of them on one network (bench/topologies/mixed-latency.yaml); they run last. */
export const MIXED_NETWORK_CASE_IDS = ['mixed'] as const;
export const CASE_IDS = [...ONE_CLUSTER_CASE_IDS, ...TWO_NETWORK_CASE_IDS, ...MIXED_NETWORK_CASE_IDS] as const;
export type OneClusterCaseId = (typeof ONE_CLUSTER_CASE_IDS)[number];
export type TwoNetworkCaseId = (typeof TWO_NETWORK_CASE_IDS)[number];
export type MixedNetworkCaseId = (typeof MIXED_NETWORK_CASE_IDS)[number];
export type CaseId = (typeof CASE_IDS)[number];

export const isTwoNetworkCase = (id: CaseId): id is TwoNetworkCaseId => (TWO_NETWORK_CASE_IDS as readonly string[]).includes(id);
export const isMixedNetworkCase = (id: CaseId): id is MixedNetworkCaseId => (MIXED_NETWORK_CASE_IDS as readonly string[]).includes(id);
export const isOneClusterCase = (id: CaseId): id is OneClusterCaseId => (ONE_CLUSTER_CASE_IDS as readonly string[]).includes(id);

export interface MetricSpec {
  key: string;
  label: string;
  unit: string;
  /** Decimals shown in the markdown tables. */
  digits: number;
}

export interface CaseRow {
  path: PathName;
  /** Which run of the case this row is, when a case has several (e.g. "64 connections"). */
  variant?: string;
  values: Record<string, number | null>;
  /** Filled in by the report: the compared metric relative to direct and to stunnel (same variant). */
  ratios?: { vsDirect: number | null; vsStunnel: number | null };
  /** Filled in by the report: `<metric> − direct's <metric>` for the case's `addedOver` metrics. */
  added?: Record<string, number | null>;
  error?: string;
}

export interface CaseResult {
  id: CaseId;
  title: string;
  /** How it was measured, with the exact commands (placeholders for addresses). */
  method: string;
  params: Record<string, string | number>;
  metrics: MetricSpec[];
  /** Metric whose ratios to direct and to stunnel the report computes. */
  compare?: string;
  /** Metrics whose difference to direct the report computes (added latency). */
  addedOver?: string[];
  rows: CaseRow[];
  /** Sentences under the case's table (e.g. comparisons between its rows). */
  notes?: string[];
  /** Set when the case did not run at all, with the reason. */
  skipped?: string;
}

export interface MachineFacts {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  os: string;
  node: string;
  tools: Record<string, string>;
}

export interface TargetCheck {
  id: string;
  title: string;
  /** The target as written, e.g. "≥ 1.0× stunnel". */
  target: string;
  value: number | null;
  /** The measured value in words, e.g. "1.12× stunnel (4.1 vs 3.7 Gbit/s)". */
  measured: string | null;
  /** null: not measured in this run, or measured below the scale the target is set at (not judged); the reason in `note`. */
  met: boolean | null;
  note?: string;
  /** A cost reported without a goal: never met or not met. */
  reported?: true;
}

export interface BenchReport {
  schema: 1;
  startedAt: string;
  finishedAt: string;
  command: string;
  quick: boolean;
  machine: MachineFacts;
  /** /proc/loadavg (1, 5, 15 minutes) when the run started and ended: the machine may be shared. */
  loadAverage: { start: string; end: string };
  topology: { kind: 'netns' | 'lab'; description: string };
  paths: Array<{ name: PathName; description: string; error?: string }>;
  cases: CaseResult[];
  targets: TargetCheck[];
  notes: string[];
}
