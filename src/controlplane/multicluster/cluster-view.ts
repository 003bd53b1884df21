import { NETWORK_LABEL } from '../../api/resources.js';
import { createLogger, type Logger } from '../../util/log.js';
import type { ObjectSink, SourceKind } from '../kube-sources.js';
import { MeshRegistry, type RegistryChange } from '../registry/index.js';
import { objectRef, refKey } from '../registry/kube-objects.js';
import { GatewayIndex } from './gateways.js';
import { GlobalServiceIndex } from './global-services.js';
import type { ServiceScopeConfig } from '../../api/mesh-config.js';
import type { ServiceScopePolicy } from './service-scope.js';
import type { ClusterView, ClusterViewChange, GatewayInfo } from './types.js';

export interface KubeClusterViewOptions {
  clusterId: string;
  /**
   * The cluster's network when fixed by configuration (the local cluster's `--network`); when
   * empty or absent, the `topology.istio.io/network` label of the system namespace decides.
   */
  network?: string;
  trustDomain: string;
  systemNamespace: string;
  domainSuffix?: string;
  /** The mesh's serviceScopeConfigs (from the local cluster's mesh config); without it, only the label decides. */
  serviceScope?: ServiceScopePolicy;
  log?: Logger;
}

/** Kinds in the order a rebuilt registry is replayed: what others refer to first, fewer rebuilds. */
const REPLAY_ORDER: readonly SourceKind[] = ['Namespace', 'Node', 'Service', 'Pod', 'AuthorizationPolicy'];

/**
 * The ClusterView of one cluster, fed its Kubernetes objects: pass `sink` to `watchCluster` (or
 * call it with plain JSON objects) and Gateway objects to `upsertGateway`/`removeGateway`.
 *
 * It keeps the raw objects it was given, so when the cluster's network changes the registry is
 * rebuilt from them at once, without listing the API server again.
 */
export class KubeClusterView implements ClusterView {
  readonly clusterId: string;
  /** The ObjectSink to pass to `watchCluster`. */
  readonly sink: ObjectSink;

  private readonly fixedNetwork: string | undefined;
  private readonly trustDomain: string;
  private readonly systemNamespace: string;
  private readonly domainSuffix: string;
  private readonly log: Logger;

  private currentNetwork: string;
  private currentRegistry: MeshRegistry;
  private unsubscribeRegistry: () => void;
  private readonly objects = new Map<SourceKind, Map<string, unknown>>();
  private readonly globals: GlobalServiceIndex;
  private readonly gatewayIndex = new GatewayIndex();
  private gatewayList: GatewayInfo[] = [];
  private readonly listeners = new Set<(change: ClusterViewChange) => void>();
  private pending: RegistryChange = emptyRegistryChange();
  private readonly unsubscribeScope: () => void;

  constructor(options: KubeClusterViewOptions) {
    this.clusterId = options.clusterId;
    this.fixedNetwork = options.network || undefined;
    this.trustDomain = options.trustDomain;
    this.systemNamespace = options.systemNamespace;
    this.domainSuffix = options.domainSuffix ?? 'cluster.local';
    this.log = options.log ?? createLogger('cluster-view', { cluster: options.clusterId });
    this.globals = new GlobalServiceIndex(this.domainSuffix, options.serviceScope?.configs());
    this.unsubscribeScope = options.serviceScope?.onChange((configs) => this.scopeConfigsChanged(configs)) ?? (() => {});
    this.currentNetwork = this.fixedNetwork ?? '';
    this.currentRegistry = this.newRegistry();
    this.unsubscribeRegistry = this.currentRegistry.onChange((change) => this.collect(change));
    this.sink = {
      upsert: (kind, object) => this.apply(kind, object, 'upsert'),
      remove: (kind, object) => this.apply(kind, object, 'remove'),
    };
  }

  get registry(): MeshRegistry {
    return this.currentRegistry;
  }

  network(): string {
    return this.currentNetwork;
  }

  globalServices(): ReadonlySet<string> {
    return this.globals.all();
  }

  gateways(): readonly GatewayInfo[] {
    return this.gatewayList;
  }

