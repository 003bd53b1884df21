import { CoreV1Api, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';

import { apiClient, startInformer } from '../kube/index.js';
import type { Logger } from '../util/log.js';
import { MESH_CONFIG_KEY, MESH_CONFIG_MAP, MeshConfigError, parseMeshConfig, type ServiceScopeConfig } from '../api/mesh-config.js';
import type { ServiceScopePolicy } from './multicluster/service-scope.js';

export interface MeshConfigWatcherOptions {
  systemNamespace: string;
  /** Receives the serviceScopeConfigs of every valid mesh config. */
  policy: ServiceScopePolicy;
  metrics: Registry;
  log: Logger;
}

/**
 * The mesh config of the local cluster, read at run time from ConfigMap `istio` (key `mesh`) in the
 * system namespace, as istiod reads it: `kubectl edit cm istio` takes effect without a restart. A
 * missing ConfigMap or key means the defaults. Content that does not parse is logged, counted
 * (`ambit_mesh_config_rejected_total`, `ambit_mesh_config_valid` 0) and otherwise ignored: the
 * previous valid config stays in force.
 */
export class MeshConfigWatcher {
  private readonly options: MeshConfigWatcherOptions;
  private readonly rejected: Counter;
  private readonly valid: Gauge;
  /** What the last delivery held under `mesh`, and whether it was valid. */
  private last: { content: unknown; valid: boolean } | undefined;

  constructor(options: MeshConfigWatcherOptions) {
    this.options = options;
    const { metrics } = options;
    this.rejected =
      (metrics.getSingleMetric('ambit_mesh_config_rejected_total') as Counter | undefined) ??
      new Counter({ name: 'ambit_mesh_config_rejected_total', help: `Mesh configs (ConfigMap ${MESH_CONFIG_MAP}, key ${MESH_CONFIG_KEY}) rejected as invalid`, registers: [metrics] });
    this.valid =
      (metrics.getSingleMetric('ambit_mesh_config_valid') as Gauge | undefined) ??
      new Gauge({ name: 'ambit_mesh_config_valid', help: '1 when the mesh config in the cluster is in force, 0 when it was rejected (the previous one stays)', registers: [metrics] });
    this.valid.set(1);
  }

  /** Applies the ConfigMap as the API returns it, or its absence (`undefined`). Returns whether it is valid. */
  apply(configMap: unknown): boolean {
    const content = (configMap as { data?: Record<string, unknown> | null } | undefined)?.data?.[MESH_CONFIG_KEY];
    // The informer re-delivers unchanged objects on every re-list: judge each content once.
    if (this.last && this.last.content === content) return this.last.valid;
    const where = `${this.options.systemNamespace}/${MESH_CONFIG_MAP}`;
    let configs: ServiceScopeConfig[];
    try {
      if (content !== undefined && content !== null && typeof content !== 'string') throw new MeshConfigError(`data.${MESH_CONFIG_KEY}: expected a string`);
      configs = parseMeshConfig(content ?? '').serviceScopeConfigs;
    } catch (err) {
      if (!(err instanceof MeshConfigError)) throw err;
      this.last = { content, valid: false };
      this.rejected.inc();
      this.valid.set(0);
      this.options.log.error({ configMap: where, problem: err.message }, 'mesh config rejected; the previous one stays in force');
      return false;
    }
    this.last = { content, valid: true };
    this.valid.set(1);
    if (this.options.policy.set(configs)) this.options.log.info({ configMap: where, serviceScopeConfigs: configs.length }, 'mesh config applied');
    return true;
  }

  /** Watches the ConfigMap; `synced` resolves once it has been read (or found absent). */
  watch(kubeConfig: KubeConfig): { synced: Promise<void>; stop(): void } {
    const namespace = this.options.systemNamespace;
    const fieldSelector = `metadata.name=${MESH_CONFIG_MAP}`;
    const core = apiClient(kubeConfig, CoreV1Api);
    const informer = startInformer<V1ConfigMap>({
      config: kubeConfig,
      path: `/api/v1/namespaces/${namespace}/configmaps`,
      fieldSelector,
      list: () => core.listNamespacedConfigMap({ namespace, fieldSelector }),
      what: `the mesh config (ConfigMap ${namespace}/${MESH_CONFIG_MAP})`,
      log: this.options.log,
      // An absent ConfigMap produces no event: the defaults apply.
      onListed: (result) => {
        if (result.items.length === 0) this.apply(undefined);
      },
      onAdd: (configMap) => this.apply(configMap),
      onUpdate: (configMap) => this.apply(configMap),
      onDelete: () => this.apply(undefined),
    });
    return { synced: informer.synced, stop: () => void informer.stop() };
  }
}
