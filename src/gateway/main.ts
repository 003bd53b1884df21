// `ambit gateway`: the east-west gateway process (see runGateway).
import type { Server } from 'node:http';
import { createLogger, type Logger } from '../util/log.js';
import { stopOnSignals } from '../util/shutdown.js';
import { buildConfigDump } from '../ztunnel/admin/config-dump.js';
import { startProxyEndpoints } from '../ztunnel/admin/proxy-endpoints.js';
import { HboneGateway } from './hbone-gateway.js';
import { GatewayMetrics } from './metrics.js';
import { startProxyBase } from './proxy-base.js';
import type { GatewaySettings } from './settings.js';

/** How long open streams may finish after SIGTERM before they are cut. */
const DRAIN_TIMEOUT_MS = 5000;

/** A running gateway process. */
export interface GatewayProcess {
  /** Drains the HBONE listener (GOAWAY, up to 5 s), then stops xDS, certificates and the HTTP endpoints. */
  stop(): Promise<void>;
}

/**
 * The east-west gateway (`ambit gateway`): its own xDS view of the mesh, its own certificate
 * (`spiffe://<td>/ns/<pod ns>/sa/<gateway>`), the HBONE listener on 15008 that forwards outer
 * CONNECTs to local endpoints, metrics on 15020, readiness on 15021 and the admin view on
 * localhost:15000. SIGTERM/SIGINT drain and exit.
 */
export async function runGateway(settings: GatewaySettings, log: Logger = createLogger('gateway', { gateway: settings.gatewayName })): Promise<GatewayProcess> {
  const { state, identity, certificates, xds, processMetrics } = await startProxyBase(settings, { account: settings.gatewayName, kind: 'router', log });
  const metrics = new GatewayMetrics();
  const gateway = new HboneGateway({
    identity,
    certificates,
    state,
    metrics,
    log: log.child({ part: 'hbone' }),
    requiredTrustDomain: settings.enforceTrustDomain ? settings.trustDomain : undefined,
  });

  let synced = false;
  let servers: Server[];
  try {
    servers = await startProxyEndpoints({
      configDump: () =>
        buildConfigDump({
          node: settings.nodeName || settings.podName,
          clusterId: settings.clusterId,
          network: settings.network,
          state,
          certificates: () => certificates.view(),
          xds: () => xds.status(),
          captured: () => new Set<string>(),
        }),
      metrics: async () => ({ type: metrics.registry.contentType, body: (await metrics.registry.metrics()) + (await processMetrics.metrics()) }),
      waitingFor: () => [synced ? '' : 'the first config from the control plane', gateway.ready ? '' : 'the gateway certificate and the HBONE listener'].filter(Boolean),
      log,
    });
  } catch (error) {
    certificates.stop();
    throw error;
  }
  const closeServers = () => {
    for (const server of servers) server.close();
  };

  xds.start();
  void xds.synced.then(() => {
    synced = true;
    log.info({ workloads: state.workloads().length, services: state.services().length }, 'initial config received');
  });

  const { stop, exitAfterStop } = stopOnSignals(async () => {
    log.info('shutting down: draining the HBONE listener');
    await gateway.stop({ drainTimeoutMs: DRAIN_TIMEOUT_MS });
    xds.stop();
    certificates.stop();
    closeServers();
    metrics.close();
  });

  gateway.start(settings.hbonePort).catch((error: unknown) => {
    log.error({ err: error instanceof Error ? error.message : String(error) }, 'gateway cannot serve HBONE; exiting');
    exitAfterStop(1);
  });
  log.info({ identity, xds: settings.xdsAddress, network: settings.network || '(none)', port: settings.hbonePort }, 'gateway started');
  return { stop };
}
