/**
 * Labs of several clusters for the multi-cluster cases, as the README's "Two clusters, two
 * networks" and "Three clusters, mixed networks" recipes set them up: one root CA for every
 * cluster, ambit installed in each with its network, the clusters linked with remote secrets (one
 * `ambit link` over all of them), and an east-west gateway per cluster.
 *
 * The two-network lab (crossnet, controlplane) is topologies/two-networks.yaml; other phases
 * describe their lab with a `LabShape` (bench/mixed/lab.ts). A lab of the right shape that is
 * already up is reused and left up; a lab of another shape is never touched.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTROL_PLANE_NAME } from '../src/api/names.js';
import type { ClusterPlan, NodePlan } from '../src/lab/plan.js';
import { readState, type LabState } from '../src/lab/state.js';
import { BenchCommandError, waitUntil } from './exec.js';
import { ambitCli, kubectl, kubectlCreateIfMissing, prepareHost, repoRoot, type Log } from './lab-kube.js';

export const TWO_NETWORK_TOPOLOGY_FILE = 'topologies/two-networks.yaml';
export const SYSTEM_NAMESPACE = 'istio-system';
export const EAST_WEST_GATEWAY = 'istio-eastwestgateway';
const NETWORK_LABEL = 'topology.istio.io/network';
const CA_FILES = ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem'];

/** Istio's samples (its plug-in CA certificates), next to this repository as the tests find them. */
const samplesDir = process.env.AMBIT_SAMPLES_DIR ?? fileURLToPath(new URL('../../shared/samples/istio/', import.meta.url));

export interface LabCluster {
  name: string;
  context: string;
  network: string;
  nodes: NodePlan[];
  /** The LoadBalancer address of its east-west gateway. */
  gatewayAddress: string;
}

/** A lab brought up (or reused) and set up for a phase of multi-cluster cases. */
export interface MulticlusterLab {
  /** The clusters the cases use, in the order the lab's shape gives them. */
  clusters: readonly LabCluster[];
  description: string;
  /** Scratch directory for configs, tokens and logs of this run. */
  workDir: string;
  teardown(): Promise<void>;
}

export interface TwoNetworkLab extends MulticlusterLab {
  clusters: readonly [LabCluster, LabCluster];
}

/** What a phase needs of a lab. */
export interface LabShape {
  /** In messages: "a <name> lab is already up". */
  name: string;
  /** The topology it brings up, relative to the repository root. */
  topologyFile: string;
  /** The clusters the cases use, in their order, or undefined when a lab does not fit. */
  select(state: Pick<LabState, 'plan'>): ClusterPlan[] | undefined;
  /** What `select` needs, e.g. "two clusters on two networks". */
  needs: string;
  /** Who needs it, e.g. "the two-network cases". */
  cases: string;
  /** Prefix of the scratch directory under the system's temporary directory. */
  workDirPrefix: string;
}

/** The first two clusters of a lab, when they are on different networks. */
export function twoNetworkClusters(state: Pick<LabState, 'plan'>): [ClusterPlan, ClusterPlan] | undefined {
  const [first, second] = state.plan.clusters;
  return first && second && first.network !== second.network ? [first, second] : undefined;
}

/** An east-west gateway (DESIGN §4): class istio-east-west, HBONE on 15008, ISTIO_MUTUAL termination. */
export function eastWestGatewayManifest(network: string): object {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: EAST_WEST_GATEWAY, namespace: SYSTEM_NAMESPACE, labels: { [NETWORK_LABEL]: network } },
    spec: {
      gatewayClassName: 'istio-east-west',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE', tls: { mode: 'Terminate', options: { 'gateway.istio.io/tls-terminate-mode': 'ISTIO_MUTUAL' } } }],
    },
  };
}

async function installMesh(cluster: { name: string; context: string; network: string }, log: Log): Promise<void> {
  const { context } = cluster;
  await kubectlCreateIfMissing(context, ['namespace', SYSTEM_NAMESPACE]);
  // One root for both clusters: a cacerts Secret that is already there is kept (it decides the CA).
  await kubectlCreateIfMissing(context, ['secret', 'generic', 'cacerts', '-n', SYSTEM_NAMESPACE, ...CA_FILES.map((f) => `--from-file=${join(samplesDir, 'certs', f)}`)]);
  log(`ambit install --context ${context} --cluster-name ${cluster.name} --network ${cluster.network}`);
  await ambitCli(['install', '--context', context, '--cluster-name', cluster.name, '--network', cluster.network]);
  await kubectl(context, ['label', 'namespace', SYSTEM_NAMESPACE, `${NETWORK_LABEL}=${cluster.network}`, '--overwrite']);
}

