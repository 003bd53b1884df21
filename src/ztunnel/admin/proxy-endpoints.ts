// The HTTP endpoints every mesh proxy pod serves: admin (config dump, localhost 15000), metrics (15020) and readiness (15021).
import type { Server } from 'node:http';

import { ADMIN_PORT, METRICS_PORT, READINESS_PORT } from '../../api/resources.js';
import type { Logger } from '../../util/log.js';
import { json, startHttpEndpoint, text } from './server.js';

export interface ProxyEndpointsOptions {
  /** The admin view (`/config_dump` on localhost only). */
  configDump: () => unknown;
  /** Prometheus registries' content type and text, concatenated. */
  metrics: () => Promise<{ type: string; body: string }>;
  /** What the proxy still waits for before it is ready; empty when ready. */
  waitingFor: () => string[];
  log: Logger;
}

/** Starts the three endpoints; on failure closes what was started and throws. */
export async function startProxyEndpoints(options: ProxyEndpointsOptions): Promise<Server[]> {
  const { log } = options;
  const servers: Server[] = [];
  try {
    servers.push(await startHttpEndpoint('127.0.0.1', ADMIN_PORT, { '/config_dump': () => json(options.configDump()), '/healthz': () => text('ok\n') }, log));
    const metricsRoute = async () => ({ status: 200, ...(await options.metrics()) });
    servers.push(await startHttpEndpoint('0.0.0.0', METRICS_PORT, { '/metrics': metricsRoute, '/stats/prometheus': metricsRoute }, log));
    servers.push(
      await startHttpEndpoint('0.0.0.0', READINESS_PORT, {
        '/healthz/ready': () => {
          const waiting = options.waitingFor();
          return waiting.length ? text(`waiting for ${waiting.join(' and ')}\n`, 503) : text('ready\n');
        },
      }, log),
    );
  } catch (error) {
    for (const server of servers) server.close();
    throw error;
  }
  return servers;
}
