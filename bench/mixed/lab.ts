/**
 * The lab of the mixed-network case: bench/topologies/mixed-latency.yaml, three clusters, two of
 * them on one network, set up like the two-network lab (bench/multicluster-lab.ts): one root CA,
 * ambit installed in each with its network, all three linked in one `ambit link`, an east-west
 * gateway in each.
 */
import type { ClusterPlan } from '../../src/lab/plan.js';
import type { LabState } from '../../src/lab/state.js';
import { createMulticlusterLab, type LabCluster, type LabShape, type MulticlusterLab, type MulticlusterLabOptions } from '../multicluster-lab.js';

export const MIXED_TOPOLOGY_FILE = 'bench/topologies/mixed-latency.yaml';

export interface MixedNetworkLab extends MulticlusterLab {
  /**
   * The client's cluster (two nodes: client and in-cluster server on different nodes), another
   * cluster on its network, and a cluster on another network.
   */
  clusters: readonly [LabCluster, LabCluster, LabCluster];
}

/**
 * The clusters the mixed case uses, in a lab that fits: the first cluster with two nodes or more
 * that has another cluster on its network and one on another network; undefined otherwise.
 */
export function mixedNetworkClusters(state: Pick<LabState, 'plan'>): [ClusterPlan, ClusterPlan, ClusterPlan] | undefined {
  const clusters = state.plan.clusters;
  for (const local of clusters) {
    if (local.nodes.length < 2) continue;
    const sameNetwork = clusters.find((c) => c !== local && c.network === local.network);
    const otherNetwork = clusters.find((c) => c.network !== local.network);
    if (sameNetwork && otherNetwork) return [local, sameNetwork, otherNetwork];
  }
  return undefined;
}

export const MIXED_NETWORK_LAB: LabShape = {
  name: 'mixed-network',
  topologyFile: MIXED_TOPOLOGY_FILE,
  select: mixedNetworkClusters,
  needs: 'a cluster of two nodes with another cluster on its network and one on another network',
  cases: 'the mixed-network case',
  workDirPrefix: 'ambit-bench-mixed-',
};

export async function createMixedNetworkLab(options: MulticlusterLabOptions): Promise<MixedNetworkLab> {
  const lab = await createMulticlusterLab(MIXED_NETWORK_LAB, options);
  const [local, sameNetwork, otherNetwork] = lab.clusters;
  return { ...lab, clusters: [local!, sameNetwork!, otherNetwork!] };
}
