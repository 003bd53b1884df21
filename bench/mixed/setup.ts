/**
 * The mixed-network case's pods: a client on the first node of the local cluster, and three nginx
 * servers, each behind a global Service (istio.io/global=true) that exists only in its own
 * cluster, so that each has exactly one path from the client:
 *
 * - mixed-local, on the local cluster's second node: in-cluster, HBONE between two ztunnels;
 * - mixed-east, in another cluster on the same network: HBONE straight to its pod's ztunnel (the
 *   remote pod is a real workload with its pod IP);
 * - mixed-west, in a cluster on another network: double HBONE through that cluster's east-west
 *   gateway.
 *
 * The namespace is the same, and ambient, in every cluster; the pods run `sleep infinity` and the
 * bench starts nginx and the load generators inside them.
 */
import { CLUSTER_DOMAIN } from '../../src/lab/plan.js';
import { readState } from '../../src/lab/state.js';
import { GATEWAY_CONTAINER, GATEWAY_NAME_LABEL } from '../../src/controlplane/gateways/constants.js';
import { METRICS_PORT } from '../../src/api/resources.js';
import { gatewayPodPlace, metricsOf, resolveInPod } from '../crossnet/setup.js';
import { BenchCommandError, netnsPlace, waitUntil, type Place, type Spawned } from '../exec.js';
import { kubectl, waitForRunningPod, type RunningPod } from '../lab-kube.js';
import { podProcesses } from '../lab-processes.js';
import { probeHttp } from '../load/generators.js';
import { EAST_WEST_GATEWAY, SYSTEM_NAMESPACE, type LabCluster } from '../multicluster-lab.js';
import { sumMetric } from '../parsers/prometheus.js';
import type { Address } from '../paths/path.js';
import type { ProcessGroup } from '../process-cost.js';
import { HTTP_BODY, HTTP_PORT, startNginx } from '../servers.js';
import { GATEWAY, IN_CLUSTER, SAME_NETWORK, type MixedVariant } from './compare.js';
import type { MixedNetworkLab } from './lab.js';

export const MIXED_NAMESPACE = 'bench-mixed';
export const MIXED_CLIENT = 'mixed-client';
const CONTAINER = 'main';
const GATEWAY_CROSSINGS = 'ambit_gateway_cross_network_connections_total';

/** Each target's Service (and its server pod, and the pod's app label): one per cluster. */
export const MIXED_SERVICES: Record<MixedVariant, string> = {
  [IN_CLUSTER]: 'mixed-local',
  [SAME_NETWORK]: 'mixed-east',
  [GATEWAY]: 'mixed-west',
};

function pod(name: string, node: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: MIXED_NAMESPACE, labels: { app: name } },
    // Bound to its node: the client and every server are on different nodes.
    spec: { nodeName: node, terminationGracePeriodSeconds: 0, containers: [{ name: CONTAINER, image: 'busybox', command: ['sleep', 'infinity'] }] },
  };
}

function globalService(name: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: MIXED_NAMESPACE, labels: { 'istio.io/global': 'true' } },
    spec: { selector: { app: name }, ports: [{ name: 'http', port: HTTP_PORT, targetPort: HTTP_PORT }] },
  };
}

const namespace = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: MIXED_NAMESPACE, labels: { 'istio.io/dataplane-mode': 'ambient' } } };
const list = (items: object[]) => ({ apiVersion: 'v1', kind: 'List', items });

/**
 * What each cluster gets, by node names: the client on the local cluster's first node, the
 * in-cluster server on its second, the other servers on the first node of their clusters.
 */
export function mixedManifests(localNodes: readonly string[], sameNetworkNodes: readonly string[], otherNetworkNodes: readonly string[]): { local: object; sameNetwork: object; otherNetwork: object } {
  const [clientNode, serverNode] = localNodes;
  if (!clientNode || !serverNode) throw new BenchCommandError('the local cluster needs two nodes: the in-cluster path must cross nodes like the other two');
  if (!sameNetworkNodes[0] || !otherNetworkNodes[0]) throw new BenchCommandError('each cluster needs a node');
  const server = (variant: MixedVariant, node: string) => [pod(MIXED_SERVICES[variant], node), globalService(MIXED_SERVICES[variant])];
  return {
    local: list([namespace, pod(MIXED_CLIENT, clientNode), ...server(IN_CLUSTER, serverNode)]),
    sameNetwork: list([namespace, ...server(SAME_NETWORK, sameNetworkNodes[0])]),
    otherNetwork: list([namespace, ...server(GATEWAY, otherNetworkNodes[0])]),
  };
}

export interface MixedTarget {
  variant: MixedVariant;
  service: string;
  cluster: LabCluster;
  server: RunningPod;
  /** What the client dials: the Service's cluster IP (local) or the address ztunnel's DNS proxy gives its name. */
  address: Address;
}

export interface MixedNetworkSetup {
  client: RunningPod;
  /** In-cluster, same network, gateway: the order of MIXED_VARIANTS. */
  targets: MixedTarget[];
  /** The east-west gateway of the other network's cluster, which every gateway-path connection goes through. */
  gateway: ProcessGroup;
  close(): Promise<void>;
}

/** A place on a node of a lab cluster, and its ztunnel's metrics page. */
function nodeOf(cluster: LabCluster, name: string): { place: Place; metricsUrl: string } {
  const node = cluster.nodes.find((n) => n.name === name);
  if (!node) throw new BenchCommandError(`node ${name} is not in the lab plan of ${cluster.name}`);
  return { place: netnsPlace(`node ${node.name}`, node.netns), metricsUrl: `http://${node.ip}:${METRICS_PORT}/metrics` };
}

