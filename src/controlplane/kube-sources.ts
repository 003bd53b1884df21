import { CoreV1Api, CustomObjectsApi, type KubeConfig, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { apiClient, createInformer, type Informer, type ListResult } from '../kube/index.js';
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
  what: string;
  list: () => Promise<ListResult<KubernetesObject>>;
  /** CRD-backed: missing until the CRD is installed, which must not block anything. */
  optional?: boolean;
}

/** Informers for everything the registry reads, each re-listing and re-watching forever. */
export function watchCluster(config: KubeConfig, sink: ObjectSink, log: Logger): ClusterSources {
  const core = apiClient(config, CoreV1Api);
  const custom = apiClient(config, CustomObjectsApi);
  const sources: Source[] = [
    { kind: 'Namespace', path: '/api/v1/namespaces', what: 'namespaces', list: () => core.listNamespace() },
    { kind: 'Node', path: '/api/v1/nodes', what: 'nodes', list: () => core.listNode() },
    { kind: 'Service', path: '/api/v1/services', what: 'services', list: () => core.listServiceForAllNamespaces() },
    { kind: 'Pod', path: '/api/v1/pods', what: 'pods', list: () => core.listPodForAllNamespaces() },
    {
      kind: 'AuthorizationPolicy',
      path: '/apis/security.istio.io/v1/authorizationpolicies',
      what: 'AuthorizationPolicies',
      list: () => custom.listClusterCustomObject({ group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies' }) as Promise<ListResult<KubernetesObject>>,
      optional: true,
    },
  ];
  const informers = new Map<SourceKind, Informer<KubernetesObject>>();
  for (const source of sources) {
    const informer = createInformer<KubernetesObject>({
      config,
      path: source.path,
      list: source.list,
      what: source.what,
      log,
      logFields: { kind: source.kind },
      optional: source.optional,
      onAdd: (object) => sink.upsert(source.kind, object),
      onUpdate: (object) => sink.upsert(source.kind, object),
      onDelete: (object) => sink.remove(source.kind, object),
    });
    informers.set(source.kind, informer);
    informer.start();
  }
  const required = sources.filter((source) => !source.optional).map((source) => informers.get(source.kind)!.synced);
  return {
    synced: Promise.all(required).then(() => undefined),
    pods: () => (informers.get('Pod')?.list() ?? []) as V1Pod[],
    stop: () => {
      for (const informer of informers.values()) void informer.stop();
    },
  };
}
