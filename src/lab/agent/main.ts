import { CoreV1Api, type V1Endpoints, type V1Pod, type V1Service } from '@kubernetes/client-node';
import { createLogger } from '../../util/log.js';
import { clusterFiles } from '../controlplane.js';
import { clusterOf, networkOf } from '../plan.js';
import { labDir, podsDir, readState } from '../state.js';
import { ClusterDnsRecords } from './dns-records.js';
import { ClusterDnsServer } from './dns-server.js';
import { errorMessage, startInformer } from '../../kube/index.js';
import { connect } from './kube.js';
import { NodeRegistrar } from './node-registrar.js';
import { PodRuntime } from './pod-runtime.js';
import { ServiceController } from './services.js';

/**
 * The per-cluster lab agent. It runs in the cluster's control-plane network namespace and plays
 * kube-proxy, CoreDNS and the LoadBalancer controller, and kubelet for every node of the cluster
 * unless its nodes are real (nodeRuntime kubelet: their kubelets register them and run the pods).
 */
export async function runAgent(clusterName: string): Promise<void> {
  const state = readState();
  if (!state) throw new Error(`no lab state in ${labDir()}; start the lab with \`ambit lab up -f <topology>\``);
  const cluster = clusterOf(state.plan, clusterName);
  const network = networkOf(state.plan, cluster.network);
  const log = createLogger('lab-agent', { cluster: cluster.name });
  const kube = connect(clusterFiles(cluster.name).agentKubeconfig);

  await waitForApiServer(kube.core, log);
  const runsPods = (cluster.nodeRuntime ?? 'agent') === 'agent';
  const registrar = runsPods ? new NodeRegistrar(kube, cluster.nodes, log) : undefined;
  await registrar?.start();

  const records = new ClusterDnsRecords();
  const dns = new ClusterDnsServer({ records, address: cluster.cpIp, port: 53, log });
  await dns.start();
  const services = new ServiceController(kube, cluster, network, log);
  await services.ensureDnsService();

  const runtime = runsPods ? new PodRuntime(kube, cluster, podsDir(cluster.name), labDir(), log) : undefined;
  await runtime?.recoverLeftovers();

  const upsertService = (svc: V1Service) => {
    records.upsertService(svc);
    services.upsertService(svc);
  };
  await startInformer<V1Service>({
    config: kube.config,
    path: '/api/v1/services',
    list: () => kube.core.listServiceForAllNamespaces(),
    what: 'services',
    log,
    onAdd: (svc) => upsertService(svc),
    onUpdate: (svc) => upsertService(svc),
    onDelete: (svc) => {
      records.deleteService(svc.metadata!.namespace!, svc.metadata!.name!);
      services.deleteService(svc);
    },
  }).synced;
  const upsertEndpoints = (ep: V1Endpoints) => {
    records.upsertEndpoints(ep);
    services.upsertEndpoints(ep);
  };
  await startInformer<V1Endpoints>({
    config: kube.config,
    path: '/api/v1/endpoints',
    list: () => kube.core.listEndpointsForAllNamespaces(),
    what: 'endpoints',
    log,
    onAdd: upsertEndpoints,
    onUpdate: upsertEndpoints,
    onDelete: (ep) => {
      records.deleteEndpoints(ep.metadata!.namespace!, ep.metadata!.name!);
      services.deleteEndpoints(ep);
    },
  }).synced;
  if (runtime) {
    await startInformer<V1Pod>({
      config: kube.config,
      path: '/api/v1/pods',
      list: () => kube.core.listPodForAllNamespaces(),
      what: 'pods',
      log,
      onAdd: (pod) => runtime.upsert(pod),
      onUpdate: (pod) => runtime.upsert(pod),
      onDelete: (pod) => runtime.remove(pod),
    }).synced;
  }
  log.info({ nodes: cluster.nodes.map((n) => n.name), dns: `${cluster.cpIp}:53`, pods: runtime ? 'agent' : 'kubelet' }, 'lab agent ready');

  const shutdown = async (signal: string) => {
    log.info({ signal }, 'lab agent stopping');
    registrar?.stop();
    await runtime?.shutdown();
    await services.shutdown(false);
    await dns.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

async function waitForApiServer(core: CoreV1Api, log: ReturnType<typeof createLogger>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await core.listNamespace({ limit: 1 });
      return;
    } catch (err) {
      if (attempt % 20 === 0) log.info({ err: errorMessage(err) }, 'waiting for kube-apiserver');
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
