import { NetworkMode, TunnelProtocol, WorkloadStatus, type Workload } from '../../gen/istio/workload/workload_pb.js';
import { decodeAddresses, networkAddressKey } from './addresses.js';

/** The network a workload is on; an empty `network` means the local one. */
export function networkOf(workload: Workload, localNetwork: string): string {
  return workload.network || localNetwork;
}

/** Whether a workload runs on node `nodeName` of cluster `clusterId`. */
export function isOnNode(workload: Workload, clusterId: string, nodeName: string): boolean {
  return workload.node !== '' && workload.node === nodeName && workload.clusterId === clusterId;
}

/**
 * When several workloads claim one address, prefer pods (hard to spoof), then healthy ones, then
 * mesh workloads, then the one seen last. Two pods share an address when a pod that is being deleted
 * (still listed, unhealthy) has given its address back and a new pod got it: the new pod owns it,
 * whatever the old one was.
 */
function addressOwnerRank(workload: Workload, seen: number): number[] {
  const isPod = workload.uid.includes('//Pod/') ? 1 : 0;
  const isHealthy = workload.status === WorkloadStatus.HEALTHY ? 1 : 0;
  const isMesh = workload.tunnelProtocol === TunnelProtocol.HBONE ? 1 : 0;
  return [isPod, isHealthy, isMesh, seen];
}

function outranks(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return false;
}

/**
 * Workloads by resource name, by `<network>/<ip>`, and the ones on this node. "This node" is a node
 * name in this ztunnel's own cluster: node names repeat across clusters (kind names them
 * `kind-worker` in every cluster), so a name alone never makes another cluster's pod local.
 */
export class WorkloadIndex {
  private readonly byName = new Map<string, Workload>();
  /** When each workload was first seen (an update keeps it): the tie-break for a shared address. */
  private readonly firstSeen = new Map<string, number>();
  private seenCounter = 0;
  private readonly byAddress = new Map<string, string[]>();
  private readonly onThisNode = new Set<string>();
  /** Pods' own DNS names (`Workload.hostname`) → resource names. */
  private readonly byHostname = new Map<string, Set<string>>();
  /** Host-network workloads by `<network>/<node ip>`: the node a connection comes from. */
  private readonly byNodeAddress = new Map<string, Set<string>>();
  /** How many workloads each network has: the networks the mesh knows. */
  private readonly perNetwork = new Map<string, number>();

  constructor(
    private readonly localNetwork: string,
    private readonly nodeName: string,
    private readonly clusterId: string,
  ) {}

  get(name: string): Workload | undefined {
    return this.byName.get(name);
  }

  all(): Workload[] {
    return [...this.byName.values()];
  }

  local(): Workload[] {
    const workloads: Workload[] = [];
    for (const name of this.onThisNode) {
      const workload = this.byName.get(name);
      if (workload) workloads.push(workload);
    }
    return workloads;
  }

  /** The workload owning a canonical IP on a network. */
  byIp(ip: string, network: string): Workload | undefined {
    const names = this.byAddress.get(networkAddressKey(network, ip));
    if (!names) return undefined;
    let best: { workload: Workload; rank: number[] } | undefined;
    for (const name of names) {
      const candidate = this.byName.get(name);
      if (!candidate) continue;
      const rank = addressOwnerRank(candidate, this.firstSeen.get(name) ?? 0);
      if (!best || outranks(rank, best.rank)) best = { workload: candidate, rank };
    }
    return best?.workload;
  }

  /** The addresses of `workload` that it owns (another workload may have taken one over). */
  ownedAddresses(workload: Workload): string[] {
    const network = networkOf(workload, this.localNetwork);
    return [...new Set(decodeAddresses(workload.addresses))].filter((ip) => this.byIp(ip, network)?.uid === workload.uid);
  }

  /** Workloads whose own DNS name is `hostname` (lower-case, no trailing dot). */
  byDnsName(hostname: string): Workload[] {
    const names = this.byHostname.get(hostname);
    if (!names) return [];
    return [...names].flatMap((name) => this.byName.get(name) ?? []);
  }

  /** Host-network workloads (a node's ztunnel, agents…) on the node that has a canonical IP on a network. */
  hostNetworkAt(ip: string, network: string): Workload[] {
    return [...(this.byNodeAddress.get(networkAddressKey(network, ip)) ?? [])].flatMap((name) => this.byName.get(name) ?? []);
  }

  /** Whether some workload is on `network` (the local network always is). */
  hasNetwork(network: string): boolean {
    return network === this.localNetwork || this.perNetwork.has(network);
  }

  upsert(name: string, workload: Workload): void {
    const seen = this.firstSeen.get(name) ?? ++this.seenCounter;
    this.remove(name);
    this.firstSeen.set(name, seen);
    this.byName.set(name, workload);
    if (workload.hostname) addTo(this.byHostname, workload.hostname.toLowerCase(), name);
    for (const key of this.nodeAddressKeys(workload)) addTo(this.byNodeAddress, key, name);
    const network = networkOf(workload, this.localNetwork);
    this.perNetwork.set(network, (this.perNetwork.get(network) ?? 0) + 1);
    for (const key of this.addressKeys(workload)) {
      const names = this.byAddress.get(key);
      if (names) names.push(name);
      else this.byAddress.set(key, [name]);
    }
    if (isOnNode(workload, this.clusterId, this.nodeName)) this.onThisNode.add(name);
  }

  remove(name: string): Workload | undefined {
    const previous = this.byName.get(name);
    if (!previous) return undefined;
    this.byName.delete(name);
    this.firstSeen.delete(name);
    if (previous.hostname) deleteFrom(this.byHostname, previous.hostname.toLowerCase(), name);
    for (const key of this.nodeAddressKeys(previous)) deleteFrom(this.byNodeAddress, key, name);
    const network = networkOf(previous, this.localNetwork);
    const left = (this.perNetwork.get(network) ?? 1) - 1;
    if (left > 0) this.perNetwork.set(network, left);
    else this.perNetwork.delete(network);
    for (const key of this.addressKeys(previous)) {
      const remaining = (this.byAddress.get(key) ?? []).filter((other) => other !== name);
      if (remaining.length > 0) this.byAddress.set(key, remaining);
      else this.byAddress.delete(key);
    }
    this.onThisNode.delete(name);
    return previous;
  }

  /** Host-network workloads share their node's IP, so they are not found by address (as in ztunnel). */
  private addressKeys(workload: Workload): string[] {
    return workload.networkMode === NetworkMode.HOST_NETWORK ? [] : this.allAddressKeys(workload);
  }

  private nodeAddressKeys(workload: Workload): string[] {
    return workload.networkMode === NetworkMode.HOST_NETWORK ? this.allAddressKeys(workload) : [];
  }

  private allAddressKeys(workload: Workload): string[] {
    const network = networkOf(workload, this.localNetwork);
    return [...new Set(decodeAddresses(workload.addresses))].map((ip) => networkAddressKey(network, ip));
  }
}

function addTo(index: Map<string, Set<string>>, key: string, name: string): void {
  const names = index.get(key);
  if (names) names.add(name);
  else index.set(key, new Set([name]));
}

function deleteFrom(index: Map<string, Set<string>>, key: string, name: string): void {
  const names = index.get(key);
  names?.delete(name);
  if (names?.size === 0) index.delete(key);
}
