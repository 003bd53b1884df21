import type { MixedNetworkCaseId, OneClusterCaseId, TwoNetworkCaseId } from '../report/types.js';
import type { BenchCase } from './case.js';
import { controlPlaneCase } from './controlplane.js';
import { costCase } from './cost.js';
import { crossNetworkCase } from './crossnet.js';
import { keepAliveCase } from './keepalive.js';
import { latencyCase } from './latency.js';
import { mixedNetworkCase, type MixedNetworkCase } from './mixed.js';
import { newConnectionsCase } from './newconns.js';
import { policyCase } from './policy.js';
import { throughputCase } from './throughput.js';
import type { TwoNetworkCase } from './two-network-case.js';
import { waypointCase } from './waypoint.js';

/** Cases over the paths between two nodes of one cluster. */
export const CASES: Record<OneClusterCaseId, BenchCase> = {
  throughput: throughputCase,
  keepalive: keepAliveCase,
  newconns: newConnectionsCase,
  latency: latencyCase,
  cost: costCase,
  policy: policyCase,
  // Last of the one-cluster cases: its waypoint and Service cannot disturb the others.
  waypoint: waypointCase,
};

/** Cases on two clusters on two networks; they run after the others, on their own lab. */
export const TWO_NETWORK_CASES: Record<TwoNetworkCaseId, TwoNetworkCase> = {
  crossnet: crossNetworkCase,
  controlplane: controlPlaneCase,
};

/** Cases on three clusters, two of them on one network; they run last, on their own lab. */
export const MIXED_NETWORK_CASES: Record<MixedNetworkCaseId, MixedNetworkCase> = {
  mixed: mixedNetworkCase,
};
