import { createHash } from 'node:crypto';

import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';

import { apiClient, startInformer } from '../../kube/index.js';
import { createLogger, type Logger } from '../../util/log.js';
import { objectRef, refKey } from '../registry/kube-objects.js';
import { KubeClusterView } from './cluster-view.js';
import { parseRemoteKubeconfig, RemoteKubeconfigError } from './kubeconfig.js';
import { watchClusterView, type ApiHealth } from './kube-watch.js';
import { RemoteClusterMetrics, type RemoteClusterState, type RemoteErrorReason } from './metrics.js';
import type { ServiceScopePolicy } from './service-scope.js';
import type { ClusterView, RemoteClusterSink } from './types.js';

/** Secrets with this label set to `true`, in the system namespace, hold remote clusters' kubeconfigs. */
export const REMOTE_SECRET_LABEL = 'istio/multiCluster';

/** A live connection to a remote cluster. */
export interface ClusterConnection {
  readonly view: ClusterView;
  /** Resolves once the view holds the cluster's objects (every required list is done). */
  readonly synced: Promise<void>;
  stop(): void;
}

export interface ConnectRequest {
  clusterId: string;
  kubeConfig: KubeConfig;
  log: Logger;
  /** Reports the API server's health as the connection sees it (every probe; the caller deduplicates). */
  health(health: ApiHealth): void;
}

export type ConnectCluster = (request: ConnectRequest) => ClusterConnection;

export interface RemoteDefaults {
  /** The remote clusters' system namespace (its network label is the cluster's network). */
  systemNamespace: string;
  /** The mesh's trust domain, which remote workloads share. */
  trustDomain: string;
  domainSuffix?: string;
  /** The local mesh config's serviceScopeConfigs, which decide remote Services' scope too. */
  serviceScope?: ServiceScopePolicy;
}

/** Connects to a real API server: a KubeClusterView fed by informers, with a health probe. */
export function kubeConnector(defaults: RemoteDefaults): ConnectCluster {
  return ({ clusterId, kubeConfig, log, health }) => {
    const view = new KubeClusterView({
      clusterId,
      trustDomain: defaults.trustDomain,
      systemNamespace: defaults.systemNamespace,
      domainSuffix: defaults.domainSuffix,
      serviceScope: defaults.serviceScope,
      log,
    });
    const watch = watchClusterView(kubeConfig, view, { log, systemNamespace: defaults.systemNamespace, onHealth: health });
    const stop = () => {
      watch.stop();
      view.close();
    };
    return { view, synced: watch.synced, stop };
  };
}

export interface RemoteClustersOptions extends RemoteDefaults {
  /** Our own cluster name: a remote secret key equal to it is ignored. */
  localClusterId: string;
  /** Where connected clusters are published (the MeshView). */
  clusters: RemoteClusterSink;
  metrics: Registry;
  log?: Logger;
  /** Replaces the real connection (tests). */
  connect?: ConnectCluster;
}

export interface RemoteClusterStatus {
  cluster: string;
  secret: string;
  state: RemoteClusterState;
  problem?: string;
  network?: string;
}

interface DesiredCluster {
  secret: string;
  kubeconfig: string;
  digest: string;
}

/** One remote cluster: the connection whose view is published, and a newer one still syncing. */
interface RemoteEntry {
  clusterId: string;
  secret: string;
  digest: string;
  active?: ClusterConnection;
  pending?: ClusterConnection;
  state: RemoteClusterState;
  problem?: string;
  /** A problem of the secret itself (bad kubeconfig): the cluster stays in error until it changes. */
  configProblem?: string;
}

/**
 * Remote clusters from remote secrets: Secrets labelled `istio/multiCluster=true` in the system
 * namespace, each data key a cluster name and its value a kubeconfig. Each cluster gets its own
 * connection; a changed kubeconfig (a rotated token) reconnects that cluster only, and its resources
 * stay served until the new connection has synced. A bad kubeconfig or an API server that is down
 * or refuses the credentials is logged once per state change and counted, and never affects the
 * other clusters; a cluster already being read keeps being read with its previous kubeconfig.
 */
export class RemoteClusters {
  private readonly options: RemoteClustersOptions;
  private readonly log: Logger;
  private readonly connectCluster: ConnectCluster;
  private readonly metrics: RemoteClusterMetrics;
  /** Secret `<ns>/<name>` → cluster name → kubeconfig text. */
  private readonly secrets = new Map<string, Map<string, string>>();
  private readonly entries = new Map<string, RemoteEntry>();
  /** Secret keys ignored, with why, so each is warned about once. */
  private ignored = new Map<string, string>();
  private stopInformer?: () => void;

