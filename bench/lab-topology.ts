/**
 * The bench on the lab: one cluster, two nodes (topologies/one-cluster.yaml), ambit installed,
 * and a client pod on node 1 and a server pod on node 2 in each of two namespaces: bench-direct
 * (outside the mesh: direct, stunnel, HAProxy) and bench-mesh (enrolled with
 * istio.io/dataplane-mode=ambient: the ambit path).
 *
 * The pods run `sleep infinity` (the lab's busybox image runs host programs); the bench starts
 * its servers and load generators inside them with nsenter, like `ambit lab exec` does.
 */
import { existsSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ZTUNNEL_CONTAINER, ZTUNNEL_METRICS_PORT, ZTUNNEL_NAME } from '../src/api/names.js';
import { readState } from '../src/lab/state.js';
import { BenchCommandError, netnsPlace, processNamespacesPlace, runCommand, waitUntil, type Place, type RunResult } from './exec.js';
import { containerPid } from './lab-pods.js';
import type { ProcessGroup } from './process-cost.js';
import { HTTP_PORT } from './servers.js';
import type { BenchTopology, Endpoints, MeshEndpoints } from './topology.js';

const repoRoot = fileURLToPath(new URL('../', import.meta.url));
export const LAB_TOPOLOGY_FILE = 'topologies/one-cluster.yaml';
export const CLUSTER = 'cluster1';
export const CONTEXT = `lab-${CLUSTER}`;
const SYSTEM_NAMESPACE = 'istio-system';
export const PLAIN_NAMESPACE = 'bench-direct';
export const MESH_NAMESPACE = 'bench-mesh';
export const POD_CONTAINER = 'main';
export const CLIENT_POD = 'bench-client';
export const SERVER_POD = 'bench-server';

type Log = (line: string) => void;

async function hostCommand(argv: string[], timeoutMs: number): Promise<RunResult> {
  const r = await runCommand(argv, { timeoutMs });
  if (r.code !== 0) throw new BenchCommandError(`\`${argv.join(' ')}\` exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 2000)}`);
  return r;
}

const ambit = (args: string[], timeoutMs = 300_000) => hostCommand([process.execPath, join(repoRoot, 'bin/ambit.js'), ...args], timeoutMs);
const kubectl = (args: string[], input?: string) =>
  runCommand(['kubectl', '--context', CONTEXT, ...args], { timeoutMs: 60_000, ...(input !== undefined ? { input } : {}) }).then((r) => {
    if (r.code !== 0) throw new BenchCommandError(`kubectl ${args.join(' ')}: ${r.stderr.trim()}`);
    return r.stdout;
  });

/** Newest modification time under a directory (to know whether dist/ is older than src/). */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

async function buildIfStale(log: Log): Promise<void> {
  const main = join(repoRoot, 'dist/cli/main.js');
  if (existsSync(main) && statSync(main).mtimeMs >= newestMtime(join(repoRoot, 'src'))) return;
  log('building dist/ (the lab runs the compiled CLI)');
  await hostCommand([process.execPath, join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', join(repoRoot, 'tsconfig.json')], 600_000);
}

function benchManifest(): string {
  const namespaces = [
    { name: PLAIN_NAMESPACE, labels: {} },
    { name: MESH_NAMESPACE, labels: { 'istio.io/dataplane-mode': 'ambient' } },
  ];
  const docs: object[] = [];
  for (const ns of namespaces) {
    docs.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns.name, labels: ns.labels } });
    for (const [name, node] of [[CLIENT_POD, `${CLUSTER}-node1`], [SERVER_POD, `${CLUSTER}-node2`]] as const) {
      docs.push({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: ns.name, labels: { app: name } },
        spec: {
          // Bound directly: the pair must straddle the two nodes for traffic to cross between them.
          nodeName: node,
          terminationGracePeriodSeconds: 0,
          containers: [{ name: POD_CONTAINER, image: 'busybox', command: ['sleep', 'infinity'] }],
        },
      });
    }
  }
  // One JSON List: kubectl does not split JSON documents on `---`.
  return JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs });
}

interface RunningPod {
  name: string;
  ip: string;
  node: string;
  pid: number;
}

async function waitForPod(namespace: string, name: string): Promise<RunningPod> {
  let found: RunningPod | undefined;
  await waitUntil(`pod ${namespace}/${name} to run`, async () => {
    const pod = JSON.parse(await kubectl(['get', 'pod', '-n', namespace, name, '-o', 'json'])) as { spec: { nodeName?: string }; status: { phase?: string; podIP?: string } };
    const pid = containerPid(CLUSTER, namespace, name, POD_CONTAINER);
    if (pod.status.phase !== 'Running' || !pod.status.podIP || !pid) return false;
    found = { name, ip: pod.status.podIP, node: pod.spec.nodeName ?? '', pid };
    return true;
  }, 120_000, 500);
  return found!;
}

function nodeOf(name: string): { netns: string; ip: string } {
  const node = readState()?.plan.clusters.find((c) => c.name === CLUSTER)?.nodes.find((n) => n.name === name);
  if (!node) throw new BenchCommandError(`node ${name} is not in the lab plan`);
  return node;
}

