import {
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  type KubeConfig,
  type KubernetesObject,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from '../util/log.js';

export type SourceKind = 'Namespace' | 'Node' | 'Pod' | 'Service' | 'AuthorizationPolicy';

export interface ObjectSink {
  upsert(kind: SourceKind, object: unknown): void;
  remove(kind: SourceKind, object: unknown): void;
}

export interface ClusterSources {
  /** Resolves when every required informer has listed once. */
  synced: Promise<void>;
  /** Pods as currently cached (the CA checks which pods run on a node). */
  pods(): V1Pod[];
  stop(): void;
}

interface Source {
  kind: SourceKind;
  path: string;
  list: () => Promise<{ items: KubernetesObject[]; metadata?: { resourceVersion?: string } }>;
  /** CRD-backed: missing until the CRD is installed, which must not block anything. */
  optional?: boolean;
}

/** Informers for everything the registry reads, each re-listing and re-watching forever. */
export function watchCluster(config: KubeConfig, sink: ObjectSink, log: Logger): ClusterSources {
  const core = config.makeApiClient(CoreV1Api);
  const custom = config.makeApiClient(CustomObjectsApi);
  const sources: Source[] = [
    { kind: 'Namespace', path: '/api/v1/namespaces', list: () => core.listNamespace() },
    { kind: 'Node', path: '/api/v1/nodes', list: () => core.listNode() },
    { kind: 'Service', path: '/api/v1/services', list: () => core.listServiceForAllNamespaces() },
    { kind: 'Pod', path: '/api/v1/pods', list: () => core.listPodForAllNamespaces() },
    {
      kind: 'AuthorizationPolicy',
      path: '/apis/security.istio.io/v1/authorizationpolicies',
      list: () => custom.listClusterCustomObject({ group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies' }) as never,
      optional: true,
    },
  ];
  let stopped = false;
  const informers: Array<{ stop: () => Promise<void> | void }> = [];
  let podCache: { list: () => V1Pod[] } | undefined;

  const started = sources.map((source) => {
    let markListed!: () => void;
    const listed = new Promise<void>((resolve) => (markListed = resolve));
    // The informer reports list failures only as 'error' events, so sync is observed here.
    let failures = 0;
    const list = async () => {
      const result = await source.list();
      failures = 0;
      markListed();
      return result;
    };
    const informer = makeInformer<KubernetesObject>(config, source.path, list as never);
    informers.push(informer);
    if (source.kind === 'Pod') podCache = informer as unknown as { list: () => V1Pod[] };
    const guard = (what: string, fn: () => void) => {
      try {
        fn();
      } catch (err) {
        log.error({ kind: source.kind, what, err: (err as Error).message }, 'registry rejected an event');
      }
    };
    informer.on('add', (obj) => guard('add', () => sink.upsert(source.kind, obj)));
    informer.on('update', (obj) => guard('update', () => sink.upsert(source.kind, obj)));
    informer.on('delete', (obj) => guard('delete', () => sink.remove(source.kind, obj)));
    informer.on('error', (err: unknown) => {
      if (stopped) return;
      failures++;
      const delay = Math.min(1000 * 2 ** Math.min(failures - 1, 4), 15_000);
      const reason = (err as Error)?.message ?? String(err);
      if (failures === 1 || failures % 10 === 0) {
        if (source.optional) log.info({ kind: source.kind, reason, retryInMs: delay }, 'optional resource not readable yet (CRD not installed?)');
        else log.warn({ kind: source.kind, reason, retryInMs: delay }, 'list/watch failed; retrying');
      }
      setTimeout(() => void informer.start(), delay);
    });
    void informer.start();
    return source.optional ? Promise.resolve() : listed;
  });

  return {
    synced: Promise.all(started).then(() => undefined),
    pods: () => podCache?.list() ?? [],
    stop: () => {
      stopped = true;
      for (const informer of informers) void informer.stop();
    },
  };
}