  constructor(options: RemoteClustersOptions) {
    this.options = options;
    this.log = options.log ?? createLogger('remote-clusters');
    this.connectCluster = options.connect ?? kubeConnector(options);
    this.metrics = new RemoteClusterMetrics(options.metrics);
  }

  /** Watches the remote secrets of the local cluster. */
  watch(localConfig: KubeConfig): void {
    const namespace = this.options.systemNamespace;
    const labelSelector = `${REMOTE_SECRET_LABEL}=true`;
    const core = apiClient(localConfig, CoreV1Api);
    const informer = startInformer<V1Secret>({
      config: localConfig,
      path: `/api/v1/namespaces/${namespace}/secrets`,
      labelSelector,
      list: () => core.listNamespacedSecret({ namespace, labelSelector }),
      what: `remote secrets (namespace ${namespace})`,
      log: this.log,
      onAdd: (secret) => this.upsertSecret(secret),
      onUpdate: (secret) => this.upsertSecret(secret),
      onDelete: (secret) => this.removeSecret(secret),
    });
    this.stopInformer = () => void informer.stop();
  }

  /** A remote secret was added or changed (as the informer, or `kubectl get -o json`, gives it). */
  upsertSecret(secret: unknown): void {
    const ref = objectRef(secret);
    if (!ref) {
      this.log.warn('remote secret without metadata.name ignored');
      return;
    }
    const labels = (secret as { metadata?: { labels?: Record<string, unknown> | null } }).metadata?.labels;
    if (labels?.[REMOTE_SECRET_LABEL] !== 'true') return this.removeSecret(secret);
    this.secrets.set(refKey(ref), secretKubeconfigs(secret));
    this.reconcile();
  }

  removeSecret(secret: unknown): void {
    const ref = objectRef(secret);
    if (ref && this.secrets.delete(refKey(ref))) this.reconcile();
  }

  status(): RemoteClusterStatus[] {
    return [...this.entries.values()]
      .sort((a, b) => (a.clusterId < b.clusterId ? -1 : 1))
      .map((entry) => ({
        cluster: entry.clusterId,
        secret: entry.secret,
        state: entry.state,
        ...(entry.problem ? { problem: entry.problem } : {}),
        ...(entry.active ? { network: entry.active.view.network() } : {}),
      }));
  }

  /** Stops every connection and the secret watch (shutdown); published views are left as they are. */
  stop(): void {
    this.stopInformer?.();
    for (const entry of this.entries.values()) {
      entry.pending?.stop();
      entry.active?.stop();
    }
  }

  // -------------------------------------------------------------------------------------------

  private reconcile(): void {
    const desired = new Map<string, DesiredCluster>();
    const ignored = new Map<string, string>();
    for (const secret of [...this.secrets.keys()].sort()) {
      const clusters = this.secrets.get(secret)!;
      for (const cluster of [...clusters.keys()].sort()) {
        const where = `${secret}/${cluster}`;
        const owner = desired.get(cluster);
        if (cluster === this.options.localClusterId) {
          ignored.set(where, 'the key is the local cluster name; a cluster does not read itself as a remote');
        } else if (owner) {
          ignored.set(where, `cluster ${cluster} is already defined by secret ${owner.secret}`);
        } else {
          const kubeconfig = clusters.get(cluster)!;
          desired.set(cluster, { secret, kubeconfig, digest: createHash('sha256').update(kubeconfig).digest('hex') });
        }
      }
    }
    for (const [where, reason] of ignored) {
      if (this.ignored.get(where) !== reason) this.log.warn({ secret: where.slice(0, where.lastIndexOf('/')), key: where.slice(where.lastIndexOf('/') + 1) }, `remote secret key ignored: ${reason}`);
    }
    this.ignored = ignored;

    for (const entry of [...this.entries.values()]) {
      if (!desired.has(entry.clusterId)) this.disconnect(entry);
    }
    for (const [clusterId, want] of desired) {
      const entry = this.entries.get(clusterId);
      if (!entry || entry.digest !== want.digest || entry.secret !== want.secret) this.connect(clusterId, want, entry);
    }
  }

