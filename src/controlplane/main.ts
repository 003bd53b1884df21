import { toBinary } from '@bufbuild/protobuf';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { Server as GrpcServer, ServerCredentials, status as GrpcStatus, type Metadata } from '@grpc/grpc-js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { aggregatedDiscoveryService, AUTHORIZATION_HEADER, CLUSTER_ID_HEADER, istioCertificateService } from '../api/grpc.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../api/resources.js';
import { AddressSchema } from '../gen/istio/workload/workload_pb.js';
import { AuthorizationSchema } from '../gen/istio/security/authorization_pb.js';
import { apiClient } from '../kube/index.js';
import { createLogger, type Logger } from '../util/log.js';
import { json, startHttpEndpoint, text } from '../ztunnel/admin/server.js';
import { loadOrCreateAuthority, publishAuthorityRoots } from './ca/authority.js';
import { cachedPodDirectory, CertificateAuthorizer, kubeTokenReviewer } from './ca/authorize.js';
import { CaRequestError } from './ca/errors.js';
import { createCertificateService } from './ca/server.js';
import { KubeClusterView, MeshView, RemoteClusters, ServiceScopePolicy, watchClusterView } from './multicluster/index.js';
import { MeshConfigWatcher } from './mesh-config.js';
import { EastWestGatewayController, ownImage } from './gateways/index.js';
import type { RegistryChange } from './registry/index.js';
import type { ControlPlaneSettings } from './settings.js';
import { ResourceCache } from './xds/resource-cache.js';
import { createXdsMetrics } from './xds/metrics.js';
import { DeltaXdsServer, XdsAuthError, type XdsPeer } from './xds/server.js';

const SERVING_CERT_TTL_SECONDS = 30 * 24 * 3600;

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

function metadataValue(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === 'string' ? value : value?.toString();
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

  const authority = await loadOrCreateAuthority({ core }, { systemNamespace: settings.systemNamespace, trustDomain: settings.trustDomain, maxLeafTtlSeconds: settings.maxWorkloadCertTtlSeconds, log });
  await publishAuthorityRoots({ core }, authority, { systemNamespace: settings.systemNamespace, log });

  // The local mesh config's serviceScopeConfigs decide which services are global, in every cluster.
  const serviceScope = new ServiceScopePolicy();
  const meshConfig = new MeshConfigWatcher({ systemNamespace: settings.systemNamespace, policy: serviceScope, metrics: metricsRegistry, log: log.child({ part: 'mesh-config' }) }).watch(kubeConfig);
  const localView = new KubeClusterView({ clusterId: settings.clusterId, network: settings.network, trustDomain: settings.trustDomain, systemNamespace: settings.systemNamespace, serviceScope, log: log.child({ part: 'registry' }) });
  const cache = new ResourceCache();
  const localWatch = watchClusterView(kubeConfig, localView, { log: log.child({ part: 'informers' }), systemNamespace: settings.systemNamespace });
  const sources = localWatch.sources;

  const authorizer = new CertificateAuthorizer({
    trustDomain: settings.trustDomain,
    clusterName: settings.clusterId,
    systemNamespace: settings.systemNamespace,
    tokenReviewer: kubeTokenReviewer(kubeConfig),
    pods: cachedPodDirectory(() => sources.pods()),
  });
  const authenticateXds = async (metadata: Metadata): Promise<XdsPeer> => {
    try {
      const caller = await authorizer.authenticate({ authorization: metadataValue(metadata, AUTHORIZATION_HEADER), clusterId: metadataValue(metadata, CLUSTER_ID_HEADER) });
      return { name: caller.podName ? `${caller.identity.namespace}/${caller.podName}` : caller.username };
    } catch (err) {
      if (err instanceof CaRequestError) throw new XdsAuthError(err.code, err.message);
      throw new XdsAuthError(GrpcStatus.UNAUTHENTICATED, (err as Error).message);
    }
  };

  const serviceName = `ambit-controlplane.${settings.systemNamespace}.svc`;
  const serving = await authority.issueServerCertificate({ dnsNames: [serviceName, `${serviceName}.cluster.local`, 'localhost'], ipAddresses: ['127.0.0.1'], ttlSeconds: SERVING_CERT_TTL_SECONDS });
  const grpc = new GrpcServer({ 'grpc.max_concurrent_streams': 10_000, 'grpc.keepalive_time_ms': 30_000 });
  const xds = new DeltaXdsServer({ cache, log: log.child({ part: 'xds' }), metrics: createXdsMetrics(metricsRegistry), authenticate: authenticateXds });
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
    }),
  );

  let ready = false;
  let mesh: MeshView | undefined = undefined;
  let remotes: RemoteClusters | undefined = undefined;
  await startHttpEndpoint(settings.bindHost, settings.ports.readiness, { '/ready': () => (ready ? text('ready\n') : text('syncing with the API server\n', 503)) }, log);
  await startHttpEndpoint(settings.bindHost, settings.ports.monitoring, {
    '/metrics': async () => ({ status: 200, type: metricsRegistry.contentType, body: await metricsRegistry.metrics() }),
    '/debug/registry': () =>
      json({
        local: { stats: localView.registry.stats(), problems: localView.registry.problems() },
        mesh: mesh ? { stats: mesh.stats(), clusters: mesh.clusters(), addresses: mesh.addresses().size, authorizations: mesh.authorizations().size } : 'syncing',
        remotes: remotes?.status(),
        ca: authority.describe(),
        meshConfig: { serviceScopeConfigs: serviceScope.configs() },
      }),
  }, log);

  await Promise.all([localWatch.synced, meshConfig.synced]);
  mesh = new MeshView({ local: localView, trustDomain: settings.trustDomain, systemNamespace: settings.systemNamespace, log: log.child({ part: 'mesh' }) });
  mirrorRegistry(mesh, cache);
  cache.flush();
  remotes = new RemoteClusters({ localClusterId: settings.clusterId, systemNamespace: settings.systemNamespace, trustDomain: settings.trustDomain, serviceScope, clusters: mesh, metrics: metricsRegistry, log: log.child({ part: 'remote-clusters' }) });
  remotes.watch(kubeConfig);
  const gateways = await startGatewayController(settings, kubeConfig, core, localView.network(), metricsRegistry, log);
  const credentials = ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.certChainPem) }], false);
  await new Promise<void>((resolve, reject) =>
    grpc.bindAsync(`${settings.bindHost}:${settings.ports.xds}`, credentials, (err) => (err ? reject(new Error(`cannot listen on :${settings.ports.xds}: ${err.message}`)) : resolve())),
  );
  ready = true;
  log.info({ addresses: mesh.addresses().size, authorizations: mesh.authorizations().size, ca: authority.describe().source }, 'control plane ready');

  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    remotes?.stop();
    void gateways?.stop();
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
