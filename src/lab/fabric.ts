import { run, succeeds } from '../util/exec.js';
import {
  CORE_NETNS,
  HOST_LINK,
  LAB_SUPERNET,
  MGMT_GATEWAY,
  type ClusterPlan,
  type LabPlan,
  type NetworkPlan,
  type NodePlan,
} from './plan.js';
import { ensureNetns, ensureVeth, ip, linkExists, listNetns, replaceRoute, setAddress, sysctl } from './netns.js';

export const HOST_LINK_NAME = 'ambit-host';
const ROUTER_TABLE = 'ambit-lab-router';

type Progress = (message: string) => void;

/**
 * Builds the lab's networks: a core router namespace linked to the host, a management segment
 * for control planes, one router namespace per network with a bridge for its nodes, and the
 * node namespaces. Every step checks before it acts, so running it again repairs and re-uses.
 */
export async function buildFabric(plan: LabPlan, progress: Progress): Promise<void> {
  const existing = await listNetns();
  await buildCore(existing);
  for (const network of plan.networks) {
    progress(`network ${network.name}: router ${network.netns}, nodes on ${network.subnet}`);
    await buildNetworkRouter(plan, network, existing);
  }
  for (const cluster of plan.clusters) {
    await buildControlPlaneNetns(cluster, existing);
    for (const node of cluster.nodes) await buildNode(plan, node, existing);
  }
}

async function buildCore(existing: Set<string>): Promise<void> {
  await ensureNetns(CORE_NETNS, existing);
  await ensureVeth({ netns: undefined, name: HOST_LINK_NAME }, { netns: CORE_NETNS, name: 'uplink' });
  await setAddress(undefined, HOST_LINK_NAME, `${HOST_LINK.host}/${HOST_LINK.prefix}`);
  await setAddress(CORE_NETNS, 'uplink', `${HOST_LINK.core}/${HOST_LINK.prefix}`);
  await replaceRoute(undefined, [LAB_SUPERNET, 'via', HOST_LINK.core, 'dev', HOST_LINK_NAME]);
  if (!(await linkExists(CORE_NETNS, 'mgmt'))) await ip(CORE_NETNS, ['link', 'add', 'mgmt', 'type', 'bridge']);
  await setAddress(CORE_NETNS, 'mgmt', `${MGMT_GATEWAY}/24`);
  await disableBridgeNetfilter(CORE_NETNS);
}

/**
 * With br_netfilter loaded on the host, a DNAT'd packet whose new destination sits on the same
 * bridge is bridged straight back and skips the IP postrouting hook, so LoadBalancer traffic
 * would never be masqueraded. Bridged frames must not enter the IP hooks in the lab's routers.
 */
async function disableBridgeNetfilter(netns: string): Promise<void> {
  for (const family of ['iptables', 'ip6tables', 'arptables']) {
    await succeeds('ip', ['netns', 'exec', netns, 'sysctl', '-qw', `net.bridge.bridge-nf-call-${family}=0`]);
  }
}

async function buildNetworkRouter(plan: LabPlan, network: NetworkPlan, existing: Set<string>): Promise<void> {
  const ns = network.netns;
  await ensureNetns(ns, existing);
  await ensureVeth({ netns: ns, name: 'uplink' }, { netns: CORE_NETNS, name: network.corePort });
  await setAddress(ns, 'uplink', `${network.routerSide}/30`);
  await setAddress(CORE_NETNS, network.corePort, `${network.coreSide}/30`);
  await replaceRoute(ns, ['default', 'via', network.coreSide, 'dev', 'uplink']);
  if (!(await linkExists(ns, 'br0'))) await ip(ns, ['link', 'add', 'br0', 'type', 'bridge']);
  await setAddress(ns, 'br0', `${network.gateway}/24`);
  await disableBridgeNetfilter(ns);
  for (const cluster of plan.clusters.filter((c) => c.network === network.name)) {
    // LoadBalancer addresses of the clusters on this network are reachable from everywhere.
    await replaceRoute(CORE_NETNS, [cluster.loadBalancerCidr, 'via', network.routerSide, 'dev', network.corePort]);
    for (const node of cluster.nodes) await replaceRoute(ns, [node.podCidr, 'via', node.ip, 'dev', 'br0']);
  }
  // The control planes of this network's clusters reach its nodes (kube-apiserver → kubelet :10250).
  await replaceRoute(CORE_NETNS, [network.subnet, 'via', network.routerSide, 'dev', network.corePort]);
  const controlPlanes = plan.clusters.filter((c) => c.network === network.name).map((c) => c.cpIp);
  await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: routerRules(network, controlPlanes) });
}

