import { create, equals } from '@bufbuild/protobuf';
import {
  LoadBalancing_Mode,
  NetworkMode,
  type GatewayAddress,
  PortSchema,
  ServiceSchema,
  TunnelProtocol,
  WorkloadSchema,
  type Port,
  type Service,
  type Workload,
} from '../../gen/istio/workload/workload_pb.js';
import { AuthorizationSchema, type Authorization } from '../../gen/istio/security/authorization_pb.js';
import { identityOf, spiffeUri } from '../../api/identity.js';
import { HBONE_PORT, serviceResourceName } from '../../api/resources.js';
import { createLogger, type Logger } from '../../util/log.js';
import { canonicalIp, decodeAddresses, ipFamily } from './addresses.js';
import { AuthorizationStore } from './authorization.js';
import { EndpointIndex, type Endpoint } from './endpoints.js';
import type { GatewayChooser } from './reachability.js';
import { evaluateEndpoints, pickWeighted, selectEndpoint, selectionOf, type EndpointEvaluation, type EndpointsEvaluation, type EvaluationRequest, type Selection } from './load-balancer.js';
import { ServiceIndex } from './service-index.js';
import { serviceTargetOf } from './service-target.js';
import type { AuthorizationDecision, ConnectionFacts, ProxyState, Resolution, ResolveOptions, ServiceTarget, StateUpdates, Upstream } from './types.js';
import { InvalidResourceError, StateUpdateError, authorizationProblems, serviceProblems, workloadProblems } from './validation.js';
import { WorkloadIndex } from './workload-index.js';
import { waypointNameOf } from './waypoints.js';

export interface ZtunnelStateOptions {
  network: string;
  nodeName: string;
  clusterId: string;
  /** Root namespace: GLOBAL-scope authorization policies there apply to every workload. */
  systemNamespace: string;
  /** Source of randomness for load balancing, in [0, 1); tests pass a seeded one. */
  random?: () => number;
  logger?: Logger;
}

type ChangeListener = (changed: { addresses: string[]; authorizations: string[] }) => void;

type AddressUpsert = { name: string; workload?: Workload; service?: Service };

/** A destination as resolve() sees it before load balancing. */
type Destination =
  | { kind: 'service'; service: Service; request: EvaluationRequest }
  | { kind: 'workload'; upstream: Upstream }
  | { kind: 'passthrough'; reason: string; service?: Service };

/** resolve()'s reasoning for a destination (see {@link ZtunnelState.analyzeDestination}). */
export type DestinationAnalysis =
  /**
   * A service VIP and port: the pick is made among `evaluation.chosenFrom`, or, when `waypoint` is
   * set (the service's waypoint, or its unavailability), by that waypoint per request.
   */
  | { kind: 'service'; serviceName: string; service: Service; servicePort: Port; evaluation: EndpointsEvaluation; waypoint?: Resolution; source: Workload; ignoreWaypoints: boolean }
  /** A workload's own address: no load balancing. */
  | { kind: 'workload'; resolution: Resolution }
  /** Left unchanged to the network; `service` when the address is a service VIP. */
  | { kind: 'passthrough'; reason: string; service?: Service };

/**
 * ztunnel's view of the mesh: the workload API resources, indexed for the data path.
 * The state keeps the messages it is given (no copy): callers must not mutate them afterwards.
 */
export class ZtunnelState implements ProxyState, StateUpdates {
  readonly network: string;
  readonly nodeName: string;
  readonly clusterId: string;
  readonly systemNamespace: string;

  private readonly random: () => number;
  private readonly logger: Logger;
  private readonly workloadIndex: WorkloadIndex;
  private readonly serviceIndex: ServiceIndex;
  private readonly endpointIndex: EndpointIndex;
  private readonly policies: AuthorizationStore;
  private readonly listeners: ChangeListener[] = [];

