// Publishes the mesh roots (ConfigMap istio-ca-root-cert) into every namespace, as Istio's namespace controller does: proxies outside the system namespace (waypoints, ingress Gateways) mount it.
import { CoreV1Api, type KubeConfig, type V1Namespace } from '@kubernetes/client-node';

import { apiClient, startInformer } from '../../kube/index.js';
import type { Logger } from '../../util/log.js';
import { publishRootCertificates } from './store.js';

export interface RootCertPublisher {
  synced: Promise<void>;
  stop(): Promise<void>;
}

/** Watches namespaces; each one that is not terminating gets `istio-ca-root-cert` with `rootsPem`. */
export function publishRootsToNamespaces(config: KubeConfig, rootsPem: () => string, log: Logger): RootCertPublisher {
  const core = apiClient(config, CoreV1Api);
  const publish = (namespace: V1Namespace) => {
    const name = namespace.metadata?.name;
    if (!name || namespace.status?.phase === 'Terminating') return;
    publishRootCertificates(core, { systemNamespace: name, rootsPem: rootsPem(), log }).catch((err: unknown) =>
      log.warn({ namespace: name, err: err instanceof Error ? err.message : String(err) }, 'could not publish the mesh root certificates in a namespace'),
    );
  };
  const informer = startInformer<V1Namespace>({
    config,
    path: '/api/v1/namespaces',
    list: () => core.listNamespace(),
    what: 'namespaces (root certificate publisher)',
    log,
    onAdd: publish,
    onUpdate: publish,
    onDelete: () => undefined,
  });
  return { synced: informer.synced, stop: () => informer.stop() };
}
