import type { MeshRegistry, ResourceChanges } from '../registry/index.js';

/** An east-west gateway that can carry traffic into its network: it has a LoadBalancer address. */
export interface GatewayInfo {
  clusterId: string;
  namespace: string;
  name: string;
  /** Its `topology.istio.io/network` label, else its cluster's network. */
  network: string;
  /** `status.addresses[0].value`: the LoadBalancer IP. */
  address: string;
  /** False while its `Programmed` condition is False (no ready gateway pod): ztunnels skip it. */
  programmed: boolean;
}

/** What changed in one cluster since the last notification. */
export interface ClusterViewChange {
  /**
   * The registry was replaced (e.g. the cluster's network changed) or the view was rebuilt:
   * everything must be read again. The other fields are then empty.
   */
  reset: boolean;
  /** Names of the registry's resources that changed. */
  addresses: ResourceChanges;
  authorizations: ResourceChanges;
  /** Service keys (`<ns>/<hostname>`) whose global flag changed (Service or Namespace labels, or the mesh config). */
  globalServices: string[];
  gateways: boolean;
}

/**
 * One cluster as the merged mesh view reads it: its registry, which of its services are global,
 * and its usable east-west gateways. Notifications are synchronous and come after the state they
 * describe is in place.
 */
export interface ClusterView {
  readonly clusterId: string;
  network(): string;
  /** The current registry; it may be replaced, which is announced with `reset`. */
  readonly registry: MeshRegistry;
  /**
   * Keys (`<ns>/<hostname>`) of this cluster's global Services: chosen by the mesh config's
   * serviceScopeConfigs, else by the label `istio.io/global=true`.
   */
  globalServices(): ReadonlySet<string>;
  /** Usable gateways of class `istio-east-west`, ordered by namespace and name. */
  gateways(): readonly GatewayInfo[];
  onChange(listener: (change: ClusterViewChange) => void): () => void;
}

/** Where remote clusters are published (the merged mesh view). */
export interface RemoteClusterSink {
  /** Adds the cluster, or replaces the view of a cluster with the same id. */
  setRemote(view: ClusterView): void;
  removeRemote(clusterId: string): void;
}