  constructor(options: ZtunnelStateOptions) {
    this.network = options.network;
    this.nodeName = options.nodeName;
    this.clusterId = options.clusterId;
    this.systemNamespace = options.systemNamespace;
    this.random = options.random ?? Math.random;
    this.logger = options.logger ?? createLogger('ztunnel.state');
    this.workloadIndex = new WorkloadIndex(this.network, this.nodeName, this.clusterId);
    this.serviceIndex = new ServiceIndex(this.network);
    this.endpointIndex = new EndpointIndex(this.workloadIndex, this.network);
    this.policies = new AuthorizationStore(this.systemNamespace);
  }

  // ---- write side -------------------------------------------------------------------------------

  /**
   * Applies a delta of `istio.workload.Address` resources. Invalid resources are refused (their
   * previous version stays) and reported by throwing a StateUpdateError after the rest was applied
   * and listeners were told.
   */
  applyAddresses(upserted: AddressUpsert[], removed: string[]): void {
    const changed = new Set<string>();
    const rejected: InvalidResourceError[] = [];
    for (const name of removed) {
      if (this.removeAddress(name)) changed.add(name);
    }
    for (const entry of upserted) {
      const error = this.checkAddress(entry);
      if (error) rejected.push(error);
      else if (this.upsertAddress(entry)) changed.add(entry.name);
    }
    this.notify({ addresses: [...changed], authorizations: [] });
    if (rejected.length > 0) throw new StateUpdateError(rejected);
  }

  /** Applies a delta of `istio.security.Authorization` resources, with the same error handling as applyAddresses. */
  applyAuthorizations(upserted: Array<{ name: string; authorization: Authorization }>, removed: string[]): void {
    const changed = new Set<string>();
    const rejected: InvalidResourceError[] = [];
    for (const name of removed) {
      if (this.policies.remove(name)) changed.add(name);
    }
    for (const { name, authorization } of upserted) {
      const problems = authorizationProblems(authorization);
      if (problems.length > 0) {
        rejected.push(new InvalidResourceError('authorization', name, problems));
        continue;
      }
      const previous = this.policies.get(name);
      if (previous && equals(AuthorizationSchema, previous, authorization)) continue;
      this.policies.upsert(name, authorization);
      changed.add(name);
    }
    this.notify({ addresses: [], authorizations: [...changed] });
    if (rejected.length > 0) throw new StateUpdateError(rejected);
  }

  /** Listeners run after each apply that changed something; a throwing listener is logged, not propagated. */
  onChange(listener: ChangeListener): void {
    this.listeners.push(listener);
  }

  private notify(changed: { addresses: string[]; authorizations: string[] }): void {
    if (changed.addresses.length === 0 && changed.authorizations.length === 0) return;
    for (const listener of this.listeners) {
      try {
        listener(changed);
      } catch (err) {
        this.logger.error({ err, addresses: changed.addresses.length, authorizations: changed.authorizations.length }, 'state change listener failed');
      }
    }
  }

  private checkAddress(entry: AddressUpsert): InvalidResourceError | undefined {
    if (!entry.name) return new InvalidResourceError('address', entry.name, ['name: required']);
    if (entry.workload && entry.service) return new InvalidResourceError('address', entry.name, ['type: both workload and service set']);
    if (entry.workload) {
      const problems = workloadProblems(entry.workload);
      return problems.length > 0 ? new InvalidResourceError('workload', entry.name, problems) : undefined;
    }
    if (entry.service) {
      const problems = serviceProblems(entry.service);
      return problems.length > 0 ? new InvalidResourceError('service', entry.name, problems) : undefined;
    }
    return new InvalidResourceError('address', entry.name, ['type: neither workload nor service set']);
  }

  /** Returns whether anything changed. */
  private upsertAddress(entry: AddressUpsert): boolean {
    if (entry.workload) return this.upsertWorkload(entry.name, entry.workload);
    if (entry.service) return this.upsertService(entry.name, entry.service);
    return false;
  }

  private upsertWorkload(name: string, received: Workload): boolean {
    // Workloads are known by uid everywhere; the resource name is the uid.
    const workload = received.uid ? received : { ...received, uid: name };
    const previous = this.workloadIndex.get(name);
    if (previous && equals(WorkloadSchema, previous, workload)) return false;
    this.serviceIndex.remove(name);
    this.workloadIndex.upsert(name, workload);
    this.endpointIndex.workloadChanged(name, previous, workload);
    return true;
  }

