import https from 'node:https';
import { isDeepStrictEqual } from 'node:util';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { apiClient } from '../kube/index.js';
import { buildFabric } from './fabric.js';
import { clusterFiles, ensureClusterPki, startControlPlane } from './controlplane.js';
import { mergeContext } from './kubeconfig.js';
import { planLab, type ClusterPlan } from './plan.js';
import { findNodeBinaries } from './k8s-binaries.js';
import { checkHostTools, requireRoot } from './preflight.js';
import { deadRealNode, ensureRealNodes, kubeletClusters, labImageArchives } from './real-nodes.js';
import { isAlive, sleep, spawnInNetns } from './processes.js';
import { labDir, readState, writeState, type LabProcess, type LabState } from './state.js';
import { loadTopology } from './topology.js';

type Progress = (message: string) => void;

const ambitBin = fileURLToPath(new URL('../../bin/ambit.js', import.meta.url));

export class LabUpError extends Error {}

export async function labUp(topologyFile: string, progress: Progress, timeoutMs = 180_000): Promise<LabState> {
  requireRoot('ambit lab up');
  const topology = loadTopology(topologyFile);
  checkHostTools();
  const started = Date.now();
  const previous = readState();
  if (previous && !isDeepStrictEqual(previous.topology, topology)) {
    throw new LabUpError(
      `a lab built from ${previous.topologyFile} is already up with a different topology; run \`ambit lab down\` first`,
    );
  }
  const plan = planLab(topology);
  const realClusters = kubeletClusters(plan);
  if (realClusters.length) findNodeBinaries();
  // Built (or found in the cache) while the fabric and control planes come up; a cold build takes minutes.
  const images = realClusters.length ? labImageArchives(progress) : undefined;
  images?.catch(() => undefined);
  const state: LabState = previous ?? {
    topologyFile: topologyFile === '-' ? '<stdin>' : resolve(topologyFile),
    topology,
    plan,
    createdAt: new Date().toISOString(),
    processes: [],
  };
  state.plan = plan;
  writeState(state);
  progress(previous ? 'lab already exists: checking and repairing it' : `creating lab in ${labDir()}`);

  await buildFabric(plan, progress);
  for (const cluster of plan.clusters) {
    const files = await ensureClusterPki(cluster);
    const fresh = startControlPlane(cluster, files, state.processes, 'api');
    if (fresh.length) progress(`cluster ${cluster.name}: started ${fresh.map((p) => p.name.split('/')[1]).join(', ')} at ${cluster.apiServerUrl}`);
    state.processes = mergeProcesses(state.processes, fresh);
    writeState(state);
  }
  const deadline = started + timeoutMs;
  await Promise.all(plan.clusters.map((c) => waitForApiServer(c, deadline, state)));
  for (const cluster of plan.clusters) {
    progress(`cluster ${cluster.name}: kube-apiserver ready`);
    state.processes = mergeProcesses(state.processes, startControlPlane(cluster, clusterFiles(cluster.name), state.processes, 'controllers'));
    writeState(state);
    const name = `${cluster.name}/agent`;
    const current = state.processes.find((p) => p.name === name);
    if (!current || !isAlive(current.pid)) {
      const pid = spawnInNetns(
        cluster.cpNetns,
        [process.execPath, ambitBin, 'lab', 'agent', '--cluster', cluster.name],
        join(clusterFiles(cluster.name).logs, 'agent.log'),
        { ...process.env, AMBIT_LAB_DIR: labDir() },
      );
      state.processes = mergeProcesses(state.processes, [{ name, pid, netns: cluster.cpNetns }]);
      writeState(state);
    }
    await mergeContext(cluster, clusterFiles(cluster.name));
  }
  let nodeDeadline = deadline;
  if (images) {
    const archives = await images;
    // Waiting for nodes starts when the images are there: a cold image build is not the nodes' time.
    nodeDeadline = Math.max(deadline, Date.now() + timeoutMs / 2);
    await Promise.all(realClusters.map((c) => ensureRealNodes(c, archives, progress, nodeDeadline)));
  }
  await Promise.all(plan.clusters.map((c) => waitForNodes(c, nodeDeadline, state)));
  for (const cluster of plan.clusters) progress(`cluster ${cluster.name}: ${cluster.nodes.length} node(s) Ready; kubectl --context lab-${cluster.name}`);
  progress(`lab up in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  return state;
}

function mergeProcesses(current: LabProcess[], fresh: LabProcess[]): LabProcess[] {
  const names = new Set(fresh.map((p) => p.name));
  return [...current.filter((p) => !names.has(p.name)), ...fresh];
}

function adminClient(cluster: ClusterPlan): CoreV1Api {
  const config = new KubeConfig();
  config.loadFromFile(clusterFiles(cluster.name).adminKubeconfig);
  return apiClient(config, CoreV1Api);
}

function deadProcess(cluster: ClusterPlan, state: LabState): LabProcess | undefined {
  return state.processes.find((p) => p.name.startsWith(`${cluster.name}/`) && !isAlive(p.pid));
}

function failure(cluster: ClusterPlan, state: LabState, what: string): LabUpError {
  const deadNode = deadRealNode(cluster);
  if (deadNode) return new LabUpError(`cluster ${cluster.name}: ${deadNode} while waiting for ${what}`);
  const dead = deadProcess(cluster, state);
  const logs = clusterFiles(cluster.name).logs;
  return new LabUpError(
    dead
      ? `cluster ${cluster.name}: ${dead.name} exited while waiting for ${what}; see ${join(logs, `${dead.name.split('/')[1]}.log`)}`
      : `cluster ${cluster.name}: timed out waiting for ${what}; logs in ${logs}`,
  );
}

/** GET /readyz with the admin credentials: true once every post-start hook (RBAC bootstrap included) is done. */
async function apiServerReady(cluster: ClusterPlan): Promise<boolean> {
  const config = new KubeConfig();
  config.loadFromFile(clusterFiles(cluster.name).adminKubeconfig);
  const options: https.RequestOptions = {};
  await config.applyToHTTPSOptions(options);
  return new Promise((resolve) => {
    const req = https.get(`${cluster.apiServerUrl}/readyz`, { ...options, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

async function waitForApiServer(cluster: ClusterPlan, deadline: number, state: LabState): Promise<void> {
  while (Date.now() < deadline) {
    if (deadProcess(cluster, state)) break;
    if (await apiServerReady(cluster)) return;
    await sleep(250);
  }
  throw failure(cluster, state, 'kube-apiserver to be ready');
}

async function waitForNodes(cluster: ClusterPlan, deadline: number, state: LabState): Promise<void> {
  const core = adminClient(cluster);
  const wanted = new Set(cluster.nodes.map((n) => n.name));
  while (Date.now() < deadline) {
    if (deadProcess(cluster, state) || deadRealNode(cluster)) break;
    try {
      const nodes = await core.listNode();
      const ready = nodes.items.filter((n) => wanted.has(n.metadata!.name!) && n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      // Pods can be created once the service-account controller has made the default account.
      if (ready.length === wanted.size && (await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' }))) return;
    } catch {
      /* keep waiting */
    }
    await sleep(250);
  }
  throw failure(cluster, state, 'its nodes to be Ready and the default service account');
}
