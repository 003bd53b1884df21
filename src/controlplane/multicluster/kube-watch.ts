import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';

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
  const custom = config.makeApiClient(CustomObjectsApi);
  let failures = 0;
  let lastProblem: string | undefined;
  const list = async () => {
    const result = (await custom.listClusterCustomObject({
      group: 'gateway.networking.k8s.io',
      version: 'v1',
      plural: 'gateways',
    })) as KubernetesListObject<KubernetesObject>;
    if (lastProblem) context.log.info('Gateways readable again');
    lastProblem = undefined;
    failures = 0;
    return result;
  };
  const informer = makeInformer<KubernetesObject>(config, GATEWAY_PATH, list);
  informer.on('add', (object) => view.upsertGateway(object));
  informer.on('update', (object) => view.upsertGateway(object));
  informer.on('delete', (object) => view.removeGateway(object));
  const start = () => void informer.start().catch((err: unknown) => onError(err));
  const onError = (err: unknown) => {
    failures++;
    const missing = statusOf(err) === 404;
    const problem = missing ? 'Gateway API CRDs not installed' : describeApiError(err).message;
    if (problem !== lastProblem) {
      if (missing) context.log.info('Gateway API CRDs not installed: no east-west gateways from this cluster until they are');
      else context.log.warn({ reason: problem }, 'cannot watch Gateways; retrying');
      lastProblem = problem;
    }
    if (!missing) context.report(describeApiError(err));
    context.later(missing ? 30_000 : Math.min(1000 * 2 ** Math.min(failures - 1, 4), 15_000), start);
  };
  informer.on('error', onError);
  start();
  return informer;
}

function probeLoop(
  config: KubeConfig,
  systemNamespace: string,
  report: (health: ApiHealth) => void,
  intervals: { healthy: number; failing: number },
  later: (ms: number, fn: () => void) => void,
): void {
  const core = config.makeApiClient(CoreV1Api);
  const probe = async (): Promise<ApiHealth> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS / 1000}s`)), PROBE_TIMEOUT_MS);
    });
    try {
      await Promise.race([core.readNamespace({ name: systemNamespace }), timeout]);
      return { ok: true };
    } catch (err) {
      // Not found still proves the server answers and accepts the credentials.
      return statusOf(err) === 404 ? { ok: true } : describeApiError(err);
    } finally {
      clearTimeout(timer);
    }
  };
  const run = () =>
    void probe().then((health) => {
      report(health);
      later(health.ok ? intervals.healthy : intervals.failing, run);
    });
  run();
}

export function statusOf(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const candidate = err as { statusCode?: unknown; code?: unknown } | null;
  const code = candidate?.statusCode ?? candidate?.code;
  return typeof code === 'number' ? code : undefined;
}

/** A short, secret-free description of an API failure. */
export function describeApiError(err: unknown): { ok: false; reason: RemoteErrorReason; message: string } {
  const status = statusOf(err);
  if (status === undefined) {
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, reason: 'unreachable', message };
  }
  const body = err instanceof ApiException ? (err.body as unknown) : undefined;
  const detail = typeof body === 'string' ? safeStatusMessage(body) : (body as { message?: unknown } | undefined)?.message;
  const message = `HTTP ${status}${typeof detail === 'string' && detail ? `: ${detail}` : ''}`;
  if (status === 401) return { ok: false, reason: 'unauthorized', message };
  if (status === 403) return { ok: false, reason: 'forbidden', message };
  return { ok: false, reason: 'api_error', message };
}

function safeStatusMessage(body: string): string | undefined {
  try {
    const message = (JSON.parse(body) as { message?: unknown }).message;
    return typeof message === 'string' ? message : undefined;
  } catch {
    return undefined;
  }
}