  private upsertService(name: string, service: Service): boolean {
    const previous = this.serviceIndex.get(name);
    if (previous && equals(ServiceSchema, previous, service)) return false;
    this.removeWorkload(name);
    this.serviceIndex.upsert(name, service);
    return true;
  }

  private removeAddress(name: string): boolean {
    const hadService = this.serviceIndex.remove(name) !== undefined;
    return this.removeWorkload(name) || hadService;
  }

  private removeWorkload(name: string): boolean {
    const previous = this.workloadIndex.remove(name);
    if (!previous) return false;
    this.endpointIndex.workloadChanged(name, previous, undefined);
    return true;
  }

  // ---- read side --------------------------------------------------------------------------------

  workloads(): Workload[] {
    return this.workloadIndex.all();
  }

  services(): Service[] {
    return this.serviceIndex.all();
  }

  authorizations(): Authorization[] {
    return this.policies.all();
  }

  workload(name: string): Workload | undefined {
    return this.workloadIndex.get(name);
  }

  service(name: string): Service | undefined {
    return this.serviceIndex.get(name);
  }

  authorization(name: string): Authorization | undefined {
    return this.policies.get(name);
  }

  /** Workloads whose `services` map names this service (healthy or not), whether or not the service itself is known yet. */
  endpointsOf(serviceName: string): Workload[] {
    return this.endpointIndex.endpoints(serviceName).map((endpoint) => endpoint.workload);
  }

  /** Pods by their own DNS name (`Workload.hostname`, StatefulSet pods), lower-case without a trailing dot. */
  workloadsByDnsName(hostname: string): Workload[] {
    return this.workloadIndex.byDnsName(hostname);
  }

  servicesByHostname(hostname: string): Service[] {
    return this.serviceIndex.findByHostname(hostname);
  }

  /** The service owning a VIP on a network (default: the local network). */
  serviceByVip(ip: string, network?: string, clientNamespace = ''): Service | undefined {
    const canonical = canonicalIp(ip);
    return canonical === undefined ? undefined : this.serviceIndex.findByVip(canonical, network || this.network, clientNamespace)?.service;
  }

  workloadByIp(ip: string, network?: string): Workload | undefined {
    const canonical = canonicalIp(ip);
    return canonical === undefined ? undefined : this.workloadIndex.byIp(canonical, network || this.network);
  }

  hostNetworkWorkloadsAt(ip: string): Workload[] {
    const canonical = canonicalIp(ip);
    return canonical === undefined ? [] : this.workloadIndex.hostNetworkAt(canonical, this.network);
  }

  knowsNetwork(network: string): boolean {
    return this.workloadIndex.hasNetwork(network);
  }

  /** Workloads scheduled on this node. */
  localWorkloads(): Workload[] {
    return this.workloadIndex.local();
  }

  /** Workloads on this node whose traffic this ztunnel captures: HBONE, not host-network. */
  localEnrolledWorkloads(): Workload[] {
    return this.workloadIndex
      .local()
      .filter((workload) => workload.tunnelProtocol === TunnelProtocol.HBONE && workload.networkMode === NetworkMode.STANDARD);
  }

  /**
   * The pod addresses this ztunnel captures: those of local enrolled workloads that own them. An
   * address a deleted pod gave back and a pod outside the mesh (a waypoint, say) got is not captured.
   */
  capturedAddresses(): string[] {
    return this.localEnrolledWorkloads().flatMap((workload) => this.workloadIndex.ownedAddresses(workload));
  }

  // ---- data path --------------------------------------------------------------------------------

  resolve(source: Workload, destinationIp: string, destinationPort: number, options: ResolveOptions = {}): Resolution {
    const destination = this.destinationOf(source, destinationIp, destinationPort, options.subset);
    if (destination.kind === 'passthrough') return { kind: 'passthrough' };
    const honour = !options.ignoreWaypoints;
    if (destination.kind === 'workload') return (honour && this.workloadWaypoint(source, destination.upstream, destinationPort, this.random)) || this.toResolution(destination.upstream);
    const serviceWaypoint = honour && this.serviceWaypoint(source, destination.service, destinationIp, destinationPort, this.random);
    if (serviceWaypoint) return serviceWaypoint;
    const selection = selectEndpoint({
      ...destination.request,
      avoidGateways: options.avoidGateways,
      gatewayChooser: this.gatewayChooser(options.avoidGateways, this.random),
      random: this.random,
    });
    const resolution = this.serviceResolution(destination.service, destination.request.servicePort, selection);
    return (honour && this.endpointWaypoint(source, resolution, this.random)) || resolution;
  }