  onChange(listener: (change: ClusterViewChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  upsertGateway(object: unknown): void {
    const result = this.gatewayIndex.upsert(object);
    if (result.newProblem) {
      this.log.info({ gateway: result.key, reason: result.newProblem }, 'east-west gateway not usable for cross-network traffic');
    }
    if (result.changed) this.gatewaysChanged();
  }

  removeGateway(object: unknown): void {
    if (this.gatewayIndex.remove(object)) this.gatewaysChanged();
  }

  /** Stops following the mesh's serviceScopeConfigs: call when the view is discarded. */
  close(): void {
    this.unsubscribeScope();
  }

  // -------------------------------------------------------------------------------------------

  private apply(kind: SourceKind, object: unknown, operation: 'upsert' | 'remove'): void {
    const ref = objectRef(object);
    if (ref) {
      let ofKind = this.objects.get(kind);
      if (!ofKind) this.objects.set(kind, (ofKind = new Map()));
      if (operation === 'upsert') ofKind.set(refKey(ref), object);
      else ofKind.delete(refKey(ref));
    }
    let globalServices: string[] = [];
    if (kind === 'Service') globalServices = operation === 'upsert' ? this.globals.upsertService(object) : this.globals.removeService(object);
    if (kind === 'Namespace') globalServices = operation === 'upsert' ? this.globals.upsertNamespace(object) : this.globals.removeNamespace(object);

    const network = operation === 'upsert' && kind === 'Namespace' ? this.networkFromNamespace(object) : undefined;
    if (network !== undefined && network !== this.currentNetwork) {
      // The pending registry change is superseded by the reset.
      this.pending = emptyRegistryChange();
      this.rebuild(network);
      return;
    }
    if (operation === 'upsert') this.currentRegistry.upsert(kind, object);
    else this.currentRegistry.remove(kind, object);
    const change = this.pending;
    this.pending = emptyRegistryChange();
    this.notify({ reset: false, ...change, globalServices, gateways: false });
  }

  /** The network label of the system namespace, unless the network is fixed by configuration. */
  private networkFromNamespace(object: unknown): string | undefined {
    if (this.fixedNetwork !== undefined || objectRef(object)?.name !== this.systemNamespace) return undefined;
    const labels = (object as { metadata?: { labels?: Record<string, unknown> | null } }).metadata?.labels;
    const value = labels?.[NETWORK_LABEL];
    return typeof value === 'string' ? value : '';
  }

  private rebuild(network: string): void {
    this.log.info({ previous: this.currentNetwork, network }, 'cluster network changed; rebuilding its registry');
    this.currentNetwork = network;
    const registry = this.newRegistry();
    for (const kind of REPLAY_ORDER) {
      for (const object of this.objects.get(kind)?.values() ?? []) registry.upsert(kind, object);
    }
    this.unsubscribeRegistry();
    this.currentRegistry = registry;
    this.unsubscribeRegistry = registry.onChange((change) => this.collect(change));
    this.gatewayList = this.gatewayIndex.list(this.clusterId, network);
    this.notify({ reset: true, ...emptyRegistryChange(), globalServices: [], gateways: false });
  }

  private newRegistry(): MeshRegistry {
    return new MeshRegistry({
      clusterId: this.clusterId,
      network: this.currentNetwork,
      trustDomain: this.trustDomain,
      domainSuffix: this.domainSuffix,
      systemNamespace: this.systemNamespace,
      log: this.log.child({ part: 'registry' }),
    });
  }

  private scopeConfigsChanged(configs: readonly ServiceScopeConfig[]): void {
    this.notify({ reset: false, ...emptyRegistryChange(), globalServices: this.globals.setConfigs(configs), gateways: false });
  }

  private gatewaysChanged(): void {
    this.gatewayList = this.gatewayIndex.list(this.clusterId, this.currentNetwork);
    this.notify({ reset: false, ...emptyRegistryChange(), globalServices: [], gateways: true });
  }

  private collect(change: RegistryChange): void {
    this.pending.addresses.upserted.push(...change.addresses.upserted);
    this.pending.addresses.removed.push(...change.addresses.removed);
    this.pending.authorizations.upserted.push(...change.authorizations.upserted);
    this.pending.authorizations.removed.push(...change.authorizations.removed);
  }

  private notify(change: ClusterViewChange): void {
    const empty =
      !change.reset &&
      !change.gateways &&
      change.globalServices.length === 0 &&
      change.addresses.upserted.length + change.addresses.removed.length === 0 &&
      change.authorizations.upserted.length + change.authorizations.removed.length === 0;
    if (empty) return;
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (err) {
        this.log.error({ err }, 'cluster view listener failed');
      }
    }
  }
}

function emptyRegistryChange(): RegistryChange {
  return { addresses: { upserted: [], removed: [] }, authorizations: { upserted: [], removed: [] } };
}
