// The nodes of `nodeRuntime: kubelet` clusters: one real kubelet + containerd per planned node (src/lab/node), with the lab's images.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { buildImages } from '../image/build.js';
import { apiClient, mergePatch } from '../kube/index.js';
import { clusterFiles } from './controlplane.js';
import { issueNodeCredentials, listImages, importImageArchive, nodePids, readNodeRecord, startRealNode, stopRealNode, type RealNodeSpec } from './node/index.js';
import { CLUSTER_DOMAIN, nodeTopologyLabels, type ClusterPlan, type LabPlan, type NodePlan } from './plan.js';
import { isRunning, sleep } from './processes.js';
import { labDir } from './state.js';

type Progress = (message: string) => void;

/** An OCI archive and the image names in it. */
export interface LabImageArchive {
  file: string;
  refs: string[];
}

export const realNodesDir = (dir = labDir()) => join(dir, 'real-nodes');
export const realNodeStateDir = (node: string, dir = labDir()) => join(realNodesDir(dir), node);

export const kubeletClusters = (plan: LabPlan) => plan.clusters.filter((c) => c.nodeRuntime === 'kubelet');

/** What the agent registers for its own nodes, as kubelet flags (the kubernetes.io ones are those NodeRestriction lets a kubelet set). */
export const realNodeLabels = (node: NodePlan): Record<string, string> => nodeTopologyLabels(node);

export function realNodeSpec(cluster: ClusterPlan, node: NodePlan, creds: Pick<RealNodeSpec, 'kubeconfig' | 'servingCertFile' | 'servingKeyFile' | 'caCertFile'>): RealNodeSpec {
  return {
    name: node.name,
    netns: node.netns,
    ip: node.ip,
    podCidr: node.podCidr,
    labels: realNodeLabels(node),
    apiServerUrl: cluster.apiServerUrl,
    ...creds,
    clusterDns: [cluster.dnsServiceIp],
    clusterDomain: CLUSTER_DOMAIN,
    stateDir: realNodeStateDir(node.name),
  };
}

/** The product image and the sample stand-ins, built unless cached (by content: a second run builds nothing). */
export async function labImageArchives(progress: Progress): Promise<LabImageArchive[]> {
  const started = Date.now();
  const result = await buildImages({ which: 'all', log: (line) => progress(`images: ${line}`) });
  const layers = result.layers.filter((l) => l.builtIn !== undefined).length;
  const written = result.archives.filter((a) => a.written).length;
  const what = result.builtNothing ? 'all cached' : `${layers} layer(s) built, ${written} archive(s) written`;
  progress(`images: ${what} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  return result.archives.map((a) => ({ file: a.file, refs: a.images.map((i) => i.ref) }));
}

/** True when the node's kubelet and containerd run (from a previous `lab up`). */
export function realNodeRunning(node: string): boolean {
  const record = readNodeRecord(realNodeStateDir(node));
  return Boolean(record?.kubeletPid && record.containerdPid && isRunning(record.kubeletPid) && isRunning(record.containerdPid));
}

function adminCore(cluster: ClusterPlan): CoreV1Api {
  const config = new KubeConfig();
  config.loadFromFile(clusterFiles(cluster.name).adminKubeconfig);
  return apiClient(config, CoreV1Api);
}

/**
 * Starts (or keeps) a real node for every node of the cluster, imports the images its containerd
 * lacks, and gives each Node the plan's pod CIDR (kube-controller-manager runs without nodeipam; the
 * CNI config already hands out that CIDR's addresses, spec.podCIDR tells the API).
 */
export async function ensureRealNodes(cluster: ClusterPlan, images: LabImageArchive[], progress: Progress, deadline: number): Promise<void> {
  const core = adminCore(cluster);
  await Promise.all(
    cluster.nodes.map(async (node) => {
      const stateDir = realNodeStateDir(node.name);
      const start = async () => {
        if (existsSync(stateDir)) await stopRealNode({ name: node.name, stateDir });
        const creds = await issueNodeCredentials({ apiServerUrl: cluster.apiServerUrl, files: clusterFiles(cluster.name) }, node, join(stateDir, 'pki'));
        const started = Date.now();
        await startRealNode(realNodeSpec(cluster, node, creds));
        progress(`node ${node.name}: kubelet + containerd started in ${((Date.now() - started) / 1000).toFixed(1)}s`);
      };
      if (!realNodeRunning(node.name)) await start();
      let listed: string[];
      try {
        listed = await listImages({ stateDir });
      } catch (err) {
        // Its processes look alive but containerd does not answer: start the node again.
        progress(`node ${node.name}: containerd does not answer (${String(err).split('\n')[0]!.slice(0, 160)}); starting the node again`);
        await start();
        listed = await listImages({ stateDir });
      }
      const present = new Set(listed);
      for (const archive of images) {
        if (archive.refs.every((r) => present.has(r))) continue;
        const started = Date.now();
        await importImageArchive({ stateDir }, archive.file);
        progress(`node ${node.name}: imported ${archive.refs.length} image(s) in ${((Date.now() - started) / 1000).toFixed(1)}s`);
      }
      await setPodCidr(core, node, deadline);
    }),
  );
}

async function setPodCidr(core: CoreV1Api, node: NodePlan, deadline: number): Promise<void> {
  for (;;) {
    try {
      const current = await core.readNode({ name: node.name });
      if (current.spec?.podCIDR === node.podCidr) return;
      await core.patchNode({ name: node.name, body: { spec: { podCIDR: node.podCidr, podCIDRs: [node.podCidr] } } }, mergePatch);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`node ${node.name} did not register (kubelet log: ${join(realNodeStateDir(node.name), 'logs', 'kubelet.log')}): ${String(err)}`);
    }
    await sleep(200);
  }
}

/** A real node of the cluster whose kubelet or containerd has died, described with where its logs are. */
export function deadRealNode(cluster: ClusterPlan): string | undefined {
  if (cluster.nodeRuntime !== 'kubelet') return undefined;
  for (const node of cluster.nodes) {
    const stateDir = realNodeStateDir(node.name);
    const record = readNodeRecord(stateDir);
    if (!record) continue;
    for (const [what, pid] of [['kubelet', record.kubeletPid], ['containerd', record.containerdPid]] as const) {
      if (pid && !isRunning(pid)) return `node ${node.name}: ${what} exited; see ${join(stateDir, 'logs', `${what}.log`)}`;
    }
  }
  return undefined;
}

/** Stops every real node of the lab (from the state directory alone, whatever happened to them); returns how many. */
export async function stopAllRealNodes(dir = labDir()): Promise<number> {
  const root = realNodesDir(dir);
  if (!existsSync(root)) return 0;
  const nodes = readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory());
  await Promise.all(nodes.map((e) => stopRealNode({ name: e.name, stateDir: join(root, e.name) })));
  return nodes.length;
}

/** PIDs of everything the real nodes of the lab run (kubelets, containerds, shims, containers). */
export function allRealNodePids(dir = labDir()): number[] {
  const root = realNodesDir(dir);
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => nodePids({ name: e.name, stateDir: join(root, e.name) }));
}
