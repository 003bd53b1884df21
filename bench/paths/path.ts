import type { TunnelCerts } from '../certs.js';
import type { ProcessGroup } from '../process-cost.js';
import type { BenchTopology, Endpoints } from '../topology.js';

export const PATH_NAMES = ['direct', 'ambit', 'stunnel', 'haproxy'] as const;
export type PathName = (typeof PATH_NAMES)[number];

export interface Address {
  host: string;
  port: number;
}

/** A path set up and ready to carry traffic from the client pod to servers in the server pod. */
export interface OpenPath {
  name: PathName;
  /** The pods at both ends (outside the mesh for every path but ambit). */
  endpoints: Endpoints;
  /** What the client dials to reach `serverPort` of the server pod. */
  dial(serverPort: number): Address;
  /** The processes carrying the traffic, both ends (none for direct). */
  proxies: ProcessGroup[];
  /** Throws unless traffic really takes this path; called once a first request went through. */
  confirm?(): Promise<void>;
  close(): Promise<void>;
}

export interface PathContext {
  topology: BenchTopology;
  workDir: string;
  certs: () => Promise<TunnelCerts>;
  /** Server pod ports the path must reach. */
  serverPorts: number[];
}

/** How a client in the client pod reaches a server in the server pod. */
export interface BenchPath {
  name: PathName;
  description: string;
  open(context: PathContext): Promise<OpenPath>;
}

/**
 * Ports a native tunnel uses for one server port: plaintext in on the client node, mTLS between
 * the nodes. Each tunnel has its own offset so all of them can be up at once.
 */
export function tunnelPorts(offset: number, serverPort: number): { plain: number; tls: number } {
  return { plain: offset + serverPort, tls: offset + 1000 + serverPort };
}
