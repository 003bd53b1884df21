/**
 * The cross-network case's pods: a client on the first node of cluster 1, an nginx server on
 * another node of cluster 1 behind a local Service (same network), and one in cluster 2 behind a
 * global Service that exists only there (reached from cluster 1 through cluster 2's east-west
 * gateway: double HBONE). All in an ambient namespace; the pods run `sleep infinity` and the bench
 * starts nginx and wrk inside them.
 */
import { CLUSTER_DOMAIN } from '../../src/lab/plan.js';
import { GATEWAY_CONTAINER, GATEWAY_NAME_LABEL } from '../../src/controlplane/gateways/constants.js';
import { METRICS_PORT } from '../../src/api/resources.js';
import { BenchCommandError, netnsPlace, waitUntil, type Place, type Spawned } from '../exec.js';
import { kubectl, waitForRunningPod, type RunningPod } from '../lab-kube.js';
import { podProcesses } from '../lab-processes.js';
import { probeHttp } from '../load/generators.js';
import { EAST_WEST_GATEWAY, SYSTEM_NAMESPACE, type LabCluster, type TwoNetworkLab } from '../multicluster-lab.js';
import { sumMetric } from '../parsers/prometheus.js';
import type { Address } from '../paths/path.js';
import type { ProcessGroup } from '../process-cost.js';
import { HTTP_BODY, HTTP_PORT, startNginx } from '../servers.js';

export const XNET_NAMESPACE = 'bench-xnet';
const CLIENT = 'xnet-client';
const SERVER = 'xnet-server';
export const LOCAL_SERVICE = 'xnet-local';
export const REMOTE_SERVICE = 'xnet-remote';
const CONTAINER = 'main';

function pod(name: string, node: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: XNET_NAMESPACE, labels: { app: name } },
    spec: { nodeName: node, terminationGracePeriodSeconds: 0, containers: [{ name: CONTAINER, image: 'busybox', command: ['sleep', 'infinity'] }] },
  };
}

function service(name: string, global: boolean): object {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: XNET_NAMESPACE, labels: global ? { 'istio.io/global': 'true' } : {} },
    spec: { selector: { app: SERVER }, ports: [{ name: 'http', port: HTTP_PORT, targetPort: HTTP_PORT }] },
  };
}

const namespace = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: XNET_NAMESPACE, labels: { 'istio.io/dataplane-mode': 'ambient' } } };

/** What each cluster gets: the client and the same-network server on different nodes of cluster 1 when it has two. */
export function crossNetworkManifests(cluster1Nodes: readonly string[], cluster2Nodes: readonly string[]): { cluster1: object; cluster2: object } {
  const [clientNode, otherNode] = cluster1Nodes;
  if (!clientNode || !cluster2Nodes[0]) throw new BenchCommandError('each cluster needs a node');
  const list = (items: object[]) => ({ apiVersion: 'v1', kind: 'List', items });
  return {
    cluster1: list([namespace, pod(CLIENT, clientNode), pod(SERVER, otherNode ?? clientNode), service(LOCAL_SERVICE, false)]),
    cluster2: list([namespace, pod(SERVER, cluster2Nodes[0]), service(REMOTE_SERVICE, true)]),
  };
}

