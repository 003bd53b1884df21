import { Counter } from 'prom-client';
import { createProxyMetrics, type ProxyMetrics, type ProxyMetricsOptions } from '../ztunnel/metrics.js';

export interface CrossNetworkLabels {
  /** The client's network (`x-forwarded-network`), or `unknown`. */
  source_network: string;
  /** The client's cluster (baggage `k8s.cluster.name`), or `unknown`. */
  source_cluster: string;
  /** Hostname of the service the connection was forwarded to. */
  destination_service: string;
}

/**
 * The gateway's metrics: ztunnel's proxy metrics (Istio TCP metrics with reporter="destination",
 * `ambit_hbone_handshake_failures_total`, rejected streams) plus the cross-network connection count,
 * all in one registry.
 */
export class GatewayMetrics {
  readonly proxy: ProxyMetrics;
  private readonly crossNetwork: Counter<keyof CrossNetworkLabels>;

  constructor(options: ProxyMetricsOptions = {}) {
    this.proxy = createProxyMetrics(options);
    this.crossNetwork = new Counter({
      name: 'ambit_gateway_cross_network_connections_total',
      help: 'Connections the east-west gateway forwarded from another network to a local endpoint',
      labelNames: ['source_network', 'source_cluster', 'destination_service'],
      registers: [this.proxy.registry],
    });
  }

  get registry() {
    return this.proxy.registry;
  }

  crossNetworkConnection(labels: CrossNetworkLabels): void {
    this.crossNetwork.inc(labels);
  }

  close(): void {
    this.proxy.close();
  }
}