  /** A destination service's own waypoint (`Service.waypoint`): the CONNECT names `<VIP>:<service port>`. */
  private serviceWaypoint(source: Workload, service: Service, vip: string, port: number, random: () => number): Resolution | undefined {
    if (!service.waypoint) return undefined;
    return this.waypointResolution(source, service.waypoint, formatHostPort(canonicalIp(vip) ?? vip, port), { service }, ipFamily(vip), random);
  }

  /** A pod addressed directly whose workload has a waypoint (`Workload.waypoint`): the CONNECT names `<pod ip>:<port>`. */
  private workloadWaypoint(source: Workload, upstream: Upstream, port: number, random: () => number): Resolution | undefined {
    const { waypoint } = upstream.workload;
    if (!waypoint) return undefined;
    return this.waypointResolution(source, waypoint, formatHostPort(upstream.address, port), { destination: upstream.workload }, ipFamily(upstream.address), random);
  }

  /**
   * The endpoint picked for a service (without a waypoint of its own) has one: seed 004's
   * service-account waypoints, or waypoint-for workload. The CONNECT names `<pod ip>:<target port>`.
   */
  private endpointWaypoint(source: Workload, resolution: Resolution, random: () => number): Resolution | undefined {
    if (resolution.kind !== 'hbone') return undefined;
    const { upstream } = resolution;
    const { waypoint } = upstream.workload;
    if (!waypoint) return undefined;
    return this.waypointResolution(source, waypoint, formatHostPort(upstream.address, upstream.port), { service: upstream.service, destination: upstream.workload }, ipFamily(upstream.address), random);
  }

  /**
   * Where a waypoint named by a GatewayAddress is, for a source: a pod of the waypoint's Service
   * (hostname form) on the source's network, picked like any endpoint (health, capacity, locality of
   * the waypoint Service's load balancing); or the workload at its address. The waypoint speaks
   * HBONE itself on `hbone_mtls_port`, so its pod is dialled directly whatever its tunnel protocol.
   *
   * A request crosses the waypoint of the source's side only: a waypoint this state does not know
   * on the source's network (another cluster's, on another network: its Service is not here and no
   * pod of it is on this network) is not honoured, and the connection resolves as without one (the
   * destination ztunnel's sandwich rule then decides). A waypoint known here with no usable pod
   * makes the destination unavailable, naming the waypoint.
   */
  private waypointResolution(source: Workload, waypoint: GatewayAddress, authority: string, target: { service?: Service; destination?: Workload }, family: 4 | 6, random: () => number): Resolution | undefined {
    const port = waypoint.hboneMtlsPort || HBONE_PORT;
    const network = source.network || this.network;
    const name = waypointNameOf(waypoint);
    let pods: Endpoint[];
    let loadBalancing: Service['loadBalancing'];
    if (waypoint.destination.case === 'hostname') {
      const key = serviceResourceName(waypoint.destination.value.namespace, waypoint.destination.value.hostname);
      const waypointService = this.serviceIndex.get(key);
      pods = this.endpointIndex.endpoints(key).filter((endpoint) => endpoint.network === network);
      if (!waypointService && pods.length === 0) return undefined;
      loadBalancing = waypointService?.loadBalancing;
    } else if (waypoint.destination.case === 'address') {
      const { network: at } = waypoint.destination.value;
      if (at && at !== network) return undefined;
      const address = decodeAddresses([waypoint.destination.value.address])[0];
      const found = address === undefined ? undefined : this.workloadIndex.byIp(address, network);
      pods = found ? [{ workloadName: found.uid, workload: found, network, addresses: address ? [address] : [], identity: identityUri(found), targetPorts: new Map(), capacity: found.capacity ?? 1 }] : [];
    } else {
      return this.waypointUnavailable(target, name, `waypoint ${name} names neither a hostname nor an address`);
    }
    const evaluation = evaluateEndpoints({
      source,
      sourceNetwork: network,
      serviceName: name,
      loadBalancing,
      servicePort: create(PortSchema, { servicePort: port, targetPort: port }),
      endpoints: pods,
      destinationFamily: family,
      gatewayWorkload: () => undefined,
    });
    if (evaluation.unavailable !== undefined) {
      const why = pods.length === 0 ? `no pod on network ${network || '(default)'}` : evaluation.unavailable.replace(`service ${name}`, 'it');
      return this.waypointUnavailable(target, name, `waypoint ${name} has no usable pod: ${why}`);
    }
    const chosen = pickWeighted(evaluation.chosenFrom, (candidate) => candidate.capacity, random);
    const address = chosen.reachability.kind === 'direct' ? chosen.reachability.address : chosen.endpoint.addresses[0]!;
    const upstream: Upstream = { workload: chosen.endpoint.workload, address, port, expectedIdentities: [chosen.endpoint.identity], service: target.service };
    return { kind: 'waypoint', upstream, authority, waypointName: name, service: target.service, destination: target.destination };
  }

