import { toBinary } from '@bufbuild/protobuf';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { Server as GrpcServer, ServerCredentials } from '@grpc/grpc-js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { aggregatedDiscoveryService, istioCertificateService } from '../api/grpc.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../api/resources.js';
import { AddressSchema } from '../gen/istio/workload/workload_pb.js';
import { AuthorizationSchema } from '../gen/istio/security/authorization_pb.js';
import { apiClient } from '../kube/index.js';
import { createLogger, type Logger } from '../util/log.js';
import { json, localOnly, startHttpEndpoint, text } from '../ztunnel/admin/server.js';
import { loadOrCreateAuthority, publishAuthorityRoots, type MeshAuthority } from './ca/authority.js';
import { publishRootsToNamespaces } from './ca/root-cert-publisher.js';
import { cachedPodDirectory, CertificateAuthorizer, kubeTokenReviewer } from './ca/authorize.js';
import { createCertificateService } from './ca/server.js';
import { KubeClusterView, MeshView, RemoteClusters, ServiceScopePolicy, watchClusterView } from './multicluster/index.js';
import { MeshConfigWatcher } from './mesh-config.js';
import { EastWestGatewayController, ownImage } from './gateways/index.js';
import type { GatewayWorkloadSettings } from './gateways/render.js';
import type { RegistryChange } from './registry/index.js';
import type { ControlPlaneSettings } from './settings.js';
import { XdsAccessPolicy, xdsAuthenticator } from './xds/access.js';
import { RouteController } from './routes/controller.js';
import { WaypointController, type WaypointControllerOptions } from './waypoints/controller.js';
import { ResourceCache } from './xds/resource-cache.js';
import { createXdsMetrics } from './xds/metrics.js';
import { DeltaXdsServer } from './xds/server.js';

const SERVING_CERT_TTL_SECONDS = 30 * 24 * 3600;
/** How long after the gateway controller starts an unknown xDS caller may still turn out to be one of its gateways. */
const GATEWAY_CONTROLLER_WARMUP_MS = 15_000;

function loadKubeConfig(settings: ControlPlaneSettings): KubeConfig {
  const config = new KubeConfig();
  if (settings.kubeconfig) config.loadFromFile(settings.kubeconfig);
  else if (process.env.KUBERNETES_SERVICE_HOST) config.loadFromCluster();
  else config.loadFromDefault();
  return config;
}

type ResourceSource = Pick<MeshView, 'address' | 'addresses' | 'authorization' | 'authorizations' | 'onChange'>;

/** Copies mesh changes into the serialized, versioned cache that xDS streams read. */
function mirrorRegistry(registry: ResourceSource, cache: ResourceCache): void {
  const copy = (change: RegistryChange) => {
    for (const name of change.addresses.upserted) {
      const address = registry.address(name);
      if (address) cache.set(ADDRESS_TYPE_URL, name, toBinary(AddressSchema, address));
    }
    for (const name of change.addresses.removed) cache.delete(ADDRESS_TYPE_URL, name);
    for (const name of change.authorizations.upserted) {
      const authorization = registry.authorization(name);
      if (authorization) cache.set(AUTHORIZATION_TYPE_URL, name, toBinary(AuthorizationSchema, authorization));
    }
    for (const name of change.authorizations.removed) cache.delete(AUTHORIZATION_TYPE_URL, name);
  };
  copy({
    addresses: { upserted: [...registry.addresses().keys()], removed: [] },
    authorizations: { upserted: [...registry.authorizations().keys()], removed: [] },
  });
  registry.onChange(copy);
}


/**
 * The control plane: watches the cluster, builds the mesh registry, serves it over delta
 * xDS and signs workload certificates, both on one TLS gRPC port (15012).
 */
