import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { identityOf, spiffeUri } from '../api/identity.js';
import { ADMIN_PORT, METRICS_PORT, READINESS_PORT } from '../api/resources.js';
import { ZTUNNEL_NAME } from '../api/names.js';
import { createLogger, type Logger } from '../util/log.js';
import { buildConfigDump } from './admin/config-dump.js';
import { buildRawResources, RESOURCES_PATH } from './admin/resources.js';
import { json, startHttpEndpoint, text } from './admin/server.js';
import { NodeCapture } from './capture/node-capture.js';
import { decideCaptureOnExit, inClusterDaemonSetProbe } from './capture/on-exit.js';
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
  const localUids = new Set<string>();
  const syncLocalWorkloads = () => {
    const enrolled = state.localEnrolledWorkloads();
    const ips = state.capturedAddresses();
    captured.clear();
    for (const ip of ips) captured.add(ip);
    localUids.clear();
    for (const workload of state.localWorkloads()) localUids.add(workload.uid);
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
  // Nothing is captured, and no connection accepted, before the first full config of both types:
  // workloads without their policies would be served as if no policy applied. Until then the rules a
  // previous ztunnel left in place send captured traffic to ports nobody listens on: it fails closed.
  let synced = false;
  state.onChange((changed) => {
    if (!synced) return;
    const touchesLocal = changed.addresses.some((name) => localUids.has(name));
    syncLocalWorkloads();
    const nowLocal = changed.addresses.some((name) => localUids.has(name));
    if (changed.authorizations.length > 0 || touchesLocal || nowLocal) {
      const cut = proxy.reassessPolicies();
      if (cut > 0) log.info({ cut }, 'closed open connections that the current policies deny');
    }
  });

  const dns = new DnsProxy({
    resolve: (name) => meshAddressesOf(state, name, settings.network),
    upstreams: readUpstreams(log),
    // Captured DNS is DNAT'd to nodeIp:15053. Bound to the node address, UDP replies leave from it whatever
    // route leads back to the pod; on 0.0.0.0 they took the address of the pod's route (a CNI gives the
    // node side of a pod's veth one) and conntrack could not match them to the query.
    host: settings.nodeIp,
    log: log.child({ part: 'dns' }),
    registry: proxyMetrics.registry,
  });
  xds.start();
  let ready = false;
  const started = xds.synced.then(async () => {
    await proxy.start();
    await dns.start();
    synced = true;
    syncLocalWorkloads();
    ready = true;
    log.info({ workloads: state.workloads().length, services: state.services().length, authorizations: state.authorizations().length }, 'initial config received; capturing and ready');
  });
  started.catch((error: unknown) => {
    log.fatal({ err: error instanceof Error ? error.message : String(error) }, 'ztunnel cannot start its listeners');
    process.exit(1);
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
  servers.push(
    await startHttpEndpoint('0.0.0.0', READINESS_PORT, {
      '/healthz/ready': () => (ready ? text('ready\n') : text(`waiting for the first full config (workloads and policies) from the control plane at ${settings.xdsAddress}\n`, 503)),
    }, log),
  );

  let stopping = false;
  const daemonSetProbe = inClusterDaemonSetProbe(settings.podNamespace, ZTUNNEL_NAME);
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const onExit = await decideCaptureOnExit(daemonSetProbe, log);
    log.info({ signal, keepCapture: onExit.keep, reason: onExit.reason }, onExit.keep ? 'shutting down: capture stays in place, draining' : 'shutting down: removing capture rules, draining');
    if (!onExit.keep) await capture.remove();
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
