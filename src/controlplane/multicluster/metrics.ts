import { Counter, Gauge, type Registry } from 'prom-client';

export const REMOTE_CLUSTER_STATES = ['syncing', 'synced', 'error'] as const;
export type RemoteClusterState = (typeof REMOTE_CLUSTER_STATES)[number];

/** Why a remote cluster is not being read. */
export type RemoteErrorReason = 'kubeconfig' | 'insecure_kubeconfig' | 'unauthorized' | 'forbidden' | 'unreachable' | 'api_error' | 'connect';

/** `ambit_remote_clusters{cluster,state}` (1 for the current state) and `ambit_remote_cluster_errors_total{cluster,reason}`. */
export class RemoteClusterMetrics {
  private readonly states: Gauge<'cluster' | 'state'>;
  private readonly errors: Counter<'cluster' | 'reason'>;

  constructor(registry: Registry) {
    this.states =
      (registry.getSingleMetric('ambit_remote_clusters') as Gauge<'cluster' | 'state'> | undefined) ??
      new Gauge({
        name: 'ambit_remote_clusters',
        help: 'Remote clusters by connection state (1 for the current state of each cluster)',
        labelNames: ['cluster', 'state'],
        registers: [registry],
      });
    this.errors =
      (registry.getSingleMetric('ambit_remote_cluster_errors_total') as Counter<'cluster' | 'reason'> | undefined) ??
      new Counter({
        name: 'ambit_remote_cluster_errors_total',
        help: 'Failures to read a remote cluster: bad kubeconfig, API server unreachable or refusing the credentials',
        labelNames: ['cluster', 'reason'],
        registers: [registry],
      });
  }

  setState(cluster: string, state: RemoteClusterState): void {
    for (const candidate of REMOTE_CLUSTER_STATES) this.states.set({ cluster, state: candidate }, candidate === state ? 1 : 0);
  }

  countError(cluster: string, reason: RemoteErrorReason): void {
    this.errors.inc({ cluster, reason });
  }

  /** The cluster is gone: its state series disappear (error counts stay, as counters do). */
  forget(cluster: string): void {
    for (const state of REMOTE_CLUSTER_STATES) this.states.remove({ cluster, state });
  }
}
