import type { NodeRuntime, Topology } from './topology.js';

/**
 * Address plan of a lab, all inside 198.18.0.0/15 (RFC 2544 benchmarking space).
 *
 *   198.18.0.0/30        host (root netns) <-> core router
 *   198.18.1.0/24        management segment on the core: one control-plane netns per cluster
 *   198.18.2.4j/30       core <-> router of network j
 *   198.18.(16+j).0/24   node segment of network j (bridge in the network router)
 *   198.18.(64+i).0/24   LoadBalancer addresses of cluster i (routed by the core to its network)
 *   198.19.k.0/24        pod CIDR of the k-th node of a network: networks reuse the same CIDRs,
 *                        so pod addresses of different networks overlap, as they may in real life
 *   198.19.(128+8i).0/21 Service ClusterIP range of cluster i
 */
export const LAB_SUPERNET = '198.18.0.0/15';
export const HOST_LINK = { host: '198.18.0.1', core: '198.18.0.2', prefix: 30 } as const;
export const MGMT_GATEWAY = '198.18.1.1';
export const POD_GATEWAY = '169.254.1.1';
export const CLUSTER_DOMAIN = 'cluster.local';

export const NETNS_PREFIX = 'ambit-';
export const CORE_NETNS = 'ambit-core';

export interface NodePlan {
  name: string;
  cluster: string;
  network: string;
  region: string;
  zone: string;
  netns: string;
  ip: string;
  podCidr: string;
  /** Interface name of this node's link in its network router. */
  routerPort: string;
}

export interface NetworkPlan {
  name: string;
  index: number;
  netns: string;
  gateway: string;
  subnet: string;
  coreSide: string;
  routerSide: string;
  /** Interface name of this network's link in the core router. */
  corePort: string;
}

export interface ClusterPlan {
  name: string;
  index: number;
  network: string;
  cpNetns: string;
  cpIp: string;
  apiServerUrl: string;
  serviceCidr: string;
  kubernetesServiceIp: string;
  dnsServiceIp: string;
  loadBalancerCidr: string;
  /** agent: the lab agent runs the pods; kubelet: a real kubelet + containerd per node (src/lab/real-nodes.ts). */
  nodeRuntime: NodeRuntime;
  nodes: NodePlan[];
}

export interface LabPlan {
  networks: NetworkPlan[];
  clusters: ClusterPlan[];
}

export function netnsNameForNode(cluster: string, node: string): string {
  return node.startsWith(`${cluster}-`) ? `${NETNS_PREFIX}${node}` : `${NETNS_PREFIX}${cluster}-${node}`;
}

export function planLab(topology: Topology): LabPlan {
  const networks: NetworkPlan[] = [];
  const networkIndex = new Map<string, number>();
  for (const cluster of topology.clusters) {
    if (networkIndex.has(cluster.network)) continue;
    const j = networks.length;
    networkIndex.set(cluster.network, j);
    networks.push({
      name: cluster.network,
      index: j,
      netns: `${NETNS_PREFIX}net-${cluster.network}`,
      gateway: `198.18.${16 + j}.1`,
      subnet: `198.18.${16 + j}.0/24`,
      coreSide: `198.18.2.${4 * j + 1}`,
      routerSide: `198.18.2.${4 * j + 2}`,
      corePort: `net${j}`,
    });
  }
  const nodesInNetwork = new Map<string, number>();
  const clusters = topology.clusters.map((cluster, i): ClusterPlan => {
    const j = networkIndex.get(cluster.network)!;
    const nodes = cluster.nodes.map((node): NodePlan => {
      const k = nodesInNetwork.get(cluster.network) ?? 0;
      nodesInNetwork.set(cluster.network, k + 1);
      return {
        name: node.name,
        cluster: cluster.name,
        network: cluster.network,
        region: node.region,
        zone: node.zone,
        netns: netnsNameForNode(cluster.name, node.name),
        ip: `198.18.${16 + j}.${10 + k}`,
        podCidr: `198.19.${k}.0/24`,
        routerPort: `node${k}`,
      };
    });
    const serviceBase = 128 + 8 * i;
    const cpIp = `198.18.1.${10 + i}`;
    return {
      name: cluster.name,
      index: i,
      network: cluster.network,
      cpNetns: `${NETNS_PREFIX}cp-${cluster.name}`,
      cpIp,
      apiServerUrl: `https://${cpIp}:6443`,
      serviceCidr: `198.19.${serviceBase}.0/21`,
      kubernetesServiceIp: `198.19.${serviceBase}.1`,
      dnsServiceIp: `198.19.${serviceBase}.10`,
      loadBalancerCidr: `198.18.${64 + i}.0/24`,
      nodeRuntime: cluster.nodeRuntime,
      nodes,
    };
  });
  return { networks, clusters };
}

export function networkOf(plan: LabPlan, name: string): NetworkPlan {
  const network = plan.networks.find((n) => n.name === name);
  if (!network) throw new Error(`network "${name}" is not in the lab plan`);
  return network;
}

export function clusterOf(plan: LabPlan, name: string): ClusterPlan {
  const cluster = plan.clusters.find((c) => c.name === name);
  if (!cluster) {
    throw new Error(`cluster "${name}" is not in this lab (clusters: ${plan.clusters.map((c) => c.name).join(', ')})`);
  }
  return cluster;
}

/** The host addresses of a /24 pod CIDR that pods may use (.2 … .254). */
export function podAddressRange(podCidr: string): { prefix: string; first: number; last: number } {
  const prefix = podCidr.split('.').slice(0, 3).join('.');
  return { prefix, first: 2, last: 254 };
}

/** A node's topology labels (region, zone, network, lab cluster), the same for agent and real nodes. */
export function nodeTopologyLabels(node: NodePlan): Record<string, string> {
  return {
    'topology.kubernetes.io/region': node.region,
    'topology.kubernetes.io/zone': node.zone,
    'failure-domain.beta.kubernetes.io/region': node.region,
    'failure-domain.beta.kubernetes.io/zone': node.zone,
    'topology.istio.io/network': node.network,
    'lab.ambit.dev/cluster': node.cluster,
  };
}
