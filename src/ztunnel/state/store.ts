import { equals } from '@bufbuild/protobuf';
import { create } from '@bufbuild/protobuf';
import {
  LoadBalancing_Mode,
  NetworkMode,
  WorkloadStatus,
  type GatewayAddress,
  ServiceSchema,
  TunnelProtocol,
  WorkloadSchema,
  type Port,
  type Service,
  type Workload,
} from '../../gen/istio/workload/workload_pb.js';
import { AuthorizationSchema, type Authorization } from '../../gen/istio/security/authorization_pb.js';
import { identityOf, spiffeUri } from '../../api/identity.js';
import { HBONE_PORT } from '../../api/resources.js';
import { createLogger, type Logger } from '../../util/log.js';
import { canonicalIp, decodeAddresses, ipFamily } from './addresses.js';
import { AuthorizationStore } from './authorization.js';
import { EndpointIndex } from './endpoints.js';
import type { GatewayChooser } from './reachability.js';
import { evaluateEndpoints, selectEndpoint, selectionOf, type EndpointEvaluation, type EndpointsEvaluation, type EvaluationRequest, type Selection } from './load-balancer.js';
import { ServiceIndex } from './service-index.js';
import { serviceTargetOf } from './service-target.js';
import type { AuthorizationDecision, ConnectionFacts, ProxyState, Resolution, ResolveOptions, ServiceTarget, StateUpdates, Upstream } from './types.js';
import { InvalidResourceError, StateUpdateError, authorizationProblems, serviceProblems, workloadProblems } from './validation.js';
import { WorkloadIndex } from './workload-index.js';

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
  /** A service VIP and port: the pick is made among `evaluation.chosenFrom`. */
  | { kind: 'service'; serviceName: string; service: Service; servicePort: Port; evaluation: EndpointsEvaluation }
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

  // ---- data path --------------------------------------------------------------------------------

  resolve(source: Workload, destinationIp: string, destinationPort: number, options: ResolveOptions = {}): Resolution {
    const destination = this.destinationOf(source, destinationIp, destinationPort);
    if (destination.kind === 'passthrough') return { kind: 'passthrough' };
    const honourWaypoints = !options.ignoreWaypoints;
    if (destination.kind === 'workload') {
      const { workload } = destination.upstream;
      if (honourWaypoints && workload.waypoint) return this.waypointResolution(source, workload.waypoint, `${destination.upstream.address}:${destinationPort}`, { destination: workload });
      return this.toResolution(destination.upstream);
    }
    if (honourWaypoints && destination.service.waypoint) {
      return this.waypointResolution(source, destination.service.waypoint, `${canonicalIp(destinationIp)}:${destinationPort}`, { service: destination.service });
    }
    const selection = selectEndpoint({
      ...destination.request,
      avoidGateways: options.avoidGateways,
      gatewayChooser: this.gatewayChooser(options.avoidGateways, this.random),
      random: this.random,
    });
    const resolution = this.serviceResolution(destination.service, destination.request.servicePort, selection);
    // The picked endpoint has a waypoint of its own (waypoint-for workload, seed 004's service-account waypoints).
    if (honourWaypoints && resolution.kind === 'hbone' && resolution.upstream.workload.waypoint) {
      const { upstream } = resolution;
      return this.waypointResolution(source, upstream.workload.waypoint!, `${upstream.address}:${upstream.port}`, { service: destination.service, destination: upstream.workload });
    }
    return resolution;
  }

  /**
   * Where a waypoint named by a GatewayAddress is: a pod of its Service (hostname form), healthy and
   * on the source's network, picked like any endpoint; or the workload at its address. The waypoint
   * speaks HBONE itself on `hbone_mtls_port`, so it is dialled directly whatever its tunnel protocol.
   */
  private waypointResolution(source: Workload, waypoint: GatewayAddress, authority: string, target: { service?: Service; destination?: Workload }): Resolution {
    const port = waypoint.hboneMtlsPort || HBONE_PORT;
    const network = source.network || this.network;
    const { name, pods: candidates } = this.waypointPods(waypoint, network);
    const usable = candidates.filter((w) => w.status === WorkloadStatus.HEALTHY && (w.network || this.network) === network && decodeAddresses(w.addresses).length > 0);
    if (usable.length === 0) return this.waypointUnavailable(target, name, `waypoint ${name} has no healthy pod on network ${network || '(default)'}`);
    const chosen = usable[Math.min(usable.length - 1, Math.floor(this.random() * usable.length))]!;
    const upstream: Upstream = { workload: chosen, address: decodeAddresses(chosen.addresses)[0]!, port, expectedIdentities: [identityUri(chosen)], service: target.service };
    return { kind: 'waypoint', upstream, authority, service: target.service, destination: target.destination };
  }

  /** The pods of a waypoint named by a GatewayAddress (its Service's endpoints, or the workload at its address). */
  private waypointPods(waypoint: GatewayAddress, network: string): { name: string; pods: Workload[] } {
    if (waypoint.destination.case === 'hostname') {
      const { namespace, hostname } = waypoint.destination.value;
      const name = `${namespace}/${hostname}`;
      return { name, pods: this.endpointIndex.endpoints(name).map((endpoint) => endpoint.workload) };
    }
    if (waypoint.destination.case === 'address') {
      const address = decodeAddresses([waypoint.destination.value.address])[0];
      const found = address === undefined ? undefined : this.workloadIndex.byIp(address, waypoint.destination.value.network || network);
      return { name: address ?? 'an invalid address', pods: found ? [found] : [] };
    }
    return { name: 'a waypoint without hostname or address', pods: [] };
  }

  /** SPIFFE identities of a waypoint's pods: who may speak for a workload that requires its waypoint. */
  waypointIdentities(waypoint: GatewayAddress): string[] {
    return [...new Set(this.waypointPods(waypoint, this.network).pods.map(identityUri))];
  }

  private waypointUnavailable(target: { service?: Service; destination?: Workload }, waypoint: string, reason: string): Resolution {
    const service = target.service ?? create(ServiceSchema, { name: waypoint, namespace: target.destination?.namespace ?? '', hostname: waypoint });
    return { kind: 'unavailable', service, reason };
  }

  /**
   * What resolve() reasons on for a destination, without picking: for a service, every endpoint's
   * evaluation; for a workload address, its resolution; otherwise why the connection passes through.
   */
  analyzeDestination(source: Workload, destinationIp: string, destinationPort: number, options: ResolveOptions = {}): DestinationAnalysis {
    const destination = this.destinationOf(source, destinationIp, destinationPort);
    if (destination.kind === 'passthrough') return destination;
    if (destination.kind === 'workload') return { kind: 'workload', resolution: this.toResolution(destination.upstream) };
    const { service, request } = destination;
    // Deterministic for explanations: the first gateway not avoided stands for the network's gateways.
    const evaluation = evaluateEndpoints({ ...request, avoidGateways: options.avoidGateways, gatewayChooser: this.gatewayChooser(options.avoidGateways, () => 0) });
    return { kind: 'service', serviceName: request.serviceName, service, servicePort: request.servicePort, evaluation };
  }

  /** Network gateways named by hostname are the endpoints of that service (the gateway workloads). */
  private gatewayChooser(avoid: ReadonlySet<string> | undefined, random: () => number): GatewayChooser {
    return { endpointsOf: (serviceKey) => this.endpointsOf(serviceKey), avoid, random };
  }

  /** The resolution resolve() returns when it picks `chosen` among a service's endpoints. */
  resolutionThrough(analysis: Extract<DestinationAnalysis, { kind: 'service' }>, chosen: EndpointEvaluation): Resolution {
    return this.serviceResolution(analysis.service, analysis.servicePort, selectionOf(chosen));
  }

  private destinationOf(source: Workload, destinationIp: string, port: number): Destination {
    const ip = canonicalIp(destinationIp);
    if (ip === undefined) return { kind: 'passthrough', reason: `${destinationIp} is not an IP address` };
    const network = source.network || this.network;
    const found = this.serviceIndex.findByVip(ip, network, source.namespace);
    if (found) return this.serviceDestination(source, network, found.name, found.service, ip, port);
    const workload = this.workloadIndex.byIp(ip, network);
    if (workload) return { kind: 'workload', upstream: { workload, address: ip, port, expectedIdentities: [identityUri(workload)] } };
    return { kind: 'passthrough', reason: `${ip} is neither a service VIP nor a workload address the mesh knows on network ${network}` };
  }

  private serviceDestination(source: Workload, network: string, serviceName: string, service: Service, vip: string, port: number): Destination {
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
      serviceName,
      loadBalancing: service.loadBalancing,
      servicePort,
      endpoints,
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

function identityUri(workload: Workload): string {
  return spiffeUri(identityOf(workload));
}