export async function runControlPlane(settings: ControlPlaneSettings, log: Logger = createLogger('controlplane', { cluster: settings.clusterId })): Promise<void> {
  const kubeConfig = loadKubeConfig(settings);
  const core = apiClient(kubeConfig, CoreV1Api);
  const metricsRegistry = new Registry();
  collectDefaultMetrics({ register: metricsRegistry });

  // Readiness answers from the start and says what the control plane is waiting for.
  let notReady: string | undefined = 'loading the mesh CA';
  let mesh: MeshView | undefined = undefined;
  let remotes: RemoteClusters | undefined = undefined;
  let gateways: EastWestGatewayController | undefined = undefined;
  let authority: MeshAuthority | undefined = undefined;
  let routes: RouteController | undefined = undefined;
  let waypoints: WaypointController | undefined = undefined;
  const serviceScope = new ServiceScopePolicy();
  const localView = new KubeClusterView({ clusterId: settings.clusterId, network: settings.network, trustDomain: settings.trustDomain, systemNamespace: settings.systemNamespace, serviceScope, log: log.child({ part: 'registry' }) });
  await startHttpEndpoint(settings.bindHost, settings.ports.readiness, { '/ready': () => (notReady === undefined ? text('ready\n') : text(`not ready: ${notReady}\n`, 503)) }, log);
  await startHttpEndpoint(settings.bindHost, settings.ports.monitoring, {
    '/metrics': async () => ({ status: 200, type: metricsRegistry.contentType, body: await metricsRegistry.metrics() }),
    '/debug/registry': localOnly(() =>
      json({
        ready: notReady === undefined ? true : notReady,
        local: { stats: localView.registry.stats(), problems: localView.registry.problems() },
        mesh: mesh ? { stats: mesh.stats(), clusters: mesh.clusters(), addresses: mesh.addresses().size, authorizations: mesh.authorizations().size } : 'syncing',
        remotes: remotes?.status(),
        ca: authority?.describe() ?? 'loading',
        meshConfig: { serviceScopeConfigs: serviceScope.configs() },
      }),
    ),
  }, log);

  authority = await loadOrCreateAuthority({ core }, { systemNamespace: settings.systemNamespace, trustDomain: settings.trustDomain, maxLeafTtlSeconds: settings.maxWorkloadCertTtlSeconds, log });
  await publishAuthorityRoots({ core }, authority, { systemNamespace: settings.systemNamespace, log });
  const meshAuthority = authority;
  publishRootsToNamespaces(kubeConfig, () => meshAuthority.rootsPem, log.child({ part: 'root-certs' }));

  // The local mesh config's serviceScopeConfigs decide which services are global, in every cluster.
  notReady = 'waiting for the first full list of namespaces, nodes, pods, services and policies, and the mesh config, from the API server';
  const meshConfig = new MeshConfigWatcher({ systemNamespace: settings.systemNamespace, policy: serviceScope, metrics: metricsRegistry, log: log.child({ part: 'mesh-config' }) }).watch(kubeConfig);
  const cache = new ResourceCache();
  const localWatch = watchClusterView(kubeConfig, localView, { log: log.child({ part: 'informers' }), systemNamespace: settings.systemNamespace });
  const sources = localWatch.sources;
  let markSynced!: () => void;
  const synced = new Promise<void>((resolve) => (markSynced = resolve));

  const authorizer = new CertificateAuthorizer({
    trustDomain: settings.trustDomain,
    clusterName: settings.clusterId,
    systemNamespace: settings.systemNamespace,
    tokenReviewer: kubeTokenReviewer(kubeConfig),
    pods: cachedPodDirectory(() => sources.pods()),
  });
  const gatewayController: { startedAt?: number } = {};
  const gatewaysWarmBy = () => (gatewayController.startedAt ?? Date.now()) + GATEWAY_CONTROLLER_WARMUP_MS;
  const xdsAccess = new XdsAccessPolicy({
    systemNamespace: settings.systemNamespace,
    isGatewayServiceAccount: (namespace, name) => gateways?.isGatewayServiceAccount(namespace, name) ?? false,
    ingressRoutes: (namespace, name) => routes?.ingressRoutesOf(namespace, name) ?? new Set(),
    waypointResources: (namespace, name) => waypoints?.waypointResourcesOf(namespace, name) ?? new Set(),
  });
  const accessChanged = () => xdsAccess.changed();
  const authenticateXds = xdsAuthenticator({ authenticate: (metadata) => authorizer.authenticate(metadata), access: xdsAccess, recheckUntil: gatewaysWarmBy });

  const serviceName = `ambit-controlplane.${settings.systemNamespace}.svc`;
  const serving = await authority.issueServerCertificate({ dnsNames: [serviceName, `${serviceName}.cluster.local`, 'localhost'], ipAddresses: ['127.0.0.1'], ttlSeconds: SERVING_CERT_TTL_SECONDS });
  const grpc = new GrpcServer({ 'grpc.max_concurrent_streams': 10_000, 'grpc.keepalive_time_ms': 30_000 });
  // Streams wait for the first full sync: a proxy must never be told an empty mesh is the whole mesh.
  const xds = new DeltaXdsServer({ cache, log: log.child({ part: 'xds' }), metrics: createXdsMetrics(metricsRegistry), authenticate: authenticateXds, ready: synced });
  grpc.addService(aggregatedDiscoveryService, xds.handlers());
  grpc.addService(
    istioCertificateService,
    createCertificateService({
      authority,
      authorizer,
      log: log.child({ part: 'ca' }),
      defaultTtlSeconds: settings.workloadCertTtlSeconds,
      maxTtlSeconds: settings.maxWorkloadCertTtlSeconds,
      registry: metricsRegistry,
      ready: synced,
    }),
  );
  // Bound before the first sync, so a proxy connecting early waits on an open port instead of backing off.
  const credentials = ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.certChainPem) }], false);
  await new Promise<void>((resolve, reject) =>
    grpc.bindAsync(`${settings.bindHost}:${settings.ports.xds}`, credentials, (err) => (err ? reject(new Error(`cannot listen on :${settings.ports.xds}: ${err.message}`)) : resolve())),
  );

  await Promise.all([localWatch.synced, meshConfig.synced]);
  mesh = new MeshView({ local: localView, trustDomain: settings.trustDomain, systemNamespace: settings.systemNamespace, log: log.child({ part: 'mesh' }) });
  mirrorRegistry(mesh, cache);
  cache.flush();
  markSynced();
  remotes = new RemoteClusters({ localClusterId: settings.clusterId, systemNamespace: settings.systemNamespace, trustDomain: settings.trustDomain, serviceScope, clusters: mesh, metrics: metricsRegistry, log: log.child({ part: 'remote-clusters' }) });
  remotes.watch(kubeConfig);
  notReady = 'starting the east-west gateway controller';
  gateways = await startGatewayController(settings, kubeConfig, core, localView.network(), metricsRegistry, log);
  routes = await startRouteController(settings, kubeConfig, core, localView.network(), mesh, cache, metricsRegistry, log, accessChanged, () => waypoints?.schedule(100));
  const meshRoutes = routes;
  waypoints = await startWaypointController(settings, kubeConfig, core, localView, mesh, cache, metricsRegistry, log, accessChanged, meshRoutes && {
    routesOf: (service) => meshRoutes.meshRoutesOf(service),
    destinationPolicyOf: (hostname) => meshRoutes.destinationPolicyOf(hostname),
  });
  gatewayController.startedAt = Date.now();
  notReady = undefined;
  log.info({ addresses: mesh.addresses().size, authorizations: mesh.authorizations().size, ca: authority.describe().source }, 'control plane ready');

  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    remotes?.stop();
    void gateways?.stop();
    void routes?.stop();
    void waypoints?.stop();
    localWatch.stop();
    meshConfig.stop();
    mesh?.close();
    grpc.tryShutdown(() => process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/** Programs east-west gateways for Gateways of class istio-east-west; a failure disables only this. */
async function startGatewayController(
  settings: ControlPlaneSettings,
  kubeConfig: KubeConfig,
  core: CoreV1Api,
  network: string,
  registry: Registry,
  log: Logger,
): Promise<EastWestGatewayController | undefined> {
  try {
    const own = await ownImage(core, settings.systemNamespace, settings.podName);
    const controller = new EastWestGatewayController({
      kube: kubeConfig,
      clusterId: settings.clusterId,
      network,
      trustDomain: settings.trustDomain,
      systemNamespace: settings.systemNamespace,
      image: own.image,
      imagePullPolicy: own.imagePullPolicy,
      log: log.child({ part: 'gateways' }),
      registry,
    });
    controller.start();
    return controller;
  } catch (err) {
    log.error({ err: (err as Error).message }, 'east-west gateway controller disabled');
    return undefined;
  }
}

/** What the pods the control plane makes (ingress, waypoint) share: the cluster's identity and the control plane's own image. */
function proxyWorkloadSettings(settings: ControlPlaneSettings, own: { image: string; imagePullPolicy?: string }): GatewayWorkloadSettings {
  return { clusterId: settings.clusterId, trustDomain: settings.trustDomain, systemNamespace: settings.systemNamespace, image: own.image, imagePullPolicy: own.imagePullPolicy ?? 'IfNotPresent' };
}

/** Whether a mesh change touched a service (workload uids hold `//`, service names do not). */
function servicesChanged(change: { addresses: { upserted: readonly string[]; removed: readonly string[] } }): boolean {
  return [...change.addresses.upserted, ...change.addresses.removed].some((name) => !name.includes('//'));
}

/** Runs waypoints for Gateways of class istio-waypoint and istio-mesh; a failure disables only this. */
async function startWaypointController(
  settings: ControlPlaneSettings,
  kubeConfig: KubeConfig,
  core: CoreV1Api,
  local: KubeClusterView,
  mesh: MeshView,
  cache: ResourceCache,
  registry: Registry,
  log: Logger,
  onAccessChanged: () => void,
  meshRoutes: Pick<WaypointControllerOptions, 'routesOf' | 'destinationPolicyOf'> | undefined,
): Promise<WaypointController | undefined> {
  try {
    const own = await ownImage(core, settings.systemNamespace, settings.podName);
    const controller = new WaypointController({
      kube: kubeConfig,
      cache,
      network: local.network(),
      domainSuffix: 'cluster.local',
      workload: proxyWorkloadSettings(settings, own),
      addresses: () => mesh.addresses(),
      waypointPolicies: (uid) => local.registry.waypointPolicies(uid),
      ...meshRoutes,
      registry,
      log: log.child({ part: 'waypoints' }),
      onAccessChanged,
    });
    // Services and workloads carry their waypoint: what a Waypoint resource serves follows them (in memory; no API calls).
    mesh.onChange(() => controller.schedule(100));
    controller.start();
    return controller;
  } catch (err) {
    log.error({ err: (err as Error).message }, 'waypoint controller disabled');
    return undefined;
  }
}

/** Serves ingress routes (Istio Gateway/VirtualService, Gateway API class istio + HTTPRoute); a failure disables only this. */
async function startRouteController(
  settings: ControlPlaneSettings,
  kubeConfig: KubeConfig,
  core: CoreV1Api,
  network: string,
  mesh: MeshView,
  cache: ResourceCache,
  registry: Registry,
  log: Logger,
  onAccessChanged: () => void,
  onMeshRoutesChanged: () => void,
): Promise<RouteController | undefined> {
  try {
    const own = await ownImage(core, settings.systemNamespace, settings.podName);
    const controller = new RouteController({
      kube: kubeConfig,
      cache,
      systemNamespace: settings.systemNamespace,
      network,
      workload: proxyWorkloadSettings(settings, own),
      // Service hostnames are `<name>.<namespace>.svc.<suffix>`; their Address resources `<namespace>/<hostname>`.
      serviceExists: (hostname) => mesh.address(`${hostname.split('.')[1] ?? ''}/${hostname}`) !== undefined,
      log: log.child({ part: 'routes' }),
      registry,
      onAccessChanged,
      endpointsOf: (hostname) => mesh.endpointsOf(hostname),
      onMeshRoutesChanged,
    });
    // A backend appearing or going changes HTTPRoute status; a pod's labels change which subset it is in.
    mesh.onChange((change) => controller.schedule(servicesChanged(change) ? 200 : 500));
    controller.start();
    return controller;
  } catch (err) {
    log.error({ err: (err as Error).message }, 'ingress route controller disabled');
    return undefined;
  }
}