  private connect(clusterId: string, want: DesiredCluster, existing: RemoteEntry | undefined): void {
    const entry: RemoteEntry = existing ?? { clusterId, secret: want.secret, digest: want.digest, state: 'syncing' };
    if (!existing) {
      this.entries.set(clusterId, entry);
      this.log.info({ remoteCluster: clusterId, secret: want.secret }, 'remote cluster added');
    } else {
      this.log.info({ remoteCluster: clusterId, secret: want.secret }, 'remote secret changed; reconnecting');
    }
    entry.secret = want.secret;
    entry.digest = want.digest;
    entry.configProblem = undefined;
    entry.pending?.stop();
    entry.pending = undefined;

    let kubeConfig: KubeConfig;
    try {
      kubeConfig = parseRemoteKubeconfig(want.kubeconfig, { secret: want.secret, key: clusterId });
    } catch (err) {
      // A cluster already being read keeps its previous connection: nothing working is lost.
      entry.configProblem = (err as Error).message;
      return this.fail(entry, err instanceof RemoteKubeconfigError ? err.reason : 'kubeconfig', entry.configProblem);
    }
    const log = this.log.child({ remoteCluster: clusterId });
    let connection: ClusterConnection | undefined;
    try {
      connection = this.connectCluster({
        clusterId,
        kubeConfig,
        log,
        health: (health) => this.onHealth(entry, connection, health),
      });
    } catch (err) {
      return this.fail(entry, 'connect', `cannot connect: ${(err as Error).message}`);
    }
    const started = connection;
    entry.pending = started;
    this.setState(entry, 'syncing');
    started.synced.then(
      () => this.onSynced(entry, started),
      (err: unknown) => this.fail(entry, 'connect', `sync failed: ${(err as Error).message}`),
    );
  }

  private onSynced(entry: RemoteEntry, connection: ClusterConnection): void {
    if (entry.pending !== connection || this.entries.get(entry.clusterId) !== entry) return;
    const previous = entry.active;
    entry.active = connection;
    entry.pending = undefined;
    // Replacing the view in place sends only what differs: a reconnect keeps resources served.
    this.options.clusters.setRemote(connection.view);
    previous?.stop();
    if (entry.state !== 'error') this.setState(entry, 'synced');
  }

  private onHealth(entry: RemoteEntry, connection: ClusterConnection | undefined, health: ApiHealth): void {
    if (!connection || connection !== (entry.pending ?? entry.active) || this.entries.get(entry.clusterId) !== entry) return;
    if (!health.ok) return this.fail(entry, health.reason, health.message);
    if (entry.configProblem) return;
    this.setState(entry, entry.pending ? 'syncing' : 'synced');
  }

  private fail(entry: RemoteEntry, reason: RemoteErrorReason, message: string): void {
    this.metrics.countError(entry.clusterId, reason);
    this.setState(entry, 'error', `${reason}: ${message}`);
  }

  private setState(entry: RemoteEntry, state: RemoteClusterState, problem?: string): void {
    const changed = entry.state !== state || entry.problem !== problem;
    entry.state = state;
    entry.problem = problem;
    this.metrics.setState(entry.clusterId, state);
    if (!changed) return;
    const fields = { remoteCluster: entry.clusterId, secret: entry.secret, state };
    if (state === 'error') this.log.error({ ...fields, problem }, 'remote cluster unavailable');
    else if (state === 'synced') this.log.info({ ...fields, network: entry.active?.view.network() }, 'remote cluster synced');
    else this.log.info(fields, 'remote cluster syncing');
  }

  private disconnect(entry: RemoteEntry): void {
    entry.pending?.stop();
    entry.active?.stop();
    this.entries.delete(entry.clusterId);
    this.options.clusters.removeRemote(entry.clusterId);
    this.metrics.forget(entry.clusterId);
    this.log.info({ remoteCluster: entry.clusterId, secret: entry.secret }, 'remote cluster removed');
  }
}

/** Cluster name → kubeconfig text, from `data` (base64, as the API returns it) and `stringData`. */
function secretKubeconfigs(secret: unknown): Map<string, string> {
  const clusters = new Map<string, string>();
  const { data, stringData } = secret as { data?: unknown; stringData?: unknown };
  if (isStringMap(data)) {
    for (const [key, value] of Object.entries(data)) clusters.set(key, Buffer.from(value, 'base64').toString('utf8'));
  }
  if (isStringMap(stringData)) {
    for (const [key, value] of Object.entries(stringData)) clusters.set(key, value);
  }
  return clusters;
}

function isStringMap(value: unknown): value is Record<string, string> {
  return typeof value === 'object' && value !== null && Object.values(value).every((v) => typeof v === 'string');
}