/**
 * A network's edge: traffic leaving the network is masqueraded (pod CIDRs of different networks
 * overlap); from outside only replies, LoadBalancer addresses (DNAT'd by the LB table) and the
 * network's own control planes (to node addresses, as a kube-apiserver reaches its kubelets) enter.
 */
function routerRules(network: NetworkPlan, controlPlanes: string[]): string {
  const fromControlPlanes = controlPlanes.length
    ? `\n    iifname "uplink" ip saddr { ${controlPlanes.join(', ')} } ip daddr ${network.subnet} accept`
    : '';
  return `table ip ${ROUTER_TABLE} {}
delete table ip ${ROUTER_TABLE}
table ip ${ROUTER_TABLE} {
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "uplink" ct state established,related accept
    iifname "uplink" ct status dnat accept${fromControlPlanes}
    iifname "uplink" counter drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "uplink" masquerade
  }
}
`;
}

async function buildControlPlaneNetns(cluster: ClusterPlan, existing: Set<string>): Promise<void> {
  const ns = cluster.cpNetns;
  await ensureNetns(ns, existing);
  const corePort = `cp${cluster.index}`;
  await ensureVeth({ netns: ns, name: 'eth0' }, { netns: CORE_NETNS, name: corePort });
  await ip(CORE_NETNS, ['link', 'set', corePort, 'master', 'mgmt', 'up']);
  await setAddress(ns, 'eth0', `${cluster.cpIp}/24`);
  await replaceRoute(ns, ['default', 'via', MGMT_GATEWAY, 'dev', 'eth0']);
}

/**
 * Joins one more node (not in the topology) to its network: its namespace and link as for the
 * topology's nodes, plus the routes to its pod CIDR in the network's router and in its peers.
 */
export async function attachNode(plan: LabPlan, node: NodePlan): Promise<void> {
  const network = plan.networks.find((n) => n.name === node.network)!;
  await buildNode(plan, node, await listNetns());
  await replaceRoute(network.netns, [node.podCidr, 'via', node.ip, 'dev', 'br0']);
  for (const peer of plan.clusters.flatMap((c) => c.nodes)) {
    if (peer.network === node.network && peer.netns !== node.netns) await replaceRoute(peer.netns, [node.podCidr, 'via', node.ip, 'dev', 'eth0']);
  }
}

/** Undoes attachNode: the routes to the node's pods, then its namespace (its link goes with it). */
export async function detachNode(plan: LabPlan, node: NodePlan): Promise<void> {
  const network = plan.networks.find((n) => n.name === node.network)!;
  await succeeds('ip', ['-n', network.netns, 'route', 'del', node.podCidr, 'via', node.ip]);
  for (const peer of plan.clusters.flatMap((c) => c.nodes)) {
    if (peer.network === node.network && peer.netns !== node.netns) await succeeds('ip', ['-n', peer.netns, 'route', 'del', node.podCidr, 'via', node.ip]);
  }
  await succeeds('ip', ['netns', 'delete', node.netns]);
}

async function buildNode(plan: LabPlan, node: NodePlan, existing: Set<string>): Promise<void> {
  const ns = node.netns;
  const network = plan.networks.find((n) => n.name === node.network)!;
  await ensureNetns(ns, existing);
  await ensureVeth({ netns: ns, name: 'eth0' }, { netns: network.netns, name: node.routerPort });
  await ip(network.netns, ['link', 'set', node.routerPort, 'master', 'br0', 'up']);
  await setAddress(ns, 'eth0', `${node.ip}/24`);
  await replaceRoute(ns, ['default', 'via', network.gateway, 'dev', 'eth0']);
  // Pods on the other nodes of the same network are one bridge hop away, as on a flat L2 network.
  for (const peer of plan.clusters.flatMap((c) => c.nodes)) {
    if (peer.network === node.network && peer.netns !== ns) await replaceRoute(ns, [peer.podCidr, 'via', peer.ip, 'dev', 'eth0']);
  }
  // Pods reach their node through a link-local next hop answered by proxy ARP on each pod veth.
  await sysctl(ns, 'net.ipv4.conf.all.rp_filter', '0');
  await sysctl(ns, 'net.ipv4.conf.default.rp_filter', '0');
}
