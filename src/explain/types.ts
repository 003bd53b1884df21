/** The structured explanation `ambit explain -o json` prints. */
import type { HttpRouteFacts } from './http-route.js';

/** A workload as the explanation shows it. */
export interface WorkloadFacts {
  /** `<namespace>/<name>` (the uid when the workload has no name). */
  name: string;
  uid: string;
  addresses: string[];
  node: string;
  cluster: string;
  network: string;
  /** `region/zone/subzone`, empty parts left out; empty when none. */
  locality: string;
  identity: string;
  protocol: 'HBONE' | 'NONE';
  hostNetwork: boolean;
  status: 'Healthy' | 'Unhealthy';
}

export interface SourceFacts {
  pod: string;
  ip?: string;
  node: string;
  /** The source's workload in ztunnel's state; absent when ztunnel does not know the pod. */
  workload?: WorkloadFacts;
  captured: boolean;
  /** Why it is or is not captured. */
  capture: string;
}

export interface DestinationFacts {
  /** `--to` as given. */
  requested: string;
  /** How the host was resolved, in words. */
  resolution: string;
  /** The IP the connection is made to (a service VIP or a workload address), when known. */
  address?: string;
  port: number;
  kind: 'service' | 'workload' | 'unknown';
  /** Resource name `<ns>/<hostname>` when the address is a service VIP. */
  service?: string;
  workload?: WorkloadFacts;
}

export interface EndpointFacts {
  workload: WorkloadFacts;
  /** Port dialled on the endpoint; absent when it does not serve the service port. */
  targetPort?: number;
  /** `direct <ip>`, `gateway <ip:port>` or `unusable`. */
  reach: string;
  capacity: number;
  rank?: number;
  probability: number;
  /** Why load balancing does not pick it. */
  excluded?: string;
  exclusionKind?: string;
}

export interface ServiceFacts {
  name: string;
  hostname: string;
  port: number;
  loadBalancing: {
    mode: string;
    routingPreference: string[];
    healthPolicy: string;
    /** The mode and preferences in words. */
    summary: string;
  };
  endpoints: EndpointFacts[];
}

export type HopKind =
  | 'capture'
  | 'hbone'
  | 'waypoint'
  | 'outer-hbone'
  | 'inner-hbone'
  | 'gateway'
  | 'destination-ztunnel'
  | 'deliver'
  | 'plaintext'
  | 'passthrough'
  | 'uncaptured';

export interface Hop {
  kind: HopKind;
  /** The hop in words. */
  text: string;
  /** `ip:port` dialled on this hop. */
  address?: string;
  /** CONNECT `:authority`. */
  authority?: string;
  /** SPIFFE identities the server must present. */
  expectedIdentities?: string[];
  headers?: Record<string, string>;
}

export type AuthorizationFacts =
  | { evaluated: true; allowed: boolean; policy?: string; reason: string; note?: string }
  | { evaluated: false; why: string };

export type PathKind = 'hbone' | 'double-hbone' | 'waypoint' | 'plaintext' | 'passthrough' | 'uncaptured';

export interface PathFacts {
  kind: PathKind;
  /** Chance this path is taken (1 when there is no choice). */
  probability: number;
  /** The endpoint chosen, when load balancing chose one. */
  endpoint?: string;
  hops: Hop[];
  authorization: AuthorizationFacts;
  /** The waypoint the connection goes through (path kind `waypoint`). */
  waypoint?: WaypointFacts;
}

export interface WaypointFacts {
  /** `<ns>/<hostname>` of its Service (or its address). */
  name: string;
  /** `<ns>/<pod>` picked. */
  pod: string;
  /** `ip:port` dialled (its hbone_mtls_port). */
  address: string;
  identity: string;
}

export interface Explanation {
  /** One line: what happens to the connection. */
  summary: string;
  source: SourceFacts;
  destination: DestinationFacts;
  service?: ServiceFacts;
  /** Every path the connection may take, most likely first; empty when it is refused. */
  paths: PathFacts[];
  /** Why the connection is refused, when it is. */
  unavailable?: string;
  /** Why the destination cannot be worked out from ztunnel's state, when it cannot. */
  unresolved?: string;
  /** With `--http`: the mesh route the request follows at the waypoint on the path. */
  http?: HttpRouteFacts;
  notes: string[];
}