async function answers(client: RunningPod, target: MixedTarget, timeoutMs = 120_000): Promise<void> {
  await waitUntil(`${target.service} (${target.variant}) to answer the client`, async () => {
    await probeHttp(client.place, target.address, HTTP_BODY);
    return true;
  }, timeoutMs, 1000);
}

export async function openMixedNetwork(lab: MixedNetworkLab, workDir: string, log: (line: string) => void): Promise<MixedNetworkSetup> {
  const [local, sameNetwork, otherNetwork] = lab.clusters;
  const nodes = (c: LabCluster) => c.nodes.map((n) => n.name);
  const manifests = mixedManifests(nodes(local), nodes(sameNetwork), nodes(otherNetwork));
  const servers: Spawned[] = [];
  const close = async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
    for (const c of lab.clusters) await kubectl(c.context, ['delete', 'namespace', MIXED_NAMESPACE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
  };
  try {
    await kubectl(local.context, ['apply', '-f', '-'], { input: JSON.stringify(manifests.local) });
    await kubectl(sameNetwork.context, ['apply', '-f', '-'], { input: JSON.stringify(manifests.sameNetwork) });
    await kubectl(otherNetwork.context, ['apply', '-f', '-'], { input: JSON.stringify(manifests.otherNetwork) });
    const client = await waitForRunningPod(local.name, MIXED_NAMESPACE, MIXED_CLIENT, CONTAINER);

    const targets: MixedTarget[] = [];
    for (const [variant, cluster] of [[IN_CLUSTER, local], [SAME_NETWORK, sameNetwork], [GATEWAY, otherNetwork]] as const) {
      const service = MIXED_SERVICES[variant];
      const server = await waitForRunningPod(cluster.name, MIXED_NAMESPACE, service, CONTAINER);
      servers.push(await startNginx(server.place, workDir, service));
      const host =
        variant === IN_CLUSTER
          ? (await kubectl(cluster.context, ['get', 'service', service, '-n', MIXED_NAMESPACE, '-o', 'jsonpath={.spec.clusterIP}'])).trim()
          : await resolveInPod(client, `${service}.${MIXED_NAMESPACE}.svc.${CLUSTER_DOMAIN}`);
      targets.push({ variant, service, cluster, server, address: { host, port: HTTP_PORT } });
      log(`  ${variant}: ${service} on ${cluster.name}/${server.node} (pod ${server.ip}), dialled at ${host}:${HTTP_PORT}`);
    }
    log(`  client ${local.name}/${client.node} (pod ${client.ip})`);

    const gatewaySelector = `${GATEWAY_NAME_LABEL}=${EAST_WEST_GATEWAY}`;
    const gatewayPlaces = new Map<LabCluster, Place>();
    for (const c of [sameNetwork, otherNetwork]) gatewayPlaces.set(c, await gatewayPodPlace(c, gatewaySelector));
    const crossings = async (cluster: LabCluster) => sumMetric(await metricsOf(gatewayPlaces.get(cluster)!, `http://127.0.0.1:${METRICS_PORT}/metrics`), GATEWAY_CROSSINGS);
    const sameNetworkGatewayBefore = await crossings(sameNetwork);
    const otherNetworkGatewayBefore = await crossings(otherNetwork);

    // In-cluster and same network: carried over HBONE to the server's ztunnel, which reports the
    // client's identity (the pods' routes would carry plain traffic too, so an answer proves nothing).
    const trustDomain = readState()?.topology.trustDomain ?? 'cluster.local';
    const clientIdentity = `spiffe://${trustDomain}/ns/${MIXED_NAMESPACE}/sa/default`;
    for (const target of targets.filter((t) => t.variant !== GATEWAY)) {
      await answers(client, target);
      const serverNode = nodeOf(target.cluster, target.server.node);
      await waitUntil(`${target.service} (${target.variant}) to be reached over HBONE (its ztunnel to report ${clientIdentity})`, async () => {
        await client.place.run(['curl', '-sS', '-o', '/dev/null', '--max-time', '3', `http://${target.address.host}:${target.address.port}/`]);
        return (await metricsOf(serverNode.place, serverNode.metricsUrl)).includes(`source_principal="${clientIdentity}"`);
      }, 60_000, 500);
    }
    // Other network: through its cluster's east-west gateway, which counts each crossing.
    await answers(client, targets.find((t) => t.variant === GATEWAY)!);
    await waitUntil(`the gateway-path requests to be counted by ${otherNetwork.name}'s east-west gateway`, async () => (await crossings(otherNetwork)) > otherNetworkGatewayBefore, 10_000, 200);
    const sameNetworkGatewayAfter = await crossings(sameNetwork);
    if (sameNetworkGatewayAfter !== sameNetworkGatewayBefore) {
      throw new BenchCommandError(
        `${sameNetwork.name}'s east-west gateway forwarded ${sameNetworkGatewayAfter - sameNetworkGatewayBefore} connection(s) while the client probed ${MIXED_SERVICES[SAME_NETWORK]}: ` +
          `the same-network path should go straight to the pod (are ${local.name} and ${sameNetwork.name} installed with the same --network?)`,
      );
    }

    const gateway = await podProcesses(otherNetwork.name, SYSTEM_NAMESPACE, gatewaySelector, GATEWAY_CONTAINER, `east-west gateway of ${otherNetwork.name}`);
    return { client, targets, gateway, close };
  } catch (err) {
    await close();
    throw err;
  }
}
