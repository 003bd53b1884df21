/**
 * The lab of the two-network cases (crossnet, controlplane): topologies/two-networks.yaml, one
 * root CA for both clusters, ambit installed in each with its network, the clusters linked with
 * remote secrets, and an east-west gateway per cluster, as the README's "Two clusters, two
 * networks" recipe does. A two-network lab that is already up is reused and left up; a lab of
 * another shape is never touched.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTROL_PLANE_NAME } from '../src/install/names.js';
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

export interface TwoNetworkLab {
  clusters: readonly [LabCluster, LabCluster];
  description: string;
  /** Scratch directory for configs, tokens and logs of this run. */
  workDir: string;
  teardown(): Promise<void>;
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

export interface TwoNetworkLabOptions {
  keepLab: boolean;
  log: Log;
}

export async function createTwoNetworkLab({ keepLab, log }: TwoNetworkLabOptions): Promise<TwoNetworkLab> {
  await prepareHost(log);
  const existing = readState();
  const reused = existing !== undefined;
  if (existing) {
    if (!twoNetworkClusters(existing)) {
      throw new BenchCommandError(
        `a lab of another shape is up (${existing.topologyFile}: clusters ${existing.plan.clusters.map((c) => `${c.name}/${c.network}`).join(', ')}); ` +
          `the two-network cases need ${TWO_NETWORK_TOPOLOGY_FILE}: bring it down with \`ambit lab down\` if it is not in use, and run again`,
      );
    }
    log(`a two-network lab is already up (${existing.topologyFile}): using it, and leaving it up`);
  } else {
    log(`ambit lab up -f ${TWO_NETWORK_TOPOLOGY_FILE}`);
    try {
      await ambitCli(['lab', 'up', '-f', join(repoRoot, TWO_NETWORK_TOPOLOGY_FILE)]);
    } catch (err) {
      await ambitCli(['lab', 'down']).catch(() => undefined);
      throw err;
    }
  }
  const teardown = async () => {
    if (reused) return;
    if (keepLab) return log('two-network lab kept (--keep-lab)');
    log('ambit lab down');
    await ambitCli(['lab', 'down']);
  };
  try {
    const planned = twoNetworkClusters(readState()!);
    if (!planned) throw new BenchCommandError(`${TWO_NETWORK_TOPOLOGY_FILE} did not give two clusters on two networks`);
    const clusters = planned.map((c) => ({ name: c.name, context: `lab-${c.name}`, network: c.network, nodes: c.nodes }));
    for (const cluster of clusters) await installMesh(cluster, log);
    log(`ambit link ${clusters.map((c) => `--context ${c.context}`).join(' ')}`);
    await ambitCli(['link', ...clusters.flatMap((c) => ['--context', c.context])], 120_000);
    const addresses = await Promise.all(clusters.map((c) => gatewayAddressOf(c)));
    const roots = await Promise.all(clusters.map((c) => rootCertOf(c.context)));
    if (roots[0] !== roots[1]) {
      throw new BenchCommandError(`the clusters do not share a root CA (ConfigMap istio-ca-root-cert differs): a reused lab was installed without the same cacerts; restart ${CONTROL_PLANE_NAME} after fixing it, or bring the lab down`);
    }
    const [c1, c2] = clusters.map((c, i) => ({ ...c, gatewayAddress: addresses[i]! }));
    const describe = (c: LabCluster) => `${c.name} (${c.network}: ${c.nodes.map((n) => n.name).join(', ')}; east-west gateway ${c.gatewayAddress})`;
    return {
      clusters: [c1!, c2!],
      description: `lab ${TWO_NETWORK_TOPOLOGY_FILE}: ${describe(c1!)} and ${describe(c2!)}, one root CA, linked with remote secrets`,
      workDir: mkdtempSync(join(tmpdir(), 'ambit-bench-2net-')),
      teardown,
    };
  } catch (err) {
    await teardown().catch(() => undefined);
    throw err;
  }
}