  /** SPIFFE identities of a waypoint's pods (any network): who may speak for a workload that requires its waypoint. */
  waypointIdentities(waypoint: GatewayAddress): string[] {
    if (waypoint.destination.case === 'hostname') {
      const key = serviceResourceName(waypoint.destination.value.namespace, waypoint.destination.value.hostname);
      return [...new Set(this.endpointIndex.endpoints(key).map((endpoint) => endpoint.identity))];
    }
    if (waypoint.destination.case === 'address') {
      const address = decodeAddresses([waypoint.destination.value.address])[0];
      const found = address === undefined ? undefined : this.workloadIndex.byIp(address, waypoint.destination.value.network || this.network);
      return found ? [identityUri(found)] : [];
    }
    return [];
  }

  private waypointUnavailable(target: { service?: Service; destination?: Workload }, waypoint: string, reason: string): Resolution {
    const service = target.service ?? create(ServiceSchema, { name: waypoint, namespace: target.destination?.namespace ?? '', hostname: waypoint });
    return { kind: 'unavailable', service, reason };
  }

  /**
   * What resolve() reasons on for a destination, without picking: for a service, every endpoint's
   * evaluation (and, with a waypoint, where the connection goes instead); for a workload address, its
   * resolution; otherwise why the connection passes through. Waypoint pods are picked deterministically.
   */
  analyzeDestination(source: Workload, destinationIp: string, destinationPort: number, options: ResolveOptions = {}): DestinationAnalysis {
    const destination = this.destinationOf(source, destinationIp, destinationPort, options.subset);
    if (destination.kind === 'passthrough') return destination;
    const honour = !options.ignoreWaypoints;
    const first = () => 0;
    if (destination.kind === 'workload') {
      return { kind: 'workload', resolution: (honour && this.workloadWaypoint(source, destination.upstream, destinationPort, first)) || this.toResolution(destination.upstream) };
    }
    const { service, request } = destination;
    // Deterministic for explanations: the first gateway not avoided stands for the network's gateways.
    const evaluation = evaluateEndpoints({ ...request, avoidGateways: options.avoidGateways, gatewayChooser: this.gatewayChooser(options.avoidGateways, first) });
    const waypoint = honour ? this.serviceWaypoint(source, service, destinationIp, destinationPort, first) : undefined;
    return { kind: 'service', serviceName: request.serviceName, service, servicePort: request.servicePort, evaluation, ...(waypoint ? { waypoint } : {}), source, ignoreWaypoints: !honour };
  }

  /** Network gateways named by hostname are the endpoints of that service (the gateway workloads). */
  private gatewayChooser(avoid: ReadonlySet<string> | undefined, random: () => number): GatewayChooser {
    return { endpointsOf: (serviceKey) => this.endpointsOf(serviceKey), avoid, random };
  }

