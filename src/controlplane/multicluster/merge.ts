import { AuthorizationSchema, type Authorization } from '../../gen/istio/security/authorization_pb.js';
import { AddressSchema, type Address, type Service, type Workload } from '../../gen/istio/workload/workload_pb.js';
import { DEFAULT_SYSTEM_NAMESPACE, serviceResourceName } from '../../api/resources.js';
import { createLogger, type Logger } from '../../util/log.js';
import { SetIndex, TrackedResources, type ResourceChanges } from '../registry/tracked-resources.js';
import { compareGateways } from './gateways.js';
import {
  buildGatewayWorkload,
  buildNetworkGatewayService,
  buildPodSynthetic,
  buildSyntheticWorkload,
  filterRemoteWorkload,
  gatewayWorkloadUid,
  mergeServices,
  networkGatewayServiceKey,
  withAllocatedVip,
  serviceAddress,
  syntheticWorkloadUid,
  workloadAddress,
} from './mesh-resources.js';
import type { ClusterView, ClusterViewChange, GatewayInfo, RemoteClusterSink } from './types.js';

export interface MeshViewOptions {
  /** The cluster this control plane runs in: its resources are served as they are. */
  local: ClusterView;
  /** Trust domain of the east-west gateways' identities (the mesh's). */
  trustDomain: string;
  /** Namespace of the services standing for each network's gateways (the control plane's). */
  systemNamespace?: string;
  log?: Logger;
}

/** Recomputations since the view was created (each is one resource rebuilt or re-read). */
export interface MeshViewStats {
  workloadBuilds: number;
  serviceBuilds: number;
  syntheticBuilds: number;
  gatewayBuilds: number;
}

export interface MeshChange {
  addresses: ResourceChanges;
  authorizations: ResourceChanges;
}

/** What the view last read of one workload of a cluster's registry. */
interface WorkloadEntry {
  network: string;
  services: readonly string[];
  /** The pod's own DNS name (StatefulSet pods), or ''. */
  hostname: string;
}

/** The parts of one cluster's state the view needs to know what an event affects. */
class ClusterIndex {
  network = '';
  readonly services = new Set<string>();
  readonly globals = new Set<string>();
  readonly workloads = new Map<string, WorkloadEntry>();
  readonly podsByService = new SetIndex();
  gatewayUids: string[] = [];

  /** Indexes the view as it is now; gateway workloads already served are carried over from `previous`. */
  static of(view: ClusterView, previous?: ClusterIndex): ClusterIndex {
    const index = new ClusterIndex();
    index.network = view.network();
    index.gatewayUids = previous?.gatewayUids ?? [];
    for (const key of view.globalServices()) index.globals.add(key);
    for (const [name, address] of view.registry.addresses()) {
      if (address.type.case === 'service') index.services.add(name);
      else if (address.type.case === 'workload') index.setWorkload(name, workloadEntry(address.type.value));
    }
    return index;
  }

  /** Returns the previous entry. */
  setWorkload(uid: string, entry: WorkloadEntry | undefined): WorkloadEntry | undefined {
    const previous = this.workloads.get(uid);
    for (const key of previous?.services ?? []) this.podsByService.delete(key, uid);
    if (entry) {
      this.workloads.set(uid, entry);
      for (const key of entry.services) this.podsByService.add(key, uid);
    } else {
      this.workloads.delete(uid);
    }
    return previous;
  }
}

function workloadEntry(workload: Workload): WorkloadEntry {
  return { network: workload.network, services: Object.keys(workload.services), hostname: workload.hostname };
}

/** (network, service key) pairs, found by either side. */
class SyntheticIndex {
  private readonly byNetwork = new Map<string, Set<string>>();
  private readonly byService = new SetIndex();

  add(network: string, key: string): void {
    addTo(this.byNetwork, network, key);
    this.byService.add(key, network);
  }

