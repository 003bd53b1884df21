import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { identityOf, spiffeUri } from '../api/identity.js';
import { bytesToIp } from '../api/ip.js';
import { ADMIN_PORT, METRICS_PORT, READINESS_PORT } from '../api/resources.js';
import { createLogger, type Logger } from '../util/log.js';
import { buildConfigDump } from './admin/config-dump.js';
import { buildRawResources, RESOURCES_PATH } from './admin/resources.js';
import { json, startHttpEndpoint, text } from './admin/server.js';
import { NodeCapture } from './capture/node-capture.js';
import { certificateManagerFor, proxyNodeId, xdsClientFor } from './control-plane-client.js';
import { meshAddressesOf } from './dns/mesh-names.js';
import { DnsProxy, upstreamsFromResolvConf } from './dns/proxy.js';
import { createProxyMetrics } from './metrics.js';
import { Proxy } from './proxy/proxy.js';
import type { ZtunnelSettings } from './settings.js';
import { ZtunnelState } from './state/store.js';

/**
 * One ztunnel: config from the control plane, certificates from the CA, capture of the node's
 * enrolled pods, and the HBONE data path. Keeps serving with its last config when the
 * control plane is away.
 */
export async function runZtunnel(settings: ZtunnelSettings, log: Logger = createLogger('ztunnel', { node: settings.nodeName })): Promise<void> {
  const state = new ZtunnelState({ network: settings.network, nodeName: settings.nodeName, clusterId: settings.clusterId, systemNamespace: settings.systemNamespace, logger: log.child({ part: 'state' }) });
  const certificates = certificateManagerFor(settings, log.child({ part: 'identity' }));
  const xds = xdsClientFor(settings, state, proxyNodeId('ztunnel', settings.nodeIp, settings.podName, settings.podNamespace), log.child({ part: 'xds' }));
  const capture = new NodeCapture({ nodeIp: settings.nodeIp, log: log.child({ part: 'capture' }) });
  const proxyMetrics = createProxyMetrics();
  const processMetrics = new Registry();
  collectDefaultMetrics({ register: processMetrics });
  const proxy = new Proxy({ state, certificates, log: log.child({ part: 'proxy' }), metrics: proxyMetrics, clusterId: settings.clusterId, innerPooling: settings.innerHbonePooling });

  const captured = new Set<string>();
  const localIdentities = new Set<string>();
  const syncLocalWorkloads = () => {
    const enrolled = state.localEnrolledWorkloads();
    const ips = enrolled.flatMap((w) => w.addresses.map((a) => bytesToIp(a)));
    captured.clear();
    for (const ip of ips) captured.add(ip);
    const identities = new Set(enrolled.map((w) => spiffeUri(identityOf(w))));
    for (const identity of identities) {
      if (localIdentities.has(identity)) continue;
      localIdentities.add(identity);
      // Fetch ahead of the first connection; failures are logged by the manager and retried on use.
      certificates.certificateFor(identity).catch(() => undefined);
    }
    for (const identity of [...localIdentities]) {
      if (identities.has(identity)) continue;
      localIdentities.delete(identity);
      certificates.forget(identity);
    }
    void capture.update(ips);
  };
  state.onChange(() => syncLocalWorkloads());

  await proxy.start();
  const dns = new DnsProxy({
    resolve: (name) => meshAddressesOf(state, name, settings.network),
    upstreams: readUpstreams(log),
    log: log.child({ part: 'dns' }),
    registry: proxyMetrics.registry,
  });
  await dns.start();
  xds.start();
  let ready = false;
  void xds.synced.then(() => {
    syncLocalWorkloads();
    ready = true;
    log.info({ workloads: state.workloads().length, services: state.services().length }, 'initial config received; ready');
  });

  const servers: Server[] = [];
  servers.push(
    await startHttpEndpoint('127.0.0.1', ADMIN_PORT, {
      '/config_dump': () =>
        json(
          buildConfigDump({
            node: settings.nodeName,
            clusterId: settings.clusterId,
            network: settings.network,
            state,
            certificates: () => certificates.view(),
            xds: () => xds.status(),
            captured: () => captured,
          }),
        ),
      [RESOURCES_PATH]: () => json(buildRawResources(state)),
      '/healthz': () => text('ok\n'),
    }, log),
  );
  const metricsRoute = async () => ({ status: 200, type: proxyMetrics.registry.contentType, body: (await proxyMetrics.registry.metrics()) + (await processMetrics.metrics()) });
  servers.push(await startHttpEndpoint('0.0.0.0', METRICS_PORT, { '/metrics': metricsRoute, '/stats/prometheus': metricsRoute }, log));
  servers.push(await startHttpEndpoint('0.0.0.0', READINESS_PORT, { '/healthz/ready': () => (ready ? text('ready\n') : text('waiting for the first config from the control plane\n', 503)) }, log));

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: removing capture rules, draining');
    await capture.remove();
    xds.stop();
    certificates.stop();
    await proxy.stop();
    await dns.stop();
    for (const server of servers) server.close();
    proxyMetrics.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  log.info({ xds: settings.xdsAddress, nodeIp: settings.nodeIp, network: settings.network || '(none)' }, 'ztunnel started');
}

/** The resolvers ztunnel itself uses (cluster DNS, with dnsPolicy ClusterFirstWithHostNet). */
function readUpstreams(log: Logger): Array<{ host: string; port: number }> {
  try {
    return upstreamsFromResolvConf(readFileSync('/etc/resolv.conf', 'utf8'));
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot read /etc/resolv.conf; the DNS proxy answers mesh names only');
    return [];
  }
}
