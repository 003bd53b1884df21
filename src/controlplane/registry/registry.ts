import { create } from '@bufbuild/protobuf';

import { DATAPLANE_MODE_LABEL, podWorkloadUid } from '../../api/resources.js';
import { Action, AuthorizationSchema, type Authorization } from '../../gen/istio/security/authorization_pb.js';
import { AddressSchema, type Address, type GatewayAddress, type Locality, type PortList } from '../../gen/istio/workload/workload_pb.js';
import { createLogger, type Logger } from '../../util/log.js';
import { authorizationName, convertAuthorizationPolicy } from './authorization.js';
import {
  objectRef,
  parseNamespace,
  parseNode,
  parsePod,
  parseService,
  refKey,
  selects,
  type Labels,
  type ObjectRef,
  type PodView,
  type ServiceView,
} from './kube-objects.js';
import { ProblemLog, type Problem } from './problems.js';
import {
  buildService,
  isPublished,
  namespaceTrafficDistribution,
  podFacingShape,
  serviceResourceNameOf,
  serviceTrafficDistribution,
  workloadPortList,
  type TrafficDistribution,
} from './service.js';
import { SetIndex, TrackedResources, type ResourceChanges } from './tracked-resources.js';
import { buildWorkload, hasWorkload, nodeLocality } from './workload.js';
import { enrolmentChoice, enrolmentOf, isWaypointService, servesServices, servesWorkloads, waypointFromService, waypointOf, type EnrolmentChoice, type WaypointEnrolment } from './waypoint.js';

export interface RegistryOptions {
  clusterId: string;
  /** The cluster's network: pods without a `topology.istio.io/network` label, and service VIPs, are on it. */
  network: string;
  trustDomain: string;
  /** Default `cluster.local`. */
  domainSuffix?: string;
  /** The root namespace (e.g. `istio-system`): its policies without a selector are GLOBAL. */
  systemNamespace: string;
  log?: Logger;
}

export type Kind = 'Namespace' | 'Node' | 'Pod' | 'Service' | 'AuthorizationPolicy';

export interface RegistryChange {
  addresses: ResourceChanges;
  authorizations: ResourceChanges;
}

/** How many resources were rebuilt since the registry was created (each rebuild is one conversion). */
export interface RegistryStats {
  workloadBuilds: number;
  serviceBuilds: number;
  policyConversions: number;
}

interface NamespaceState {
  dataplaneMode: string | undefined;
  distribution: TrafficDistribution | undefined;
  waypoint: WaypointEnrolment;
}

interface SelectorPolicy {
  namespace: string;
  selector: Labels;
}

/**
 * The workload xDS resources (`istio.workload.Address`, `istio.security.Authorization`) of one
 * cluster, kept up to date from Kubernetes object events. Each event rebuilds only the resources it
 * can affect, found through indexes (pods by namespace and node, services and selector policies by
 * namespace), so one pod event costs one workload rebuild however large the cluster.
 *
 * Bad objects never throw: their problems are recorded (see `problems()`) and logged once, and the
 * last valid version of the object stays in force, as if an admission webhook had rejected the update.
 */
export class MeshRegistry {
  private readonly clusterId: string;
  private readonly network: string;
  private readonly trustDomain: string;
  private readonly domainSuffix: string;
  private readonly rootNamespace: string;
  private readonly log: Logger;

  private readonly namespaces = new Map<string, NamespaceState>();
  private readonly localities = new Map<string, Locality | undefined>();
  private readonly pods = new Map<string, PodView>();
  private readonly podsByNamespace = new SetIndex();
  private readonly podsByNode = new SetIndex();
  /** Pods (not host-network) by IP: a deleted pod's address may already be another pod's. */
  private readonly podsByIp = new SetIndex();
  private readonly services = new Map<string, ServiceView>();
  private readonly servicesByNamespace = new SetIndex();
  /** WORKLOAD_SELECTOR authorizations by resource name, which workloads list by name. */
  private readonly selectorPolicies = new Map<string, SelectorPolicy>();
  private readonly selectorPoliciesByNamespace = new SetIndex();
  /**
   * Selector policies of workloads that a waypoint serves (Workload.waypoint), by workload uid: the
   * waypoint enforces them (the Waypoint resource), so the workload does not list them for ztunnel,
   * which admits only the waypoint to it.
   */
  private readonly waypointPolicyNames = new Map<string, readonly string[]>();
  /** The HTTP attributes last warned about per policy, so a resync does not log again. */
  private readonly httpWarnings = new Map<string, string>();