  delete(network: string, key: string): void {
    const keys = this.byNetwork.get(network);
    keys?.delete(key);
    if (keys?.size === 0) this.byNetwork.delete(network);
    this.byService.delete(key, network);
  }

  keysOf(network: string): ReadonlySet<string> {
    return this.byNetwork.get(network) ?? new Set();
  }

  networksOf(key: string): ReadonlySet<string> {
    return this.byService.get(key);
  }

  /** A snapshot, safe to iterate while the index changes. */
  entries(): Array<[string, string]> {
    return [...this.byNetwork].flatMap(([network, keys]) => [...keys].map((key): [string, string] => [network, key]));
  }
}

interface PodSynthetic {
  workloadUid: string;
  serviceKey: string;
  workload: Address;
  service: Address;
}

interface Member {
  view: ClusterView;
  index: ClusterIndex;
  unsubscribe: () => void;
}

/** What one event requires to recompute; expanded and applied by `flush`. */
class Dirty {
  readonly services = new Set<string>();
  /** Service keys whose cross-cluster visibility may have changed (global flag, local definition). */
  readonly visibility = new Set<string>();
  /** clusterId → workload uids. */
  readonly workloads = new Map<string, Set<string>>();
  /** network → service keys. */
  readonly synthetics = new Map<string, Set<string>>();
  /** clusterId → uids of pods with their own DNS name on another network. */
  readonly podSynthetics = new Map<string, Set<string>>();
  readonly authorizations = new Set<string>();
  gateways = false;

  workload(clusterId: string, uid: string): void {
    addTo(this.workloads, clusterId, uid);
  }

  synthetic(network: string, serviceKey: string): void {
    addTo(this.synthetics, network, serviceKey);
  }

  podSynthetic(clusterId: string, uid: string): void {
    addTo(this.podSynthetics, clusterId, uid);
  }
}

function addTo(map: Map<string, Set<string>>, key: string, member: string): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(member);
}

/**
 * The resources served to this cluster's ztunnels: the local cluster's registry merged with every
 * remote cluster (multi-network contract):
 * - local resources as they are, except global services, which are merged;
 * - remote pods on our network, as workloads carrying only their global services;
 * - remote endpoints on another network, as one synthetic workload per (network, global service)
 *   behind that network's east-west gateways (named by hostname), weighted by `capacity`;
 * - one workload per usable east-west gateway of every cluster, and per network one service whose
 *   endpoints are that network's gateways (ztunnel spreads over them and fails over between them);
 * - global services with the virtual IPs of every cluster, tagged with their networks.
 * A service is global when the Service in that cluster says so; a local Service that is not global
 * hides the remote ones of the same name (both sides must opt in, as in Istio).
 *
 * Each cluster event recomputes only what it can affect, and listeners hear only about resources
 * whose message really changed.
 */
export class MeshView implements RemoteClusterSink {
  private readonly local: Member;
  private readonly remotes = new Map<string, Member>();
  private sortedRemotes: Member[] = [];
  private readonly trustDomain: string;
  private readonly systemNamespace: string;
  private readonly log: Logger;

  private readonly addressResources = new TrackedResources(AddressSchema);
  private readonly authorizationResources = new TrackedResources(AuthorizationSchema);
  /** Emitted synthetic workloads, to find them again when their inputs change. */
  private readonly synthetics = new SyntheticIndex();
  /** Emitted per-pod resources, by `<cluster>\n<pod uid>`. */
  private readonly podSynthetics = new Map<string, PodSynthetic>();
  /** The usable east-west gateways of each network, in a stable order. */
  private networkGateways = new Map<string, GatewayInfo[]>();
  private readonly listeners = new Set<(change: MeshChange) => void>();
  private readonly counters: MeshViewStats = { workloadBuilds: 0, serviceBuilds: 0, syntheticBuilds: 0, gatewayBuilds: 0 };

