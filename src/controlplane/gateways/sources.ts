/**
 * What the controller watches: every Gateway (the CRD may be missing: retried quietly), and the
 * ServiceAccounts, Deployments and Services it made (selected by its managed-by label).
 */
import { AppsV1Api, CoreV1Api, CustomObjectsApi, makeInformer, type Informer, type KubeConfig, type KubernetesObject, type ObjectCache } from '@kubernetes/client-node';
import { errorMessage } from '../../lab/agent/kube.js';
import type { Logger } from '../../util/log.js';
import { GATEWAY_API_GROUP, GATEWAY_API_VERSION, MANAGED_BY_CONTROLLER, MANAGED_BY_LABEL } from './constants.js';
import type { GatewayObject } from './gateway.js';
import type { OwnedKind } from './kube-api.js';

export interface ObjectStore<T> {
  get(name: string, namespace?: string): T | undefined;
  list(): readonly T[];
}

export type WatchedKind = 'Gateway' | OwnedKind;

export interface SourceEvents {
  /** An object was added, changed or deleted. */
  changed(kind: WatchedKind, object: KubernetesObject): void;
  /** A full list of the kind succeeded (first sync, or after the resource became readable again). */
  listed(kind: WatchedKind): void;
}

export interface GatewaySources {
  gateways: ObjectStore<GatewayObject>;
  owned: Record<OwnedKind, ObjectStore<KubernetesObject>>;
  start(events: SourceEvents): void;
  stop(): Promise<void>;
}

type ListResult = { items: KubernetesObject[]; metadata?: { resourceVersion?: string } };

interface Source {
  kind: WatchedKind;
  path: string;
  list: () => Promise<ListResult>;
  labelSelector?: string;
  /** CRD-backed: absent until the Gateway API CRDs are installed, which is no cause for alarm. */
  optional?: boolean;
}

const MAX_RETRY_MS = 30_000;

export function informerSources(config: KubeConfig, log: Logger): GatewaySources {
  const core = config.makeApiClient(CoreV1Api);
  const apps = config.makeApiClient(AppsV1Api);
  const custom = config.makeApiClient(CustomObjectsApi);
  const labelSelector = `${MANAGED_BY_LABEL}=${MANAGED_BY_CONTROLLER}`;
  const sources: Source[] = [
    {
      kind: 'Gateway',
      path: `/apis/${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}/gateways`,
      list: () => custom.listClusterCustomObject({ group: GATEWAY_API_GROUP, version: GATEWAY_API_VERSION, plural: 'gateways' }) as Promise<ListResult>,
      optional: true,
    },
    { kind: 'ServiceAccount', path: '/api/v1/serviceaccounts', list: () => core.listServiceAccountForAllNamespaces({ labelSelector }) as Promise<ListResult>, labelSelector },
    { kind: 'Deployment', path: '/apis/apps/v1/deployments', list: () => apps.listDeploymentForAllNamespaces({ labelSelector }) as Promise<ListResult>, labelSelector },
    { kind: 'Service', path: '/api/v1/services', list: () => core.listServiceForAllNamespaces({ labelSelector }) as Promise<ListResult>, labelSelector },
  ];
  let stopped = false;
  let events: SourceEvents | undefined;
  const timers = new Set<NodeJS.Timeout>();

  const informers = new Map<WatchedKind, Informer<KubernetesObject> & ObjectCache<KubernetesObject>>();
  const starters: Array<() => void> = [];
  for (const source of sources) {
    let failures = 0;
    const list = async () => {
      const result = await source.list();
      failures = 0;
      events?.listed(source.kind);
      return result;
    };
    const informer = makeInformer<KubernetesObject>(config, source.path, list as never, source.labelSelector);
    const restart = () => {
      if (!stopped) informer.start().catch(onError);
    };
    const onError = (err: unknown) => {
      if (stopped) return;
      failures++;
      const delay = Math.min(1000 * 2 ** Math.min(failures - 1, 5), MAX_RETRY_MS);
      if (failures === 1 || failures % 20 === 0) {
        const fields = { kind: source.kind, reason: errorMessage(err), retryInMs: delay };
        if (source.optional) log.info(fields, 'Gateways not readable yet (Gateway API CRDs not installed?)');
        else log.warn(fields, 'list/watch failed; retrying');
      }
      const timer = setTimeout(() => {
        timers.delete(timer);
        restart();
      }, delay);
      timers.add(timer);
    };
    const changed = (object: KubernetesObject) => events?.changed(source.kind, object);
    informer.on('add', changed);
    informer.on('update', changed);
    informer.on('delete', changed);
    informer.on('error', onError);
    informers.set(source.kind, informer);
    starters.push(restart);
  }

  const store = (kind: WatchedKind): ObjectStore<KubernetesObject> => ({
    get: (name, namespace) => informers.get(kind)!.get(name, namespace),
    list: () => informers.get(kind)!.list(),
  });
  return {
    gateways: store('Gateway') as ObjectStore<GatewayObject>,
    owned: { ServiceAccount: store('ServiceAccount'), Deployment: store('Deployment'), Service: store('Service') },
    start(handlers) {
      events = handlers;
      stopped = false;
      for (const start of starters) start();
    },
    async stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await Promise.all([...informers.values()].map((informer) => informer.stop()));
    },
  };
}
