import { CoreV1Api, CustomObjectsApi, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';

import { apiClient, errorMessage, isNotFound, startInformer, statusCode, type ListResult } from '../../kube/index.js';

import type { Logger } from '../../util/log.js';
import { watchCluster, type ClusterSources } from '../kube-sources.js';
import type { KubeClusterView } from './cluster-view.js';
import type { RemoteErrorReason } from './metrics.js';

export type ApiHealth = { ok: true } | { ok: false; reason: RemoteErrorReason; message: string };

export interface ClusterWatch {
  /** The registry's informers (the CA reads pods from them). */
  sources: ClusterSources;
  /** Resolves once every required informer has listed and its objects are in the view. */
  synced: Promise<void>;
  stop(): void;
}

export interface ClusterWatchOptions {
  log: Logger;
  systemNamespace: string;
  /**
   * Health of the API server, from a periodic probe (reading the system namespace) and the Gateway
   * watch; reported on every probe, so callers deduplicate. Probing runs only when this is set.
   */
  onHealth?: (health: ApiHealth) => void;
  probeIntervalsMs?: { healthy: number; failing: number };
}

const GATEWAY_PATH = '/apis/gateway.networking.k8s.io/v1/gateways';
const PROBE_TIMEOUT_MS = 10_000;
const DEFAULT_PROBE_INTERVALS = { healthy: 30_000, failing: 5_000 };

/**
 * Watches one cluster into a KubeClusterView: the registry's objects through `watchCluster`, and
 * Gateways (optional: the Gateway API CRDs may be missing) through an informer of its own.
 */
export function watchClusterView(config: KubeConfig, view: KubeClusterView, options: ClusterWatchOptions): ClusterWatch {
  const { log } = options;
  const sources = watchCluster(config, view.sink, log);
  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;
  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!stopped) fn();
    }, ms);
    timers.add(timer);
  };

  const gateways = watchGateways(config, view, { log, report: (health) => options.onHealth?.(health), later });
  if (options.onHealth) probeLoop(config, options.systemNamespace, options.onHealth, options.probeIntervalsMs ?? DEFAULT_PROBE_INTERVALS, later);

  // Informers apply a list's objects right after the list call returns: let them run first.
  const synced = sources.synced.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
  return {
    sources,
    synced,
    stop: () => {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      sources.stop();
      void gateways.stop().catch(() => undefined);
    },
  };
}

function watchGateways(
  config: KubeConfig,
  view: KubeClusterView,
  context: { log: Logger; report: (health: ApiHealth) => void; later: (ms: number, fn: () => void) => void },
) {
  const custom = apiClient(config, CustomObjectsApi);
  return startInformer<KubernetesObject>({
    config,
    path: GATEWAY_PATH,
    list: () => custom.listClusterCustomObject({ group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways' }) as Promise<ListResult<KubernetesObject>>,
    what: 'Gateways',
    log: context.log,
    // Missing Gateway API CRDs are normal: no east-west gateways from this cluster until they are installed.
    optional: true,
    onAdd: (object) => view.upsertGateway(object),
    onUpdate: (object) => view.upsertGateway(object),
    onDelete: (object) => view.removeGateway(object),
    onError: (err) => {
      if (!isNotFound(err)) context.report(describeApiError(err));
    },
  });
}

function probeLoop(
  config: KubeConfig,
  systemNamespace: string,
  report: (health: ApiHealth) => void,
  intervals: { healthy: number; failing: number },
  later: (ms: number, fn: () => void) => void,
): void {
  const core = apiClient(config, CoreV1Api, { timeoutMs: PROBE_TIMEOUT_MS });
  const probe = async (): Promise<ApiHealth> => {
    try {
      await core.readNamespace({ name: systemNamespace });
      return { ok: true };
    } catch (err) {
      // Not found still proves the server answers and accepts the credentials.
      return isNotFound(err) ? { ok: true } : describeApiError(err);
    }
  };
  const run = () =>
    void probe().then((health) => {
      report(health);
      later(health.ok ? intervals.healthy : intervals.failing, run);
    });
  run();
}

/** A short, secret-free description of an API failure, with the reason counted in metrics. */
export function describeApiError(err: unknown): { ok: false; reason: RemoteErrorReason; message: string } {
  const status = statusCode(err);
  const message = errorMessage(err);
  if (status === undefined) return { ok: false, reason: 'unreachable', message };
  if (status === 401) return { ok: false, reason: 'unauthorized', message };
  if (status === 403) return { ok: false, reason: 'forbidden', message };
  return { ok: false, reason: 'api_error', message };
}
