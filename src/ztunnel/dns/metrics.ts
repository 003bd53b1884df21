import { Counter, type Registry } from 'prom-client';

export type DnsResult = 'answered' | 'forwarded' | 'failed';

const METRIC_NAME = 'ambit_dns_requests_total';

/** Counts DNS requests by outcome; a no-op without a registry. */
export class DnsMetrics {
  private readonly requests: Counter<'result'> | undefined;

  constructor(registry?: Registry) {
    if (!registry) return;
    const existing = registry.getSingleMetric(METRIC_NAME);
    this.requests =
      existing instanceof Counter
        ? (existing as Counter<'result'>)
        : new Counter({
            name: METRIC_NAME,
            help: 'DNS requests handled by the ztunnel DNS proxy, by result (answered from the mesh, forwarded upstream, failed)',
            labelNames: ['result'],
            registers: [registry],
          });
  }

  record(result: DnsResult): void {
    this.requests?.inc({ result });
  }
}
