// `ambit waypoint run`: the waypoint process — its xDS view (addresses, policies, its own Waypoint resource), certificate, HBONE proxy, metrics and readiness.
import type { Server } from 'node:http';

import { create, toJson } from '@bufbuild/protobuf';

import { waypointResourceName } from '../api/resources.js';
import { WaypointSchema } from '../gen/ambit/waypoint/waypoint_pb.js';
import { WorkloadSchema, type Workload } from '../gen/istio/workload/workload_pb.js';
import { startProxyBase } from '../gateway/proxy-base.js';
import { RequestMetrics } from '../l7/metrics.js';
import { createLogger, type Logger } from '../util/log.js';
import { stopOnSignals } from '../util/shutdown.js';
import { buildConfigDump } from '../ztunnel/admin/config-dump.js';
import { startProxyEndpoints } from '../ztunnel/admin/proxy-endpoints.js';
import { createProxyMetrics } from '../ztunnel/metrics.js';
import { WaypointConfig } from './config.js';
import type { WaypointSettings } from './settings.js';
import { WaypointProxy } from './waypoint.js';

const DRAIN_TIMEOUT_MS = 5000;

export interface WaypointProcess {
  stop(): Promise<void>;
}

export async function runWaypoint(settings: WaypointSettings, log: Logger = createLogger('waypoint', { waypoint: settings.gatewayName })): Promise<WaypointProcess> {
  const config = new WaypointConfig(waypointResourceName(settings.podNamespace, settings.gatewayName), log.child({ part: 'config' }));
  const { state, identity, certificates, xds, processMetrics } = await startProxyBase(settings, { account: settings.serviceAccount, kind: 'waypoint', log, extraTypes: [config.subscription()] });
  const requestMetrics = new RequestMetrics();
  const proxyMetrics = createProxyMetrics();
  const fallbackSelf: Workload = create(WorkloadSchema, {
    uid: `${settings.clusterId}//Pod/${settings.podNamespace}/${settings.podName}`,
    name: settings.podName,
    namespace: settings.podNamespace,
    serviceAccount: settings.serviceAccount,
    trustDomain: settings.trustDomain,
    node: settings.nodeName,
    clusterId: settings.clusterId,
    network: settings.network,
    workloadName: settings.gatewayName,
  });
  const proxy = new WaypointProxy({
    identity,
    certificates,
    state,
    config,
    self: () => (settings.instanceIp && state.workloadByIp(settings.instanceIp)) || fallbackSelf,
    clusterId: settings.clusterId,
    log: log.child({ part: 'proxy' }),
    requestMetrics,
    proxyMetrics,
    accessLog: settings.accessLog,
  });

  let synced = false;
  let servers: Server[];
  try {
    servers = await startProxyEndpoints({
      configDump: () => ({
        ...buildConfigDump({
          node: settings.nodeName || settings.podName,
          clusterId: settings.clusterId,
          network: settings.network,
          state,
          certificates: () => certificates.view(),
          xds: () => xds.status(),
          captured: () => new Set<string>(),
        }),
        waypoint: config.resource ? toJson(WaypointSchema, config.resource) : null,
        upstreams: proxy.upstreamCounts(),
      }),
      metrics: async () => ({
        type: requestMetrics.registry.contentType,
        body: (await requestMetrics.registry.metrics()) + (await proxyMetrics.registry.metrics()) + (await processMetrics.metrics()),
      }),
      waitingFor: () => [synced ? '' : 'the first config from the control plane', proxy.ready ? '' : 'the waypoint certificate and the HBONE listener'].filter(Boolean),
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
    log.info({ workloads: state.workloads().length, services: config.served.services.size, policies: config.served.policies.length }, 'initial config received');
  });

  const { stop, exitAfterStop } = stopOnSignals(async () => {
    log.info('shutting down: draining the HBONE listener');
    await proxy.stop(DRAIN_TIMEOUT_MS);
    xds.stop();
    certificates.stop();
    closeServers();
    proxyMetrics.close();
  });

  proxy.start(settings.hbonePort).catch((error: unknown) => {
    log.error({ err: error instanceof Error ? error.message : String(error) }, 'waypoint cannot serve HBONE; exiting');
    exitAfterStop(1);
  });
  log.info({ identity, xds: settings.xdsAddress, for: settings.waypointFor, port: settings.hbonePort }, 'waypoint started');
  return { stop };
}