export interface CrossNetworkSetup {
  client: RunningPod;
  sameNetwork: Address;
  crossNetwork: Address;
  /** The east-west gateway of cluster 2, which every cross-network connection goes through. */
  gateway: ProcessGroup;
  /** `ambit_hbone_inner_sessions_opened_total` of the client node's ztunnel. */
  innerSessionsOpened(): Promise<number>;
  /** Cross-network connections cluster 2's gateway has forwarded. */
  gatewayCrossings(): Promise<number>;
  /** Both targets answer from the client (after a ztunnel restart, for one). */
  probe(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function metricsOf(place: Place, url: string): Promise<string> {
  const r = await place.run(['curl', '-sS', '--max-time', '5', url], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new BenchCommandError(`${url} from ${place.label}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** The address ztunnel's DNS proxy answers for a remote-only global service (a VIP it allocated). */
export async function resolveInPod(client: RunningPod, hostname: string): Promise<string> {
  let address = '';
  await waitUntil(`${hostname} to resolve in the client pod`, async () => {
    const r = await client.place.run(['dig', '+short', '+time=2', '+tries=1', hostname], { timeoutMs: 10_000 });
    address = r.stdout.split('\n').map((l) => l.trim()).find((l) => /^\d+\.\d+\.\d+\.\d+$/.test(l)) ?? '';
    return address !== '';
  }, 120_000, 1000);
  return address;
}

export async function openCrossNetwork(lab: TwoNetworkLab, workDir: string, log: (line: string) => void): Promise<CrossNetworkSetup> {
  const [c1, c2] = lab.clusters;
  const manifests = crossNetworkManifests(c1.nodes.map((n) => n.name), c2.nodes.map((n) => n.name));
  const servers: Spawned[] = [];
  const close = async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
    for (const c of [c1, c2]) await kubectl(c.context, ['delete', 'namespace', XNET_NAMESPACE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
  };
  try {
    await kubectl(c1.context, ['apply', '-f', '-'], { input: JSON.stringify(manifests.cluster1) });
    await kubectl(c2.context, ['apply', '-f', '-'], { input: JSON.stringify(manifests.cluster2) });
    const client = await waitForRunningPod(c1.name, XNET_NAMESPACE, CLIENT, CONTAINER);
    const localServer = await waitForRunningPod(c1.name, XNET_NAMESPACE, SERVER, CONTAINER);
    const remoteServer = await waitForRunningPod(c2.name, XNET_NAMESPACE, SERVER, CONTAINER);
    servers.push(await startNginx(localServer.place, workDir, 'xnet-cluster1'));
    servers.push(await startNginx(remoteServer.place, workDir, 'xnet-cluster2'));
    log(`  client ${c1.name}/${client.node}, same-network server ${c1.name}/${localServer.node}, cross-network server ${c2.name}/${remoteServer.node}`);

    const localIp = (await kubectl(c1.context, ['get', 'service', LOCAL_SERVICE, '-n', XNET_NAMESPACE, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
    const remoteIp = await resolveInPod(client, `${REMOTE_SERVICE}.${XNET_NAMESPACE}.svc.${CLUSTER_DOMAIN}`);
    const sameNetwork = { host: localIp, port: HTTP_PORT };
    const crossNetwork = { host: remoteIp, port: HTTP_PORT };

    const clientNode = c1.nodes.find((n) => n.name === client.node);
    if (!clientNode) throw new BenchCommandError(`the client's node ${client.node} is not in the lab plan`);
    const clientNodePlace = netnsPlace(`node ${clientNode.name}`, clientNode.netns);
    const gatewaySelector = `${GATEWAY_NAME_LABEL}=${EAST_WEST_GATEWAY}`;
    const gateway = await podProcesses(c2.name, SYSTEM_NAMESPACE, gatewaySelector, GATEWAY_CONTAINER, `east-west gateway of ${c2.name}`);
    const gatewayPlace = await gatewayPodPlace(c2, gatewaySelector);

    const setup: CrossNetworkSetup = {
      client,
      sameNetwork,
      crossNetwork,
      gateway,
      innerSessionsOpened: async () => sumMetric(await metricsOf(clientNodePlace, `http://${clientNode.ip}:${METRICS_PORT}/metrics`), 'ambit_hbone_inner_sessions_opened_total'),
      gatewayCrossings: async () => sumMetric(await metricsOf(gatewayPlace, `http://127.0.0.1:${METRICS_PORT}/metrics`), 'ambit_gateway_cross_network_connections_total'),
      async probe(timeoutMs = 120_000) {
        for (const [what, target] of [['same-network', sameNetwork], ['cross-network', crossNetwork]] as const) {
          await waitUntil(`the ${what} server to answer the client`, async () => {
            await probeHttp(client.place, target, HTTP_BODY);
            return true;
          }, timeoutMs, 1000);
        }
      },
      close,
    };
    // The cross-network answers must come through cluster 2's gateway, not some other route. (The
    // client's first connection opens a new inner session, whether or not they are pooled.)
    const crossingsBefore = await setup.gatewayCrossings();
    await setup.probe();
    await waitUntil(`the cross-network requests to be counted by ${c2.name}'s east-west gateway`, async () => (await setup.gatewayCrossings()) > crossingsBefore, 10_000, 200);
    return setup;
  } catch (err) {
    await close();
    throw err;
  }
}

/** The gateway pod's namespaces, to read its metrics on 127.0.0.1. */
export async function gatewayPodPlace(cluster: LabCluster, selector: string): Promise<Place> {
  const name = (await kubectl(cluster.context, ['get', 'pods', '-n', SYSTEM_NAMESPACE, '-l', selector, '-o', 'jsonpath={.items[0].metadata.name}'])).trim();
  if (!name) throw new BenchCommandError(`no east-west gateway pod in ${cluster.name}`);
  return (await waitForRunningPod(cluster.name, SYSTEM_NAMESPACE, name, GATEWAY_CONTAINER)).place;
}