  /** The resolution resolve() returns when it picks `chosen` among a service's endpoints. */
  resolutionThrough(analysis: Extract<DestinationAnalysis, { kind: 'service' }>, chosen: EndpointEvaluation): Resolution {
    const resolution = this.serviceResolution(analysis.service, analysis.servicePort, selectionOf(chosen));
    return (!analysis.ignoreWaypoints && this.endpointWaypoint(analysis.source, resolution, () => 0)) || resolution;
  }

  private destinationOf(source: Workload, destinationIp: string, port: number, subset?: ResolveOptions['subset']): Destination {
    const ip = canonicalIp(destinationIp);
    if (ip === undefined) return { kind: 'passthrough', reason: `${destinationIp} is not an IP address` };
    const network = source.network || this.network;
    const found = this.serviceIndex.findByVip(ip, network, source.namespace);
    if (found) return this.serviceDestination(source, network, found.name, found.service, ip, port, subset);
    const workload = this.workloadIndex.byIp(ip, network);
    if (workload) return { kind: 'workload', upstream: { workload, address: ip, port, expectedIdentities: [identityUri(workload)] } };
    return { kind: 'passthrough', reason: `${ip} is neither a service VIP nor a workload address the mesh knows on network ${network}` };
  }

  private serviceDestination(source: Workload, network: string, serviceName: string, service: Service, vip: string, port: number, subset?: ResolveOptions['subset']): Destination {
    const passthrough = (reason: string): Destination => ({ kind: 'passthrough', reason: `service ${serviceName} ${reason}`, service });
    if (service.loadBalancing?.mode === LoadBalancing_Mode.PASSTHROUGH) return passthrough('has load balancing mode PASSTHROUGH: the original address is dialled');
    const servicePort = service.ports.find((candidate) => candidate.servicePort === port);
    if (!servicePort) return passthrough(`has no port ${port}`);
    const endpoints = this.endpointIndex.endpoints(serviceName);
    // A service whose backends the mesh does not know (no selector, hand-written Endpoints such as
    // the API server's `kubernetes` service) is left to the network, as if it were outside the mesh.
    if (endpoints.length === 0) return passthrough('has no endpoints known to the mesh (no selector, or hand-written Endpoints): left to the network');
    const request: EvaluationRequest = {
      source,
      sourceNetwork: network,
      serviceName: subset ? `${serviceName} subset ${subset.name}` : serviceName,
      loadBalancing: service.loadBalancing,
      servicePort,
      endpoints: subset ? endpoints.filter((endpoint) => subset.workloads.has(endpoint.workload.uid)) : endpoints,
      destinationFamily: ipFamily(vip),
      gatewayWorkload: (ip, gatewayNetwork) => this.workloadIndex.byIp(ip, gatewayNetwork),
    };
    return { kind: 'service', service, request };
  }

  private serviceResolution(service: Service, servicePort: Port, selection: Selection): Resolution {
    if (selection.kind === 'unavailable') return { kind: 'unavailable', service, reason: selection.reason };
    const { endpoint } = selection;
    const expectedIdentities = [endpoint.identity, ...service.subjectAltNames.filter((san) => san !== endpoint.identity)];
    const upstream = { workload: endpoint.workload, address: selection.address, port: selection.port, expectedIdentities, service };
    if (selection.gateway) return { kind: 'gateway', upstream, gateway: selection.gateway, authority: `${service.hostname}:${servicePort.servicePort}` };
    return this.toResolution(upstream);
  }

  private toResolution(upstream: Upstream): Resolution {
    return upstream.workload.tunnelProtocol === TunnelProtocol.HBONE ? { kind: 'hbone', upstream } : { kind: 'plaintext', upstream };
  }

  serviceTarget(destination: Workload, hostname: string, servicePort: number): ServiceTarget {
    return serviceTargetOf(destination, hostname, servicePort, (name) => this.serviceIndex.get(name));
  }

  authorize(facts: ConnectionFacts): AuthorizationDecision {
    return this.policies.authorize(facts);
  }
}

/** `ip:port`, with brackets for IPv6. */
function formatHostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function identityUri(workload: Workload): string {
  return spiffeUri(identityOf(workload));
}
