import type { CaseId, CaseResult } from '../report/types.js';

/** A case that did not run in this run: it shows up in the report as not measured, with why. */
export function notMeasured(id: CaseId, title: string, reason: string): CaseResult {
  return { id, title, method: '', params: {}, metrics: [], rows: [], skipped: reason };
}

export const NEEDS_THE_LAB = 'needs the lab (two clusters on two networks, topologies/two-networks.yaml); this run used --skip-lab';

export const NOT_IN_QUICK =
  'not measured in --quick: it brings up its own two-network lab (a few minutes); `npm run bench -- --quick --cases crossnet,controlplane` runs it at small sizes';

export const MIXED_NEEDS_THE_LAB = 'needs the lab (three clusters, two of them on one network, bench/topologies/mixed-latency.yaml); this run used --skip-lab';

export const MIXED_NOT_IN_QUICK =
  'not measured in --quick: it brings up its own three-cluster lab (a few minutes); `npm run bench -- --quick --cases mixed` runs it with short runs';