  private readonly addressResources = new TrackedResources(AddressSchema);
  private readonly authorizationResources = new TrackedResources(AuthorizationSchema);
  private readonly problemLog: ProblemLog;
  private readonly listeners = new Set<(change: RegistryChange) => void>();
  private readonly counters: RegistryStats = { workloadBuilds: 0, serviceBuilds: 0, policyConversions: 0 };

  constructor(options: RegistryOptions) {
    this.clusterId = options.clusterId;
    this.network = options.network;
    this.trustDomain = options.trustDomain;
    this.domainSuffix = options.domainSuffix ?? 'cluster.local';
    this.rootNamespace = options.systemNamespace;
    this.log = options.log ?? createLogger('registry', { cluster: options.clusterId });
    this.problemLog = new ProblemLog(this.log);
  }

  /** Adds or updates an object (as @kubernetes/client-node or `kubectl get -o json` gives it). */
  upsert(kind: Kind, object: unknown): void {
    this.apply(kind, object, 'upsert');
  }

  remove(kind: Kind, object: unknown): void {
    this.apply(kind, object, 'remove');
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

  authorizations(): ReadonlyMap<string, Authorization> {
    return this.authorizationResources.all();
  }

  /**
   * Called synchronously after each upsert/remove that changed at least one resource, with only the
   * resources whose message really changed. Returns the unsubscribe function.
   */
  onChange(listener: (change: RegistryChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Problems of the objects as they are now (bad objects skipped, values ignored). */
  problems(): Problem[] {
    return this.problemLog.list();
  }

  /** The labels of pod `<namespace>/<name>` of this cluster, if the registry has it. */
  podLabels(namespace: string, name: string): Readonly<Record<string, string>> | undefined {
    return this.pods.get(`${namespace}/${name}`)?.labels;
  }

  /** The selector policies (`<ns>/<name>`) of a workload served by a waypoint, which that waypoint enforces; undefined when none serves it. */
  waypointPolicies(uid: string): readonly string[] | undefined {
    return this.waypointPolicyNames.get(uid);
  }

  stats(): RegistryStats {
    return { ...this.counters };
  }

  // -------------------------------------------------------------------------------------------
  // Event dispatch
  // -------------------------------------------------------------------------------------------

  private apply(kind: Kind, object: unknown, operation: 'upsert' | 'remove'): void {
    try {
      const upsert = operation === 'upsert';
      switch (kind) {
        case 'Namespace':
          return upsert ? this.upsertNamespace(object) : this.removeNamespace(object);
        case 'Node':
          return upsert ? this.upsertNode(object) : this.removeNode(object);
        case 'Pod':
          return upsert ? this.upsertPod(object) : this.removePod(object);
        case 'Service':
          return upsert ? this.upsertService(object) : this.removeService(object);
        case 'AuthorizationPolicy':
          return upsert ? this.upsertPolicy(object) : this.removePolicy(object);
        default:
          this.log.warn({ kind: String(kind) }, 'registry ignores objects of this kind');
      }
    } catch (err) {
      const ref = objectRef(object);
      this.log.error({ err, kind, object: ref ? refKey(ref) : undefined }, `registry failed to apply ${operation}`);
    } finally {
      this.publish();
    }
  }

  private publish(): void {
    const change: RegistryChange = {
      addresses: this.addressResources.takeChanges(),
      authorizations: this.authorizationResources.takeChanges(),
    };
    const count =
      change.addresses.upserted.length + change.addresses.removed.length +
      change.authorizations.upserted.length + change.authorizations.removed.length;
    if (count === 0) return;
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (err) {
        this.log.error({ err }, 'registry change listener failed');
      }
    }
  }

  /** Removal needs only the object's name, so a removal is never refused. */
  private removedRef(kind: Kind, object: unknown): ObjectRef | undefined {
    const ref = objectRef(object);
    if (!ref) this.log.warn({ kind }, 'removal of an object without metadata.name ignored');
    else this.problemLog.clear(problemSubject(kind, ref));
    return ref;
  }

  // -------------------------------------------------------------------------------------------
  // Namespaces and nodes
  // -------------------------------------------------------------------------------------------

  private upsertNamespace(object: unknown): void {
    const parsed = parseNamespace(object);
    if (!parsed.ok) return this.problemLog.set(problemSubject('Namespace', objectRef(object)), parsed.problems);
    const namespace = parsed.value;
    const subject = problemSubject('Namespace', namespace);
    const distribution = namespaceTrafficDistribution(namespace.annotations);
    this.problemLog.set(subject, []);
    this.problemLog.set(subject, distribution.problems, SETTINGS);
    this.setNamespace(namespace.name, {
      dataplaneMode: namespace.labels[DATAPLANE_MODE_LABEL],
      distribution: distribution.value,
      waypoint: enrolmentOf(namespace.labels),
    });
  }

  private removeNamespace(object: unknown): void {
    const ref = this.removedRef('Namespace', object);
    if (ref) this.setNamespace(ref.name, undefined);
  }

  private setNamespace(name: string, state: NamespaceState | undefined): void {
    const previous = this.namespaces.get(name);
    if (state) this.namespaces.set(name, state);
    else this.namespaces.delete(name);
    const waypointChanged = previous?.waypoint.name !== state?.waypoint.name || previous?.waypoint.namespace !== state?.waypoint.namespace;
    if (previous?.dataplaneMode !== state?.dataplaneMode || waypointChanged) {
      for (const key of this.podsByNamespace.get(name)) this.rebuildWorkload(key);
    }
    if (previous?.distribution !== state?.distribution || waypointChanged) {
      for (const key of this.servicesByNamespace.get(name)) this.rebuildService(key);
    }
  }

  private upsertNode(object: unknown): void {
    const parsed = parseNode(object);
    if (!parsed.ok) return this.problemLog.set(problemSubject('Node', objectRef(object)), parsed.problems);
    this.problemLog.set(problemSubject('Node', parsed.value), []);
    this.setLocality(parsed.value.name, nodeLocality(parsed.value.labels));
  }

  private removeNode(object: unknown): void {
    const ref = this.removedRef('Node', object);
    if (ref) this.setLocality(ref.name, undefined);
  }

  private setLocality(node: string, locality: Locality | undefined): void {
    const previous = this.localities.get(node);
    if (locality) this.localities.set(node, locality);
    else this.localities.delete(node);
    if (sameLocality(previous, locality)) return;
    for (const key of this.podsByNode.get(node)) this.rebuildWorkload(key);
  }

  // -------------------------------------------------------------------------------------------
  // Pods → workloads
  // -------------------------------------------------------------------------------------------

  private upsertPod(object: unknown): void {
    const parsed = parsePod(object);
    if (!parsed.ok) return this.problemLog.set(problemSubject('Pod', objectRef(object)), parsed.problems);
    const pod = parsed.value;
    this.problemLog.set(problemSubject('Pod', pod), []);
    const key = refKey(pod);
    const sharing = this.podsSharingAddressesOf(key);
    this.unindexPod(key);
    this.pods.set(key, pod);
    this.podsByNamespace.add(pod.namespace, key);
    if (pod.nodeName) this.podsByNode.add(pod.nodeName, key);
    for (const ip of this.indexedIps(pod)) this.podsByIp.add(ip, key);
    this.rebuildWorkload(key);
    for (const other of new Set([...sharing, ...this.podsSharingAddressesOf(key)])) this.rebuildWorkload(other);
  }

  /** IPs a pod is found by (host-network pods share their node's). */
  private indexedIps(pod: PodView): string[] {
    return pod.hostNetwork ? [] : pod.ips;
  }

  /** Other pods with one of the IPs of pod `key`. */
  private podsSharingAddressesOf(key: string): string[] {
    const pod = this.pods.get(key);
    if (!pod) return [];
    return this.indexedIps(pod).flatMap((ip) => [...this.podsByIp.get(ip)]).filter((other) => other !== key);
  }

  /**
   * A pod being deleted whose address another pod (not being deleted) now has: it stopped and gave
   * the address back, and only the API object is left. It gets no workload, so nothing (capture,
   * lookups by address) follows it to the new pod.
   */
  private addressTakenOver(key: string, pod: PodView): boolean {
    if (!pod.deleting) return false;
    return this.podsSharingAddressesOf(key).some((other) => {
      const candidate = this.pods.get(other);
      return candidate !== undefined && !candidate.deleting && hasWorkload(candidate);
    });
  }

  private removePod(object: unknown): void {
    const ref = this.removedRef('Pod', object);
    if (!ref?.namespace) return;
    const sharing = this.podsSharingAddressesOf(refKey(ref));
    this.unindexPod(refKey(ref));
    for (const other of sharing) this.rebuildWorkload(other);
    const uid = podWorkloadUid(this.clusterId, ref.namespace, ref.name);
    this.waypointPolicyNames.delete(uid);
    this.addressResources.set(uid, undefined);
  }

  private unindexPod(key: string): void {
    const previous = this.pods.get(key);
    if (!previous) return;
    this.pods.delete(key);
    this.podsByNamespace.delete(previous.namespace, key);
    if (previous.nodeName) this.podsByNode.delete(previous.nodeName, key);
    for (const ip of this.indexedIps(previous)) this.podsByIp.delete(ip, key);
  }

  private rebuildWorkload(key: string): void {
    const pod = this.pods.get(key);
    if (!pod) return;
    const uid = podWorkloadUid(this.clusterId, pod.namespace, pod.name);
    this.waypointPolicyNames.delete(uid);
    if (!hasWorkload(pod) || this.addressTakenOver(key, pod)) return this.addressResources.set(uid, undefined);
    this.counters.workloadBuilds++;
    const waypoint = this.waypointOfPod(pod);
    const policies = this.selectorPoliciesOf(pod);
    if (waypoint) this.waypointPolicyNames.set(uid, policies);
    const workload = buildWorkload(pod, {
      clusterId: this.clusterId,
      network: this.network,
      trustDomain: this.trustDomain,
      namespaceDataplaneMode: this.namespaces.get(pod.namespace)?.dataplaneMode,
      locality: pod.nodeName ? this.localities.get(pod.nodeName) : undefined,
      services: this.servicesOf(pod),
      authorizationPolicies: waypoint ? [] : policies,
      domainSuffix: this.domainSuffix,
      waypoint,
    });
    this.addressResources.set(uid, workload && create(AddressSchema, { type: { case: 'workload', value: workload } }));
  }

  /**
   * The waypoint for traffic addressed to a pod (Workload.waypoint), most specific first: the pod's
   * own `istio.io/use-waypoint`, a waypoint for its service account (seed 004's istio-mesh Gateway),
   * its namespace's `istio.io/use-waypoint`. Only waypoints for workloads (waypoint-for workload or
   * all) count; a waypoint's own pods never use one.
   */
  private waypointOfPod(pod: PodView): GatewayAddress | undefined {
    if (isWaypointService(pod)) return undefined;
    const own = enrolmentChoice(enrolmentOf(pod.labels), pod.namespace);
    if (own.kind !== 'unset') return this.workloadWaypoint(own);
    for (const key of this.servicesByNamespace.get(pod.namespace)) {
      const view = waypointFromService(this.services.get(key)!, this.domainSuffix);
      if (view?.serviceAccount === pod.serviceAccount) return view.address;
    }
    return this.workloadWaypoint(enrolmentChoice(this.namespaces.get(pod.namespace)?.waypoint, pod.namespace));
  }

  private workloadWaypoint(choice: EnrolmentChoice): GatewayAddress | undefined {
    if (choice.kind !== 'waypoint') return undefined;
    const service = this.services.get(choice.key);
    const view = service && waypointFromService(service, this.domainSuffix);
    return view && servesWorkloads(view) ? view.address : undefined;
  }

  private servicesOf(pod: PodView): Record<string, PortList> {
    const services: Record<string, PortList> = {};
    for (const key of this.servicesByNamespace.get(pod.namespace)) {
      const service = this.services.get(key)!;
      if (selects(service.selector, pod.labels)) {
        services[serviceResourceNameOf(service, this.domainSuffix)] = workloadPortList(service, pod);
      }
    }
    return services;
  }

  /** Selector policies of the pod's namespace, and of the root namespace (which select mesh-wide). */
  private selectorPoliciesOf(pod: PodView): string[] {
    const names: string[] = [];
    const namespaces = new Set([pod.namespace, this.rootNamespace]);
    for (const namespace of namespaces) {
      for (const name of this.selectorPoliciesByNamespace.get(namespace)) {
        if (selects(this.selectorPolicies.get(name)!.selector, pod.labels)) names.push(name);
      }
    }
    return names.sort();
  }

  /** Rebuilds the given pods that any of the selectors selects (e.g. a service's old and new selector). */
  private rebuildPodsSelectedBy(podKeys: Iterable<string>, selectors: Array<Labels | undefined>): void {
    const present = selectors.filter((selector): selector is Labels => selector !== undefined);
    if (present.length === 0) return;
    for (const key of podKeys) {
      const pod = this.pods.get(key)!;
      if (present.some((selector) => selects(selector, pod.labels))) this.rebuildWorkload(key);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Services
  // -------------------------------------------------------------------------------------------

  private upsertService(object: unknown): void {
    const parsed = parseService(object);
    if (!parsed.ok) return this.problemLog.set(problemSubject('Service', objectRef(object)), parsed.problems);
    const service = parsed.value;
    const subject = problemSubject('Service', service);
    this.problemLog.set(subject, []);
    if (isPublished(service)) return this.setService(refKey(service), service);
    this.problemLog.set(subject, [], SETTINGS);
    this.setService(refKey(service), undefined);
  }

  private removeService(object: unknown): void {
    const ref = this.removedRef('Service', object);
    if (ref?.namespace) this.setService(refKey(ref), undefined);
  }

  private setService(key: string, service: ServiceView | undefined): void {
    const previous = this.services.get(key);
    if (previous) {
      this.services.delete(key);
      this.servicesByNamespace.delete(previous.namespace, key);
      if (!service) this.addressResources.set(serviceResourceNameOf(previous, this.domainSuffix), undefined);
    }
    if (service) {
      this.services.set(key, service);
      this.servicesByNamespace.add(service.namespace, key);
      this.rebuildService(key);
    }
    // A waypoint's Service appearing, going or changing what it is for changes every Service and pod that names it.
    if (isWaypointService(previous) || isWaypointService(service)) {
      for (const other of this.services.keys()) if (other !== key) this.rebuildService(other);
      for (const pod of this.pods.keys()) this.rebuildWorkload(pod);
    }
    // Pods carry the service's ports: only a selector or port change touches them.
    if (podFacingShape(previous) !== podFacingShape(service)) {
      const namespace = (service ?? previous)!.namespace;
      this.rebuildPodsSelectedBy(this.podsByNamespace.get(namespace), [previous?.selector, service?.selector]);
    }
  }

  /** A waypoint is used once its Service exists here and it is for services (as Istio: naming a missing waypoint changes nothing). */
  private existingWaypoint(waypoint: GatewayAddress | undefined): GatewayAddress | undefined {
    if (waypoint?.destination.case !== 'hostname') return waypoint;
    const { namespace, hostname } = waypoint.destination.value;
    const service = this.services.get(refKey({ namespace, name: hostname.split('.', 1)[0]! }));
    const view = service && waypointFromService(service, this.domainSuffix);
    return view && servesServices(view) ? waypoint : undefined;
  }

  private rebuildService(key: string): void {
    const service = this.services.get(key);
    if (!service) return;
    const distribution = serviceTrafficDistribution(service, this.namespaces.get(service.namespace)?.distribution);
    this.problemLog.set(problemSubject('Service', service), distribution.problems, SETTINGS);
    this.counters.serviceBuilds++;
    const built = buildService(service, {
      network: this.network,
      domainSuffix: this.domainSuffix,
      distribution: distribution.value,
      waypoint: this.existingWaypoint(waypointOf(service.labels, service.namespace, this.namespaces.get(service.namespace)?.waypoint, this.domainSuffix)),
    });
    this.addressResources.set(
      serviceResourceNameOf(service, this.domainSuffix),
      create(AddressSchema, { type: { case: 'service', value: built } }),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Authorization policies
  // -------------------------------------------------------------------------------------------

  private upsertPolicy(object: unknown): void {
    this.counters.policyConversions++;
    const conversion = convertAuthorizationPolicy(object, this.rootNamespace);
    const subject = problemSubject('AuthorizationPolicy', conversion.ref);
    if (conversion.outcome === 'invalid') return this.problemLog.set(subject, conversion.problems);
    const name = authorizationName(conversion.ref);
    if (conversion.outcome === 'ignored') {
      this.problemLog.set(subject, conversion.problems);
      this.httpWarnings.delete(name);
      return this.setPolicy(name, conversion.ref.namespace!, undefined, undefined);
    }
    this.problemLog.set(subject, []);
    this.warnHttpAttributes(name, conversion.authorization.action, conversion.httpAttributes);
    this.setPolicy(name, conversion.ref.namespace!, conversion.authorization, conversion.selector);
  }

  private removePolicy(object: unknown): void {
    const ref = this.removedRef('AuthorizationPolicy', object);
    if (!ref?.namespace) return;
    const name = authorizationName(ref);
    this.httpWarnings.delete(name);
    this.setPolicy(name, ref.namespace, undefined, undefined);
  }

  private setPolicy(name: string, namespace: string, authorization: Authorization | undefined, selector: Labels | undefined): void {
    this.authorizationResources.set(name, authorization);
    const previous = this.selectorPolicies.get(name);
    if (previous) {
      this.selectorPolicies.delete(name);
      this.selectorPoliciesByNamespace.delete(namespace, name);
    }
    if (authorization && selector) {
      this.selectorPolicies.set(name, { namespace, selector });
      this.selectorPoliciesByNamespace.add(namespace, name);
    }
    // Workloads list selector policies by name: only a change of who is selected touches them.
    if (JSON.stringify(previous?.selector) !== JSON.stringify(selector)) {
      const pods = namespace === this.rootNamespace ? this.pods.keys() : this.podsByNamespace.get(namespace);
      this.rebuildPodsSelectedBy(pods, [previous?.selector, selector]);
    }
  }

  private warnHttpAttributes(name: string, action: Action, attributes: string[]): void {
    const warning = attributes.join(', ');
    if (!warning) {
      this.httpWarnings.delete(name);
      return;
    }
    if (this.httpWarnings.get(name) === warning) return;
    this.httpWarnings.set(name, warning);
    const effect =
      action === Action.ALLOW
        ? 'ALLOW rules using them are omitted, which is more restrictive than requested'
        : 'DENY rules are enforced without them, which is more restrictive than requested';
    this.log.warn(
      { policy: name, attributes },
      `ztunnel does not support HTTP attributes (found: ${warning}); ${effect}. A waypoint is needed to enforce HTTP rules`,
    );
  }
}

/** Problem aspect of values resolved against other objects (a namespace default), re-evaluated apart. */
const SETTINGS = 'settings';

function problemSubject(kind: Kind, ref: ObjectRef | undefined): string {
  return ref ? `${kind} ${refKey(ref)}` : `${kind} (without metadata.name/namespace)`;
}

function sameLocality(a: Locality | undefined, b: Locality | undefined): boolean {
  if (!a || !b) return a === b;
  return a.region === b.region && a.zone === b.zone && a.subzone === b.subzone;
}