async function endpointsIn(namespace: string, nodes: { client: Place; server: Place; clientIp: string; serverIp: string }): Promise<Endpoints> {
  const client = await waitForPod(namespace, CLIENT_POD);
  const server = await waitForPod(namespace, SERVER_POD);
  return {
    clientPod: processNamespacesPlace(`client pod ${namespace}/${client.name}`, client.pid),
    serverPod: processNamespacesPlace(`server pod ${namespace}/${server.name}`, server.pid),
    serverPodIp: server.ip,
    clientNode: nodes.client,
    serverNode: nodes.server,
    clientNodeIp: nodes.clientIp,
    serverNodeIp: nodes.serverIp,
  };
}

async function ztunnelGroups(): Promise<ProcessGroup[]> {
  const list = JSON.parse(await kubectl(['get', 'pods', '-n', SYSTEM_NAMESPACE, '-l', `app=${ZTUNNEL_NAME}`, '-o', 'json'])) as { items: Array<{ metadata: { name: string }; spec: { nodeName?: string } }> };
  const groups: ProcessGroup[] = [];
  for (const node of [`${CLUSTER}-node1`, `${CLUSTER}-node2`]) {
    const pod = list.items.find((p) => p.spec.nodeName === node);
    if (!pod) throw new BenchCommandError(`no ztunnel pod on ${node}`);
    // Looked up on every sample: a restarted ztunnel has a new PID.
    groups.push({ label: `ztunnel on ${node}`, pids: () => [containerPid(CLUSTER, SYSTEM_NAMESPACE, pod.metadata.name, ZTUNNEL_CONTAINER) ?? []].flat() });
  }
  return groups;
}

export interface LabTopologyOptions {
  keepLab: boolean;
  log: Log;
}

export async function createLabTopology({ keepLab, log }: LabTopologyOptions): Promise<BenchTopology> {
  await buildIfStale(log);
  log('host dependencies of the lab (scripts/install-host-deps.sh)');
  await hostCommand(['bash', join(repoRoot, 'scripts/install-host-deps.sh')], 900_000);
  // Someone else's lab is left as it is at the end; only the bench's namespaces are removed.
  const labWasUp = readState() !== undefined;
  if (labWasUp) log('a lab is already up: using it, and leaving it up');
  else {
    log(`ambit lab up -f ${LAB_TOPOLOGY_FILE}`);
    try {
      await ambit(['lab', 'up', '-f', join(repoRoot, LAB_TOPOLOGY_FILE)]);
    } catch (err) {
      // A lab that came up halfway (or was interrupted) is removed: `lab down` works after a crash too.
      await ambit(['lab', 'down']).catch(() => undefined);
      throw err;
    }
  }
  const teardown = async () => {
    if (keepLab) return log('lab kept (--keep-lab)');
    if (labWasUp) {
      await kubectl(['delete', 'namespace', PLAIN_NAMESPACE, MESH_NAMESPACE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
      return;
    }
    log('ambit lab down');
    await ambit(['lab', 'down']);
  };
  try {
    log(`ambit install --context ${CONTEXT}`);
    await ambit(['install', '--context', CONTEXT, '--cluster-name', CLUSTER]);
    await kubectl(['apply', '-f', '-'], benchManifest());

    const node1 = nodeOf(`${CLUSTER}-node1`);
    const node2 = nodeOf(`${CLUSTER}-node2`);
    const nodes = { client: netnsPlace(`node ${CLUSTER}-node1`, node1.netns), server: netnsPlace(`node ${CLUSTER}-node2`, node2.netns), clientIp: node1.ip, serverIp: node2.ip };
    const plain = await endpointsIn(PLAIN_NAMESPACE, nodes);
    const meshEndpoints = await endpointsIn(MESH_NAMESPACE, nodes);
    const trustDomain = readState()?.topology.trustDomain ?? 'cluster.local';
    const clientIdentity = `spiffe://${trustDomain}/ns/${MESH_NAMESPACE}/sa/default`;
    const mesh: MeshEndpoints = {
      ...meshEndpoints,
      proxies: await ztunnelGroups(),
      // The server node's ztunnel reports the client's identity only for traffic it received over HBONE.
      async confirmMeshed() {
        await waitUntil(`traffic from ${MESH_NAMESPACE}/bench-client to be carried over HBONE`, async () => {
          await meshEndpoints.clientPod.run(['curl', '-sS', '-o', '/dev/null', '--max-time', '3', `http://${meshEndpoints.serverPodIp}:${HTTP_PORT}/`]);
          const metrics = await nodes.server.run(['curl', '-sS', '--max-time', '5', `http://${node2.ip}:${ZTUNNEL_METRICS_PORT}/metrics`]);
          return metrics.stdout.includes(`source_principal="${clientIdentity}"`);
        }, 60_000, 500);
      },
    };
    return {
      kind: 'lab',
      description: `lab ${LAB_TOPOLOGY_FILE}: client pods on ${CLUSTER}-node1 (${node1.ip}), server pods on ${CLUSTER}-node2 (${node2.ip}); namespaces ${PLAIN_NAMESPACE} (not enrolled) and ${MESH_NAMESPACE} (ambient)`,
      plain,
      mesh,
      workDir: mkdtempSync(join(tmpdir(), 'ambit-bench-')),
      teardown,
    };
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
}
