/**
 * What the controller watches: every Gateway (the CRD may be missing: retried quietly), and the
 * ServiceAccounts, Deployments and Services it made (selected by its managed-by label).
 */
import { AppsV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { apiClient, createInformer, type Informer, type ListResult } from '../../kube/index.js';
import type { BackoffOptions } from '../../util/backoff.js';
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

interface Source {
  kind: WatchedKind;
  path: string;
  what: string;
  list: () => Promise<ListResult<KubernetesObject>>;
  labelSelector?: string;
  /** CRD-backed: absent until the Gateway API CRDs are installed, which is no cause for alarm. */
  optional?: boolean;
}

const RETRY: BackoffOptions = { initialMs: 1000, maxMs: 30_000 };

export function informerSources(config: KubeConfig, log: Logger): GatewaySources {
  const core = apiClient(config, CoreV1Api);
  const apps = apiClient(config, AppsV1Api);
  const custom = apiClient(config, CustomObjectsApi);
  const labelSelector = `${MANAGED_BY_LABEL}=${MANAGED_BY_CONTROLLER}`;
  const sources: Source[] = [
    {
      kind: 'Gateway',
      path: `/apis/${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}/gateways`,
      what: 'Gateways',
      list: () => custom.listClusterCustomObject({ group: GATEWAY_API_GROUP, version: GATEWAY_API_VERSION, plural: 'gateways' }) as Promise<ListResult<KubernetesObject>>,
      optional: true,
    },
    { kind: 'ServiceAccount', path: '/api/v1/serviceaccounts', what: 'gateway ServiceAccounts', list: () => core.listServiceAccountForAllNamespaces({ labelSelector }), labelSelector },
    { kind: 'Deployment', path: '/apis/apps/v1/deployments', what: 'gateway Deployments', list: () => apps.listDeploymentForAllNamespaces({ labelSelector }), labelSelector },
    { kind: 'Service', path: '/api/v1/services', what: 'gateway Services', list: () => core.listServiceForAllNamespaces({ labelSelector }), labelSelector },
  ];
  let events: SourceEvents | undefined;
  const informers = new Map<WatchedKind, Informer<KubernetesObject>>();
  for (const source of sources) {
    const changed = (object: KubernetesObject) => events?.changed(source.kind, object);
    informers.set(
      source.kind,
      createInformer<KubernetesObject>({
        config,
        path: source.path,
        list: source.list,
        labelSelector: source.labelSelector,
        what: source.what,
        log,
        logFields: { kind: source.kind },
        optional: source.optional,
        backoff: RETRY,
        onListed: () => events?.listed(source.kind),
        onAdd: changed,
        onUpdate: changed,
        onDelete: changed,
      }),
    );
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
      for (const informer of informers.values()) informer.start();
    },
    async stop() {
      await Promise.all([...informers.values()].map((informer) => informer.stop()));
    },
  };
}
