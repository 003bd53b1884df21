import type { GatewayAddress, Service, Workload } from '../../gen/istio/workload/workload_pb.js';
import type { Authorization } from '../../gen/istio/security/authorization_pb.js';

/** One concrete place to send a connection. */
export interface Upstream {
  workload: Workload;
  /** IP to dial (the workload's address on its network; for a gateway resolution, the gateway's). */
  address: string;
  /** Port on the workload (service target port, or the original port for direct pod addressing). */
  port: number;
  /** SPIFFE identities the server must present (workload identity plus the service's subject_alt_names). */
  expectedIdentities: string[];
  /** The service the destination was reached through, if any. */
  service?: Service;
}

/** The east-west gateway in front of an endpoint on another network (the outer tunnel of double HBONE). */
export interface NetworkGatewayTarget {
  /** Gateway IP on its network. */
  address: string;
  /** Its HBONE port (`hbone_mtls_port`, default 15008). */
  port: number;
  /** Network the gateway address is on. */
  network: string;
  /** SPIFFE identities the gateway must present (of the workload found at its address). */
  identities: string[];
}

/** What to do with a captured outbound connection. */
export type Resolution =
  /** Destination is a mesh workload that speaks HBONE: tunnel to it. */
  | { kind: 'hbone'; upstream: Upstream }
  /**
   * Destination is on another network, behind its east-west gateway: double HBONE. `upstream.workload`
   * is the endpoint (usually the synthetic workload of that network and service) whose identity the
   * inner tunnel expects; `authority` (`<service hostname>:<service port>`) is the CONNECT target of
   * both tunnels.
   */
  | { kind: 'gateway'; upstream: Upstream & { service: Service }; gateway: NetworkGatewayTarget; authority: string }
  /**
   * Destination is served by a waypoint (the service's `Service.waypoint`, or the destination
   * workload's `Workload.waypoint`): tunnel to the waypoint, whose CONNECT target is `authority`
   * (`<service VIP>:<service port>` for a service, `<pod ip>:<port>` for a workload). `upstream` is
   * the waypoint itself: its pod address, its `hbone_mtls_port`, its identity. The waypoint pod is
   * not enrolled (it speaks HBONE itself), so it is dialled directly. `waypointName` names the
   * waypoint for logs and explanations: `<ns>/<hostname>` of its Service, or its address.
   */
  | { kind: 'waypoint'; upstream: Upstream; authority: string; waypointName?: string; service?: Service; destination?: Workload }
  /** Destination is known but not enrolled (tunnel protocol NONE): connect in plain TCP. */
  | { kind: 'plaintext'; upstream: Upstream }
  /** Destination unknown to the mesh: connect to the original address unchanged. */
  | { kind: 'passthrough' }
  /** A mesh service with no usable endpoint: the connection is refused. */
  | { kind: 'unavailable'; service: Service; reason: string };

/** Where an inbound HBONE CONNECT naming `<service hostname>:<service port>` is delivered on a local workload. */
export type ServiceTarget =
  | {
      kind: 'found';
      /** Resource name of the service, `<ns>/<hostname>`. */
      serviceName: string;
      /** The service, when the control plane sent it (the workload's `services` map may name it first). */
      service?: Service;
      /** Port on the workload that serves the service port. */
      targetPort: number;
    }
  | { kind: 'refused'; reason: string };

/** Facts about a connection that authorization decides on. */
export interface ConnectionFacts {
  /** Source SPIFFE identity when the connection came over mTLS. */
  sourceIdentity?: string;
  sourceIp: string;
  destinationIp: string;
  destinationPort: number;
  destination: Workload;
}

export interface AuthorizationDecision {
  allowed: boolean;
  /** `<ns>/<name>` of the policy that decided, when one did. */
  policy?: string;
  reason: string;
}

/** Per-connection inputs of resolve() besides the destination. */
export interface ResolveOptions {
  /**
   * Network gateways (`<address>:<port>`) that recently failed: endpoints behind them are avoided
   * while another endpoint can be picked.
   */
  avoidGateways?: ReadonlySet<string>;
  /**
   * The caller is the waypoint that serves the destination (or another proxy that already applied
   * L7): resolve to an endpoint, never to a waypoint.
   */
  ignoreWaypoints?: boolean;
  /** A route's DestinationRule subset (a waypoint): only these workloads (uids) of the service are endpoints. */
  subset?: { name: string; workloads: ReadonlySet<string> };
}

/** Read side of ztunnel's view of the mesh, used by the data path. */
export interface ProxyState {
  /** This node's network name (for looking up addresses). */
  readonly network: string;
  /** This node's name. */
  readonly nodeName: string;
  /** The workload that owns an IP on a network (default: the local network). */
  workloadByIp(ip: string, network?: string): Workload | undefined;
  /** Host-network workloads of the node that has `ip` (on the local network): who speaks from a node address. */
  hostNetworkWorkloadsAt(ip: string): Workload[];
  /** Whether the mesh knows a network of that name (some workload is on it). */
  knowsNetwork(network: string): boolean;
  /** Resolves a captured connection's original destination for a source workload. */
  resolve(source: Workload, destinationIp: string, destinationPort: number, options?: ResolveOptions): Resolution;
  /**
   * For an inbound CONNECT to `<hostname>:<servicePort>` on a local workload: the service of that
   * hostname the workload backs (from its `services` map) and the port serving that service port.
   */
  serviceTarget(destination: Workload, hostname: string, servicePort: number): ServiceTarget;
  /** SPIFFE identities of the pods of a waypoint (Workload.waypoint / Service.waypoint). */
  waypointIdentities(waypoint: GatewayAddress): string[];
  /** Evaluates the authorization policies that apply to the destination workload. */
  authorize(facts: ConnectionFacts): AuthorizationDecision;
  /** Local workloads (on this node) enrolled in the mesh. */
  localEnrolledWorkloads(): Workload[];
}

/** Write side, fed by the xDS client. */
export interface StateUpdates {
  applyAddresses(upserted: Array<{ name: string; workload?: Workload; service?: Service }>, removed: string[]): void;
  applyAuthorizations(upserted: Array<{ name: string; authorization: Authorization }>, removed: string[]): void;
  /** Called after each applied update, with the names that changed. */
  onChange(listener: (changed: { addresses: string[]; authorizations: string[] }) => void): void;
}
