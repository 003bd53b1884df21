/**
 * The ingress gateway (`ambit ingress`): its own xDS view (Address, Authorization and its own
 * ambit.route.RouteConfig `<ns>/<deployment>`), its own certificate, HTTP listeners from the routes,
 * metrics on 15020, readiness on 15021.
 */
import { create, fromBinary } from '@bufbuild/protobuf';
import type { Server } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { HBONE_PORT, METRICS_PORT, READINESS_PORT, ROUTE_TYPE_URL, routeResourceName } from '../api/resources.js';
import { RouteConfigSchema, type RouteConfig } from '../gen/ambit/route/route_pb.js';
import { WorkloadSchema } from '../gen/istio/workload/workload_pb.js';
import { gatewayIdentity } from '../gateway/identity.js';
import type { GatewaySettings } from '../gateway/settings.js';
import { HbonePool } from '../hbone/index.js';
import { createLogger, type Logger } from '../util/log.js';
import { stopOnSignals } from '../util/shutdown.js';
import { startHttpEndpoint, text } from '../ztunnel/admin/server.js';
import { certificateManagerFor, proxyNodeId, xdsClientFor } from '../ztunnel/control-plane-client.js';
import { createProxyMetrics } from '../ztunnel/metrics.js';
import { ZtunnelState } from '../ztunnel/state/store.js';
import { xdsExtraType } from '../ztunnel/xds/client.js';
import { IngressProxy } from './proxy.js';

/** The port served before any route arrives (Istio's ingress pod port behind Service port 80). */
const DEFAULT_HTTP_PORT = 8080;
/** How long requests in flight may finish after SIGTERM (the pod's grace period is 30 s). */
const DRAIN_TIMEOUT_MS = 5000;

export async function runIngress(settings: GatewaySettings, log: Logger = createLogger('ingress', { ingress: settings.gatewayName })): Promise<{ stop(): Promise<void> }> {
  const state = new ZtunnelState({ network: settings.network, nodeName: settings.nodeName, clusterId: settings.clusterId, systemNamespace: settings.systemNamespace, logger: log.child({ part: 'state' }) });
  const identity = await gatewayIdentity({ trustDomain: settings.trustDomain, namespace: settings.podNamespace, gatewayName: settings.gatewayName, tokenPath: settings.tokenPath }, log.child({ part: 'identity' }));
  const certificates = certificateManagerFor(settings, log.child({ part: 'identity' }));
  const metrics = createProxyMetrics();
  const processMetrics = new Registry();
  collectDefaultMetrics({ register: processMetrics });
  const pool = new HbonePool({ certificates, log: log.child({ part: 'hbone' }), metrics, hbonePort: HBONE_PORT, dialAddress: (host, port) => ({ host, port }) });
  const stand_in = create(WorkloadSchema, { name: settings.podName, namespace: settings.podNamespace, network: settings.network, workloadName: settings.gatewayName, serviceAccount: identity.split('/sa/')[1] ?? '' });
  const self = () => (settings.instanceIp ? state.workloadByIp(settings.instanceIp) : undefined) ?? stand_in;
  const proxy = new IngressProxy({ state, pool, identity, self, registry: metrics.registry, log: log.child({ part: 'proxy' }), defaultPorts: [DEFAULT_HTTP_PORT] });
  const resourceName = routeResourceName(settings.podNamespace, settings.gatewayName);
  let routesSynced = false;
  let certified = false;
  const routeType = xdsExtraType<RouteConfig>({
    typeUrl: ROUTE_TYPE_URL,
    names: [resourceName],
    decode: (bytes) => fromBinary(RouteConfigSchema, bytes),
    apply: (upserted, removed) => {
      const mine = upserted.find((u) => u.name === resourceName)?.resource;
      routesSynced = true;
      if (mine) {
        log.info({ listeners: mine.listeners.map((l) => ({ port: l.port, virtualHosts: l.virtualHosts.length, sources: l.sources })) }, 'routes updated');
        void proxy.update(mine).catch(() => undefined);
      } else if (removed.includes(resourceName)) {
        void proxy.update(undefined).catch(() => undefined);
      }
    },
  });
  const xds = xdsClientFor(settings, state, proxyNodeId('router', settings.instanceIp, settings.podName, settings.podNamespace), log.child({ part: 'xds' }), [routeType]);
  let synced = false;
  const servers: Server[] = [];
  const metricsRoute = async () => ({ status: 200, type: metrics.registry.contentType, body: (await metrics.registry.metrics()) + (await processMetrics.metrics()) });
  servers.push(await startHttpEndpoint('0.0.0.0', METRICS_PORT, { '/metrics': metricsRoute, '/stats/prometheus': metricsRoute }, log));
  servers.push(
    await startHttpEndpoint('0.0.0.0', READINESS_PORT, {
      '/healthz/ready': () => {
        if (synced && routesSynced && certified && proxy.listening.length) return text('ready\n');
        return text(`waiting for ${[synced && routesSynced ? '' : 'the first config from the control plane', certified ? '' : 'the ingress certificate'].filter(Boolean).join(' and ') || 'the listeners'}\n`, 503);
      },
    }, log),
  );
  await proxy.update(undefined);
  xds.start();
  void xds.synced.then(() => {
    synced = true;
    log.info({ workloads: state.workloads().length, services: state.services().length }, 'initial config received');
  });
  const certify = () =>
    certificates.certificateFor(identity).then(
      () => (certified = true),
      (err: unknown) => {
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'cannot obtain the ingress certificate yet; retrying');
        setTimeout(certify, 2000).unref();
      },
    );
  void certify();
  const { stop } = stopOnSignals(async () => {
    log.info('shutting down: draining the HTTP listeners');
    await proxy.stop(DRAIN_TIMEOUT_MS);
    pool.close();
    xds.stop();
    certificates.stop();
    for (const server of servers) server.close();
  });
  log.info({ identity, routes: resourceName, xds: settings.xdsAddress }, 'ingress started');
  return { stop };
}
