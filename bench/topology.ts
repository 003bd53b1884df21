import type { Place } from './exec.js';
import type { ProcessGroup } from './process-cost.js';

/**
 * Where a benchmark's two ends live: a client pod on one node and a server pod on another. Native
 * tunnels (stunnel, HAProxy) run in the node namespaces, as a mesh's node proxies would.
 */
export interface Endpoints {
  clientPod: Place;
  serverPod: Place;
  serverPodIp: string;
  clientNode: Place;
  serverNode: Place;
  clientNodeIp: string;
  serverNodeIp: string;
}

/** Endpoints whose pods are in the ambient mesh: their traffic is captured by the node proxies. */
export interface MeshEndpoints extends Endpoints {
  /** The ztunnels carrying the traffic (client node first), for CPU and memory. */
  proxies: ProcessGroup[];
  /**
   * Throws unless a request from the client pod to the server pod is carried by the mesh: the
   * pods' routes work without it, so a request that gets through proves nothing by itself.
   */
  confirmMeshed(): Promise<void>;
}

export interface BenchTopology {
  kind: 'netns' | 'lab';
  /** One line for the report, e.g. "lab one-cluster.yaml: cluster1-node1 → cluster1-node2". */
  description: string;
  /** Pods outside the mesh: the direct path and the native tunnels use these. */
  plain: Endpoints;
  /** Pods in the mesh; only the lab has them. */
  mesh?: MeshEndpoints;
  /** Scratch directory for configs, certificates and logs of this run. */
  workDir: string;
  teardown(): Promise<void>;
}