  constructor(options: MeshViewOptions) {
    this.trustDomain = options.trustDomain;
    this.systemNamespace = options.systemNamespace ?? DEFAULT_SYSTEM_NAMESPACE;
    this.log = options.log ?? createLogger('mesh-view');
    const view = options.local;
    this.local = { view, index: ClusterIndex.of(view), unsubscribe: () => undefined };
    this.local.unsubscribe = view.onChange((change) => this.onClusterChange(this.local, change));
    const dirty = new Dirty();
    this.markIndex(this.local, this.local.index, dirty);
    for (const name of view.registry.authorizations().keys()) dirty.authorizations.add(name);
    dirty.gateways = true;
    this.apply(dirty);
    this.takeChanges();
  }

  address(name: string): Address | undefined {
    return this.addressResources.get(name);
  }

  addresses(): ReadonlyMap<string, Address> {
    return this.addressResources.all();
  }

  authorization(name: string): Authorization | undefined {
    return this.authorizationResources.get(name);
  }

  /** The local cluster's authorizations: remote clusters enforce their own policies. */
  authorizations(): ReadonlyMap<string, Authorization> {
    return this.authorizationResources.all();
  }

  /** Called synchronously after each event that changed at least one resource. Returns the unsubscribe function. */
  onChange(listener: (change: MeshChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** How many resources were recomputed since the view was created. */
  stats(): MeshViewStats {
    return { ...this.counters };
  }

  /**
   * The pods (in every cluster) backing the service of `hostname`, with their labels, each under the
   * uid the mesh publishes it as: its own, or, on another network, the one workload that stands for
   * the service's endpoints behind that network's gateways. What DestinationRule subsets select from.
   */
  endpointsOf(hostname: string): Array<{ uid: string; labels: Readonly<Record<string, string>> }> {
    const suffix = `/${hostname}`;
    const endpoints: Array<{ uid: string; labels: Readonly<Record<string, string>> }> = [];
    for (const member of [this.local, ...this.sortedRemotes]) {
      const { registry } = member.view;
      for (const [uid, address] of registry.addresses()) {
        if (address.type.case !== 'workload') continue;
        const workload = address.type.value;
        const key = Object.keys(workload.services).find((k) => k.endsWith(suffix));
        if (!key) continue;
        const network = workload.network || member.index.network;
        const published = this.addressResources.get(uid) ? uid : network !== this.localNetwork() ? syntheticWorkloadUid(network, key) : undefined;
        if (!published || !this.addressResources.get(published)) continue;
        endpoints.push({ uid: published, labels: registry.podLabels(workload.namespace, workload.name) ?? {} });
      }
    }
    return endpoints;
  }

  /** Every cluster in the view, local first, for diagnostics. */
  clusters(): Array<{ clusterId: string; network: string; local: boolean; gateways: readonly GatewayInfo[] }> {
    return [this.local, ...this.sortedRemotes].map((member) => ({
      clusterId: member.view.clusterId,
      network: member.index.network,
      local: member === this.local,
      gateways: member.view.gateways(),
    }));
  }

  setRemote(view: ClusterView): void {
    if (view.clusterId === this.local.view.clusterId) {
      this.log.warn({ cluster: view.clusterId }, 'a remote cluster cannot have the local cluster name; ignored');
      return;
    }
    const dirty = new Dirty();
    let member = this.remotes.get(view.clusterId);
    if (member) {
      member.unsubscribe();
      this.markIndex(member, member.index, dirty);
      member.view = view;
      member.index = ClusterIndex.of(view, member.index);
    } else {
      member = { view, index: ClusterIndex.of(view), unsubscribe: () => undefined };
      this.remotes.set(view.clusterId, member);
      this.sortRemotes();
    }
    const subscribed = member;
    member.unsubscribe = view.onChange((change) => this.onClusterChange(subscribed, change));
    this.markIndex(member, member.index, dirty);
    dirty.gateways = true;
    this.flush(dirty);
  }

  removeRemote(clusterId: string): void {
    const member = this.remotes.get(clusterId);
    if (!member) return;
    member.unsubscribe();
    this.remotes.delete(clusterId);
    this.sortRemotes();
    const dirty = new Dirty();
    this.markIndex(member, member.index, dirty);
    for (const uid of member.index.gatewayUids) this.addressResources.set(uid, undefined);
    dirty.gateways = true;
    this.flush(dirty);
  }

  /** Stops listening to every cluster. */
  close(): void {
    this.local.unsubscribe();
    for (const member of this.remotes.values()) member.unsubscribe();
  }

  // -------------------------------------------------------------------------------------------
  // Events → what to recompute
  // -------------------------------------------------------------------------------------------

  private onClusterChange(member: Member, change: ClusterViewChange): void {
    const dirty = new Dirty();
    if (change.reset) {
      this.reindex(member, dirty);
    } else {
      for (const key of change.globalServices) this.setGlobal(member, key, member.view.globalServices().has(key), dirty);
      for (const name of [...change.addresses.upserted, ...change.addresses.removed]) this.touchAddress(member, name, dirty);
      if (member === this.local) {
        for (const name of [...change.authorizations.upserted, ...change.authorizations.removed]) dirty.authorizations.add(name);
      }
      if (change.gateways) dirty.gateways = true;
    }
    this.flush(dirty);
  }

  /** Re-reads a cluster whose registry was replaced. */
  private reindex(member: Member, dirty: Dirty): void {
    const previousNetwork = member.index.network;
    this.markIndex(member, member.index, dirty);
    member.index = ClusterIndex.of(member.view, member.index);
    this.markIndex(member, member.index, dirty);
    dirty.gateways = true;
    if (member !== this.local) return;
    for (const name of this.authorizationResources.all().keys()) dirty.authorizations.add(name);
    for (const name of member.view.registry.authorizations().keys()) dirty.authorizations.add(name);
    // Our network decides which remote pods are direct and which go through a gateway.
    if (previousNetwork !== member.index.network) {
      for (const remote of this.sortedRemotes) {
        this.markIndex(remote, remote.index, dirty);
        for (const uid of remote.index.workloads.keys()) dirty.workload(remote.view.clusterId, uid);
      }
      for (const [network, key] of this.synthetics.entries()) dirty.synthetic(network, key);
    }
  }

  /** Marks everything a cluster's indexed state contributes to. */
  private markIndex(member: Member, index: ClusterIndex, dirty: Dirty): void {
    for (const [uid, entry] of index.workloads) this.markWorkload(member, uid, entry, dirty);
    for (const key of index.services) this.markService(member, index, key, dirty);
    for (const key of index.globals) {
      dirty.services.add(key);
      dirty.visibility.add(key);
    }
  }

  private setGlobal(member: Member, key: string, global: boolean, dirty: Dirty): void {
    if (global) member.index.globals.add(key);
    else member.index.globals.delete(key);
    dirty.services.add(key);
    dirty.visibility.add(key);
  }

  private touchAddress(member: Member, name: string, dirty: Dirty): void {
    const index = member.index;
    const address = member.view.registry.address(name);
    const type = address?.type;
    if (type?.case === 'workload' || index.workloads.has(name)) {
      const entry = type?.case === 'workload' ? workloadEntry(type.value) : undefined;
      const previous = index.setWorkload(name, entry);
      if (previous) this.markWorkload(member, name, previous, dirty);
      if (entry) this.markWorkload(member, name, entry, dirty);
    }
    if (type?.case === 'service' || index.services.has(name)) {
      const blockedBefore = member === this.local && this.localHides(name);
      if (type?.case === 'service') index.services.add(name);
      else index.services.delete(name);
      this.markService(member, index, name, dirty);
      if (member === this.local && blockedBefore !== this.localHides(name)) dirty.visibility.add(name);
    }
  }

  /** A pod is served as itself (local, or remote on our network) or counted in synthetic workloads. */
  private markWorkload(member: Member, uid: string, entry: WorkloadEntry, dirty: Dirty): void {
    if (member === this.local || entry.network === this.localNetwork()) {
      dirty.workload(member.view.clusterId, uid);
      return;
    }
    for (const key of entry.services) dirty.synthetic(entry.network, key);
    if (entry.hostname) dirty.podSynthetic(member.view.clusterId, uid);
  }

  private markService(member: Member, index: ClusterIndex, key: string, dirty: Dirty): void {
    dirty.services.add(key);
    if (member === this.local) return;
    // A remote definition gives a synthetic workload its ports when it has no endpoint yet.
    if (index.network !== this.localNetwork()) dirty.synthetic(index.network, key);
    // Whether it is headless decides whether its pods' own names are served.
    for (const uid of index.podsByService.get(key)) {
      const entry = index.workloads.get(uid);
      if (entry?.hostname && entry.network !== this.localNetwork()) dirty.podSynthetic(member.view.clusterId, uid);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Recomputation
  // -------------------------------------------------------------------------------------------

  private flush(dirty: Dirty): void {
    this.apply(dirty);
    const change = this.takeChanges();
    const count =
      change.addresses.upserted.length + change.addresses.removed.length +
      change.authorizations.upserted.length + change.authorizations.removed.length;
    if (count === 0) return;
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (err) {
        this.log.error({ err }, 'mesh view change listener failed');
      }
    }
  }

  private takeChanges(): MeshChange {
    return { addresses: this.addressResources.takeChanges(), authorizations: this.authorizationResources.takeChanges() };
  }

  private apply(dirty: Dirty): void {
    for (const key of dirty.visibility) this.expandVisibility(key, dirty);
    if (dirty.gateways) this.recomputeGateways(dirty);
    for (const [clusterId, uids] of dirty.workloads) {
      const member = clusterId === this.local.view.clusterId ? this.local : this.remotes.get(clusterId);
      for (const uid of uids) this.addressResources.set(uid, member && this.workloadOf(member, uid));
    }
    for (const key of dirty.services) this.addressResources.set(key, this.serviceOf(key));
    for (const [network, keys] of dirty.synthetics) {
      for (const key of keys) this.setSynthetic(network, key, this.syntheticOf(network, key));
    }
    for (const [clusterId, uids] of dirty.podSynthetics) {
      const member = this.remotes.get(clusterId);
      for (const uid of uids) this.setPodSynthetic(clusterId, uid, member && this.podSyntheticOf(member, uid));
    }
    for (const name of dirty.authorizations) {
      this.authorizationResources.set(name, this.local.view.registry.authorization(name));
    }
  }

  /** Every remote resource that a change of the service's visibility can add or remove. */
  private expandVisibility(key: string, dirty: Dirty): void {
    dirty.services.add(key);
    const localNetwork = this.localNetwork();
    for (const member of this.sortedRemotes) {
      for (const uid of member.index.podsByService.get(key)) {
        dirty.workload(member.view.clusterId, uid);
        const entry = member.index.workloads.get(uid)!;
        if (entry.network !== localNetwork) dirty.synthetic(entry.network, key);
        if (entry.network !== localNetwork && entry.hostname) dirty.podSynthetic(member.view.clusterId, uid);
      }
      if (member.index.network !== localNetwork) dirty.synthetic(member.index.network, key);
    }
    for (const network of this.synthetics.networksOf(key)) dirty.synthetic(network, key);
  }

  /**
   * Gateway workloads of every cluster, each network's gateway service, and the synthetic workloads
   * of networks that gained their first gateway or lost their last.
   */
  private recomputeGateways(dirty: Dirty): void {
    const all: GatewayInfo[] = [];
    for (const member of [this.local, ...this.sortedRemotes]) {
      const gateways = member.view.gateways();
      const uids = gateways.map((gateway) => gatewayWorkloadUid(gateway));
      for (const uid of member.index.gatewayUids) if (!uids.includes(uid)) this.addressResources.set(uid, undefined);
      for (const gateway of gateways) {
        this.counters.gatewayBuilds++;
        this.addressResources.set(gatewayWorkloadUid(gateway), workloadAddress(buildGatewayWorkload(gateway, this.trustDomain, this.systemNamespace)));
      }
      member.index.gatewayUids = uids;
      all.push(...gateways);
    }

    const byNetwork = new Map<string, GatewayInfo[]>();
    for (const gateway of all.sort(compareGateways)) {
      const list = byNetwork.get(gateway.network);
      if (list) list.push(gateway);
      else byNetwork.set(gateway.network, [gateway]);
    }
    const previous = this.networkGateways;
    this.networkGateways = byNetwork;
    for (const network of new Set([...byNetwork.keys(), ...previous.keys()])) {
      const before = previous.get(network) ?? [];
      const now = byNetwork.get(network) ?? [];
      if (sameGateways(before, now)) continue;
      const serviceKey = networkGatewayServiceKey(this.systemNamespace, network);
      this.addressResources.set(serviceKey, now.length > 0 ? serviceAddress(buildNetworkGatewayService(network, this.systemNamespace)) : undefined);
      if (now.length > 0) {
        const names = now.map((gateway) => `${gateway.clusterId}/${gateway.namespace}/${gateway.name}=${gateway.address}`);
        this.log.info({ network, gateways: names }, 'east-west gateways of network');
      } else {
        this.log.warn({ network }, 'network has no usable east-west gateway; its endpoints are unreachable from here');
      }
      if (network === this.localNetwork() || (before.length > 0) === (now.length > 0)) continue;
      for (const key of this.synthetics.keysOf(network)) dirty.synthetic(network, key);
      for (const member of this.sortedRemotes) {
        for (const key of member.index.globals) dirty.synthetic(network, key);
        for (const [uid, entry] of member.index.workloads) if (entry.network === network && entry.hostname) dirty.podSynthetic(member.view.clusterId, uid);
      }
    }
  }

  private workloadOf(member: Member, uid: string): Address | undefined {
    this.counters.workloadBuilds++;
    const address = member.view.registry.address(uid);
    if (address?.type.case !== 'workload') return undefined;
    if (member === this.local) return address;
    const workload = address.type.value;
    if (workload.network !== this.localNetwork()) return undefined;
    const visible = Object.keys(workload.services).filter((key) => this.contributes(member, key));
    if (visible.length === 0) return undefined;
    return workloadAddress(filterRemoteWorkload(workload, visible));
  }

  private serviceOf(key: string): Address | undefined {
    this.counters.serviceBuilds++;
    const local = this.local.view.registry.address(key);
    const localService = local?.type.case === 'service' ? local.type.value : undefined;
    if (local && localService && !this.local.index.globals.has(key)) return local;
    const definitions: Service[] = localService ? [localService] : [];
    for (const member of this.sortedRemotes) {
      if (!member.index.globals.has(key)) continue;
      const service = remoteService(member, key);
      if (service) definitions.push(service);
    }
    const [base, ...others] = definitions;
    if (!base) return undefined;
    if (others.length === 0 && local) return local;
    const merged = mergeServices([base, ...others]);
    // A headless service keeps no VIP: its name resolves to its pods (ztunnel's DNS answers them).
    const headless = merged.addresses.length === 0;
    return serviceAddress(localService || headless ? merged : withAllocatedVip(merged, this.localNetwork()));
  }

  private syntheticOf(network: string, key: string): Address | undefined {
    this.counters.syntheticBuilds++;
    if (network === this.localNetwork() || this.localHides(key)) return undefined;
    if (!this.networkGateways.get(network)?.length) return undefined;
    const endpoints: Workload[] = [];
    const services: Service[] = [];
    for (const member of this.sortedRemotes) {
      if (!member.index.globals.has(key)) continue;
      const uids = [...member.index.podsByService.get(key)].filter((uid) => member.index.workloads.get(uid)?.network === network).sort();
      for (const uid of uids) {
        const address = member.view.registry.address(uid);
        if (address?.type.case === 'workload') endpoints.push(address.type.value);
      }
      const service = member.index.network === network ? remoteService(member, key) : undefined;
      if (service) services.push(service);
    }
    if (endpoints.length === 0 && services.length === 0) return undefined;
    return workloadAddress(buildSyntheticWorkload({ network, serviceKey: key, systemNamespace: this.systemNamespace, endpoints, services }));
  }

  /**
   * A StatefulSet pod on another network, addressable by its own DNS name: a service of that name
   * with a VIP allocated here, and a workload standing for the pod behind the network's gateways.
   * Only for a pod of a global headless Service named like its subdomain (as cluster DNS requires).
   */
  private podSyntheticOf(member: Member, uid: string): PodSynthetic | undefined {
    this.counters.syntheticBuilds++;
    const address = member.view.registry.address(uid);
    if (address?.type.case !== 'workload') return undefined;
    const pod = address.type.value;
    if (!pod.hostname || pod.network === this.localNetwork() || !this.networkGateways.get(pod.network)?.length) return undefined;
    const headlessKey = `${pod.namespace}/${pod.hostname.slice(pod.hostname.indexOf('.') + 1)}`;
    const ports = pod.services[headlessKey];
    const headless = remoteService(member, headlessKey);
    if (!ports || !headless || headless.addresses.length > 0 || !this.contributes(member, headlessKey)) return undefined;
    const built = buildPodSynthetic({ pod, ports, systemNamespace: this.systemNamespace, localNetwork: this.localNetwork() });
    return { workloadUid: built.workload.uid, serviceKey: serviceResourceName(pod.namespace, pod.hostname), workload: workloadAddress(built.workload), service: serviceAddress(built.service) };
  }

  private setPodSynthetic(clusterId: string, uid: string, next: PodSynthetic | undefined): void {
    const key = `${clusterId}\n${uid}`;
    const previous = this.podSynthetics.get(key);
    if (previous && (previous.workloadUid !== next?.workloadUid || previous.serviceKey !== next?.serviceKey)) {
      this.addressResources.set(previous.workloadUid, undefined);
      this.addressResources.set(previous.serviceKey, undefined);
    }
    if (next) {
      this.addressResources.set(next.workloadUid, next.workload);
      this.addressResources.set(next.serviceKey, next.service);
      this.podSynthetics.set(key, next);
    } else {
      this.podSynthetics.delete(key);
    }
  }

  private setSynthetic(network: string, key: string, address: Address | undefined): void {
    this.addressResources.set(syntheticWorkloadUid(network, key), address);
    if (address) this.synthetics.add(network, key);
    else this.synthetics.delete(network, key);
  }

  /** Whether a remote cluster's endpoints of the service are visible here. */
  private contributes(member: Member, key: string): boolean {
    return member.index.globals.has(key) && !this.localHides(key);
  }

  /** A local Service that is not global keeps its name local: remote ones of that name stay out. */
  private localHides(key: string): boolean {
    return this.local.index.services.has(key) && !this.local.index.globals.has(key);
  }

  private localNetwork(): string {
    return this.local.index.network;
  }

  private sortRemotes(): void {
    this.sortedRemotes = [...this.remotes.values()].sort((a, b) => (a.view.clusterId < b.view.clusterId ? -1 : 1));
  }
}

function remoteService(member: Member, key: string): Service | undefined {
  const address = member.view.registry.address(key);
  return address?.type.case === 'service' ? address.type.value : undefined;
}

function sameGateways(a: readonly GatewayInfo[], b: readonly GatewayInfo[]): boolean {
  return a.length === b.length && a.every((gateway, i) => sameGateway(gateway, b[i]!));
}

function sameGateway(a: GatewayInfo, b: GatewayInfo): boolean {
  return a.clusterId === b.clusterId && a.namespace === b.namespace && a.name === b.name && a.address === b.address && a.network === b.network && a.programmed === b.programmed;
}
