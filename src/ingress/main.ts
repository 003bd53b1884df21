/**
 * The ingress gateway (`ambit ingress`): its own xDS view (Address, Authorization and its own
 * ambit.route.RouteConfig `<ns>/<deployment>`), its own certificate, HTTP listeners from the routes,
 * metrics on 15020, readiness on 15021.
 */
import { create, fromBinary } from '@bufbuild/protobuf';
import type { Server } from 'node:http';
import { HBONE_PORT, METRICS_PORT, READINESS_PORT, ROUTE_TYPE_URL, routeResourceName } from '../api/resources.js';
import { RouteConfigSchema, type RouteConfig } from '../gen/ambit/route/route_pb.js';
import { WorkloadSchema } from '../gen/istio/workload/workload_pb.js';
import { startProxyBase } from '../gateway/proxy-base.js';
import type { GatewaySettings } from '../gateway/settings.js';
import { HbonePool, InnerHbonePool } from '../hbone/index.js';
import { RequestMetrics } from '../l7/metrics.js';
import { createLogger, type Logger } from '../util/log.js';
import { stopOnSignals } from '../util/shutdown.js';
import { startHttpEndpoint, text } from '../ztunnel/admin/server.js';
import { createProxyMetrics } from '../ztunnel/metrics.js';
import { xdsExtraType } from '../ztunnel/xds/client.js';
import { IngressProxy } from './proxy.js';

/** The port served before any route arrives (Istio's ingress pod port behind Service port 80). */
const DEFAULT_HTTP_PORT = 8080;
/** How long requests in flight may finish after SIGTERM (the pod's grace period is 30 s). */
const DRAIN_TIMEOUT_MS = 5000;

export async function runIngress(settings: GatewaySettings, log: Logger = createLogger('ingress', { ingress: settings.gatewayName })): Promise<{ stop(): Promise<void> }> {
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
  const { state, identity, certificates, xds, processMetrics } = await startProxyBase(settings, { account: settings.gatewayName, kind: 'router', log, extraTypes: [routeType] });
  const metrics = createProxyMetrics();
  const pool = new HbonePool({ certificates, log: log.child({ part: 'hbone' }), metrics, hbonePort: HBONE_PORT, dialAddress: (host, port) => ({ host, port }) });
  const stand_in = create(WorkloadSchema, { name: settings.podName, namespace: settings.podNamespace, network: settings.network, workloadName: settings.gatewayName, serviceAccount: identity.split('/sa/')[1] ?? '' });
  const self = () => (settings.instanceIp ? state.workloadByIp(settings.instanceIp) : undefined) ?? stand_in;
  const inner = new InnerHbonePool({ outer: pool, certificates, log: log.child({ part: 'hbone' }), metrics });
  const requestMetrics = new RequestMetrics();
  const proxy = new IngressProxy({ state, pool, inner, identity, self, clusterId: settings.clusterId, requestMetrics, log: log.child({ part: 'proxy' }), defaultPorts: [DEFAULT_HTTP_PORT] });
  let synced = false;
  const servers: Server[] = [];
  const metricsRoute = async () => ({ status: 200, type: metrics.registry.contentType, body: (await requestMetrics.registry.metrics()) + (await metrics.registry.metrics()) + (await processMetrics.metrics()) });
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
    inner.close();
    pool.close();
    xds.stop();
    certificates.stop();
    for (const server of servers) server.close();
  });
  log.info({ identity, routes: resourceName, xds: settings.xdsAddress }, 'ingress started');
  return { stop };
}