async function gatewayAddressOf(cluster: { name: string; context: string; network: string }): Promise<string> {
  await kubectl(cluster.context, ['apply', '--server-side', '-f', '-'], { input: JSON.stringify(eastWestGatewayManifest(cluster.network)) });
  let address = '';
  await waitUntil(`the east-west gateway of ${cluster.name} to have an address and be Programmed`, async () => {
    address = (await kubectl(cluster.context, ['-n', SYSTEM_NAMESPACE, 'get', 'svc', EAST_WEST_GATEWAY, '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}'])).trim();
    const programmed = await kubectl(cluster.context, ['-n', SYSTEM_NAMESPACE, 'get', 'gateway', EAST_WEST_GATEWAY, '-o', 'jsonpath={.status.conditions[?(@.type=="Programmed")].status}']);
    return address !== '' && programmed.trim() === 'True';
  }, 180_000, 1000);
  return address;
}

async function rootCertOf(context: string): Promise<string> {
  return kubectl(context, ['-n', SYSTEM_NAMESPACE, 'get', 'configmap', 'istio-ca-root-cert', '-o', 'jsonpath={.data.root-cert\\.pem}']);
}

/** "a", "a and b", "a, b and c". */
export function listInWords(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

export interface MulticlusterLabOptions {
  keepLab: boolean;
  log: Log;
}

/** Brings up (or reuses) a lab of the given shape and sets up every cluster `shape.select` gives. */
export async function createMulticlusterLab(shape: LabShape, { keepLab, log }: MulticlusterLabOptions): Promise<MulticlusterLab> {
  await prepareHost(log);
  const existing = readState();
  const reused = existing !== undefined;
  if (existing) {
    if (!shape.select(existing)) {
      throw new BenchCommandError(
        `a lab of another shape is up (${existing.topologyFile}: clusters ${existing.plan.clusters.map((c) => `${c.name}/${c.network}`).join(', ')}); ` +
          `${shape.cases} need ${shape.topologyFile}: bring it down with \`ambit lab down\` if it is not in use, and run again`,
      );
    }
    log(`a ${shape.name} lab is already up (${existing.topologyFile}): using it, and leaving it up`);
  } else {
    log(`ambit lab up -f ${shape.topologyFile}`);
    try {
      await ambitCli(['lab', 'up', '-f', join(repoRoot, shape.topologyFile)]);
    } catch (err) {
      await ambitCli(['lab', 'down']).catch(() => undefined);
      throw err;
    }
  }
  const teardown = async () => {
    if (reused) return;
    if (keepLab) return log(`${shape.name} lab kept (--keep-lab)`);
    log('ambit lab down');
    await ambitCli(['lab', 'down']);
  };
  try {
    const planned = shape.select(readState()!);
    if (!planned) throw new BenchCommandError(`${shape.topologyFile} did not give ${shape.needs}`);
    const clusters = planned.map((c) => ({ name: c.name, context: `lab-${c.name}`, network: c.network, nodes: c.nodes }));
    for (const cluster of clusters) await installMesh(cluster, log);
    log(`ambit link ${clusters.map((c) => `--context ${c.context}`).join(' ')}`);
    await ambitCli(['link', ...clusters.flatMap((c) => ['--context', c.context])], 120_000);
    const addresses = await Promise.all(clusters.map((c) => gatewayAddressOf(c)));
    const roots = await Promise.all(clusters.map((c) => rootCertOf(c.context)));
    if (roots.some((root) => root !== roots[0])) {
      throw new BenchCommandError(`the clusters do not share a root CA (ConfigMap istio-ca-root-cert differs): a reused lab was installed without the same cacerts; restart ${CONTROL_PLANE_NAME} after fixing it, or bring the lab down`);
    }
    const labClusters: LabCluster[] = clusters.map((c, i) => ({ ...c, gatewayAddress: addresses[i]! }));
    const describe = (c: LabCluster) => `${c.name} (${c.network}: ${c.nodes.map((n) => n.name).join(', ')}; east-west gateway ${c.gatewayAddress})`;
    return {
      clusters: labClusters,
      description: `lab ${shape.topologyFile}: ${listInWords(labClusters.map(describe))}, one root CA, linked with remote secrets`,
      workDir: mkdtempSync(join(tmpdir(), shape.workDirPrefix)),
      teardown,
    };
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
}

export const TWO_NETWORK_LAB: LabShape = {
  name: 'two-network',
  topologyFile: TWO_NETWORK_TOPOLOGY_FILE,
  select: twoNetworkClusters,
  needs: 'two clusters on two networks',
  cases: 'the two-network cases',
  workDirPrefix: 'ambit-bench-2net-',
};

export type TwoNetworkLabOptions = MulticlusterLabOptions;

export async function createTwoNetworkLab(options: TwoNetworkLabOptions): Promise<TwoNetworkLab> {
  const lab = await createMulticlusterLab(TWO_NETWORK_LAB, options);
  const [c1, c2] = lab.clusters;
  return { ...lab, clusters: [c1!, c2!] };
}
