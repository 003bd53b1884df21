/**
 * The waypoint case's part of the one-cluster lab: a waypoint in bench-mesh, a Service enrolled in
 * it that selects only the server pod, the waypoint pod's process and request counter, the check
 * that only the Service's cluster IP crosses the waypoint, and HAProxy in mode http between the
 * nodes of the bench-direct pods.
 */
import { METRICS_PORT } from '../../src/api/resources.js';
import { GATEWAY_API_GROUP, ZTUNNEL_METRICS_PATH } from '../../src/api/names.js';
import { GATEWAY_NAME_LABEL } from '../../src/controlplane/gateways/constants.js';
import type { CaseContext } from '../cases/case.js';
import { metricsOf } from '../crossnet/setup.js';
import { BenchCommandError, waitUntil, type Place, type Spawned } from '../exec.js';
import { ambitCli, kubectl, kubectlJson, podsWithLabel, waitForRunningPod } from '../lab-kube.js';
import { podProcesses } from '../lab-processes.js';
import { CLUSTER, CONTEXT, MESH_NAMESPACE, SERVER_POD } from '../lab-topology.js';
import { httpUrl, probeHttp } from '../load/generators.js';
import { sumMetric } from '../parsers/prometheus.js';
import { haproxyHttpPath } from '../paths/haproxy.js';
import type { Address, OpenPath } from '../paths/path.js';
import type { ProcessGroup } from '../process-cost.js';
import { HTTP_BODY, HTTP_PORT, startNginx } from '../servers.js';
import { HAPROXY_HTTP, L4, pathCheckProblem, ROUTES, WAYPOINT, type PathCheckCounts, type WaypointVariant } from './compare.js';
import { hasWaypointApply, routedObjects, ROUTED_SERVICE, TARGET_LABEL_KEY, TARGET_LABEL_VALUE, waypointApplyArgs, waypointGateway, waypointService, WAYPOINT_NAME, WAYPOINT_SERVICE } from './manifests.js';

export const REQUEST_METRIC = 'istio_requests_total';
/** Requests sent each way by the path check. */
export const PATH_CHECK_REQUESTS = 20;
const WAYPOINT_READY_MS = 180_000;

/** One row's target: where its client dials and which processes carry its traffic; or why it could not be set up. */
export interface ReadyTarget {
  variant: WaypointVariant;
  client: Place;
  address: Address;
  proxies: ProcessGroup[];
  error?: undefined;
}
export type WaypointTarget = ReadyTarget | { variant: WaypointVariant; error: string };

export interface WaypointSetup {
  /** In the order of WAYPOINT_VARIANTS. */
  targets: WaypointTarget[];
  /** The waypoint pod's process (one of the waypoint row's proxies). */
  waypoint: ProcessGroup;
  /** The waypoint's istio_requests_total, summed over its series. */
  waypointRequests(): Promise<number>;
  pathCheck: PathCheckCounts;
  /** For the method: how the waypoint was made, where its pod runs, the addresses dialled. */
  description: string;
  close(): Promise<void>;
}

const selector = `${GATEWAY_NAME_LABEL}=${WAYPOINT_NAME}`;
/** Fully qualified: with Istio's networking CRDs installed, plain `gateway` may name networking.istio.io's. */
const GATEWAY_RESOURCE = `gateways.${GATEWAY_API_GROUP}`;

/** `ambit waypoint apply` when this build has it (it names the context option too), else the Gateway applied with kubectl. */
async function applyWaypoint(log: (line: string) => void): Promise<string> {
  const help = await ambitCli(['waypoint', 'apply', '--help'], 30_000).catch(() => undefined);
  if (help && hasWaypointApply(help.stdout)) {
    const args = waypointApplyArgs(MESH_NAMESPACE, help.stdout.includes('--context') ? CONTEXT : undefined);
    log(`  ambit ${args.join(' ')}`);
    await ambitCli(args, 120_000);
    return `\`ambit ${args.join(' ')}\``;
  }
  log(`  no \`ambit waypoint apply\` in this build: applying Gateway ${MESH_NAMESPACE}/${WAYPOINT_NAME} (class istio-waypoint) with kubectl`);
  await kubectl(CONTEXT, ['apply', '-f', '-'], { input: JSON.stringify(waypointGateway(MESH_NAMESPACE)) });
  return `a Gateway ${MESH_NAMESPACE}/${WAYPOINT_NAME} of class istio-waypoint (listener mesh, port 15008, HBONE; istio.io/waypoint-for: service) applied with kubectl`;
}

interface GatewayJson {
  status?: { conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
}

/** The Gateway's conditions in one line, for an error message. */
async function gatewayConditions(): Promise<string> {
  const gw = await kubectlJson<GatewayJson>(CONTEXT, ['get', GATEWAY_RESOURCE, '-n', MESH_NAMESPACE, WAYPOINT_NAME]).catch(() => undefined);
  const conditions = gw?.status?.conditions ?? [];
  return conditions.length ? conditions.map((c) => `${c.type}=${c.status}${c.reason ? ` (${c.reason}${c.message ? `: ${c.message}` : ''})` : ''}`).join(', ') : 'no status conditions';
}

async function waypointPod(): Promise<{ name: string; node: string; ip: string; container: string; place: Place }> {
  let name = '';
  try {
    await waitUntil(`a ready waypoint pod (${selector}) in ${MESH_NAMESPACE}`, async () => {
      name = (await podsWithLabel(CONTEXT, MESH_NAMESPACE, selector)).find((p) => p.phase === 'Running' && p.ready)?.name ?? '';
      return name !== '';
    }, WAYPOINT_READY_MS, 1000);
  } catch (err) {
    throw new BenchCommandError(`${err instanceof Error ? err.message : String(err)}; Gateway ${MESH_NAMESPACE}/${WAYPOINT_NAME}: ${await gatewayConditions()} (does the control plane make waypoint Deployments?)`);
  }
  const spec = await kubectlJson<{ spec: { containers: Array<{ name: string }> } }>(CONTEXT, ['get', 'pod', '-n', MESH_NAMESPACE, name]);
  const container = spec.spec.containers[0]?.name;
  if (!container) throw new BenchCommandError(`waypoint pod ${MESH_NAMESPACE}/${name} has no container`);
  const pod = await waitForRunningPod(CLUSTER, MESH_NAMESPACE, name, container);
  return { name, node: pod.node, ip: pod.ip, container, place: pod.place };
}

/** `count` requests over one keep-alive connection (one curl); throws unless every one is answered 200. */
export async function sendRequests(client: Place, address: Address, count: number): Promise<void> {
  const url = httpUrl(address);
  // -o applies to one URL only: each URL gets its own, or the bodies would land in the status codes.
  const outputs = Array.from({ length: count }, () => ['-o', '/dev/null', url]).flat();
  const r = await client.run(['curl', '-sS', '--max-time', '10', '-w', '%{http_code}\\n', ...outputs], { timeoutMs: 20_000 });
  const codes = r.stdout.trim().split('\n').filter(Boolean);
  if (r.code !== 0 || codes.length !== count || codes.some((c) => c !== '200')) {
    throw new BenchCommandError(`${count} requests to ${url} from ${client.label}: exit ${r.code}, status codes ${codes.join(' ') || 'none'}${r.stderr ? `: ${r.stderr.trim().slice(0, 300)}` : ''}`);
  }
}

/** Opens HAProxy in mode http for the bench-direct pods (starting nginx in their server pod if no path of the run did). */
async function openHaproxyHttp(context: CaseContext, started: Spawned[]): Promise<OpenPath> {
  const plain = context.pathContext.topology.plain;
  if (!context.paths.some((p) => p.endpoints === plain)) started.push(await startNginx(plain.serverPod, context.workDir, 'waypoint-plain'));
  const path = await haproxyHttpPath.open({ ...context.pathContext, serverPorts: [HTTP_PORT] });
  try {
    await probeHttp(plain.clientPod, path.dial(HTTP_PORT), HTTP_BODY);
  } catch (err) {
    await path.close();
    throw err;
  }
  return path;
}

export async function openWaypoint(context: CaseContext, ambit: OpenPath): Promise<WaypointSetup> {
  const { log } = context;
  const client = ambit.endpoints.clientPod;
  const started: Spawned[] = [];
  let haproxy: OpenPath | undefined;
  const close = async () => {
    await haproxy?.close().catch((err: unknown) => log(`  closing HAProxy (mode http): ${String(err)}`));
    await Promise.all(started.splice(0).map((s) => s.stop()));
    await kubectl(CONTEXT, ['delete', 'service', '-n', MESH_NAMESPACE, WAYPOINT_SERVICE, ROUTED_SERVICE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await kubectl(CONTEXT, ['delete', 'virtualservice,destinationrule', '-n', MESH_NAMESPACE, ROUTED_SERVICE, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await kubectl(CONTEXT, ['delete', GATEWAY_RESOURCE, '-n', MESH_NAMESPACE, WAYPOINT_NAME, '--ignore-not-found', '--wait=false']).catch(() => undefined);
    await kubectl(CONTEXT, ['label', 'pod', '-n', MESH_NAMESPACE, SERVER_POD, `${TARGET_LABEL_KEY}-`]).catch(() => undefined);
  };
  try {
    await kubectl(CONTEXT, ['label', 'pod', '-n', MESH_NAMESPACE, SERVER_POD, `${TARGET_LABEL_KEY}=${TARGET_LABEL_VALUE}`, '--overwrite']);
    const how = await applyWaypoint(log);
    await kubectl(CONTEXT, ['apply', '-f', '-'], { input: JSON.stringify(waypointService(MESH_NAMESPACE, HTTP_PORT)) });
    const pod = await waypointPod();
    log(`  waypoint pod ${pod.name} on ${pod.node} (${pod.ip}), container ${pod.container}`);
    const waypoint = await podProcesses(CLUSTER, MESH_NAMESPACE, selector, pod.container, `waypoint ${MESH_NAMESPACE}/${WAYPOINT_NAME} on ${pod.node}`);
    const metricsUrl = `http://${pod.ip}:${METRICS_PORT}${ZTUNNEL_METRICS_PATH}`;
    const waypointRequests = async () => sumMetric(await metricsOf(pod.place, metricsUrl), REQUEST_METRIC);
    const vip = (await kubectl(CONTEXT, ['get', 'service', '-n', MESH_NAMESPACE, WAYPOINT_SERVICE, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
    if (!vip) throw new BenchCommandError(`Service ${MESH_NAMESPACE}/${WAYPOINT_SERVICE} has no cluster IP`);
    const l4: Address = ambit.dial(HTTP_PORT);
    const viaWaypoint: Address = { host: vip, port: HTTP_PORT };

    // ztunnel learns the Service's waypoint (and the waypoint its endpoints) some time after the pod is ready.
    const first = await waypointRequests();
    await waitUntil(`requests to ${vip}:${HTTP_PORT} to be answered through the waypoint (its ${REQUEST_METRIC} to grow)`, async () => {
      await probeHttp(client, viaWaypoint, HTTP_BODY);
      return (await waypointRequests()) > first;
    }, 120_000, 1000);

    // The check the rows' names rest on: the pod IP bypasses the waypoint, the cluster IP crosses it.
    const beforeL4 = await waypointRequests();
    await sendRequests(client, l4, PATH_CHECK_REQUESTS);
    await new Promise((r) => setTimeout(r, 500));
    const countedForL4 = (await waypointRequests()) - beforeL4;
    const beforeWaypoint = await waypointRequests();
    await sendRequests(client, viaWaypoint, PATH_CHECK_REQUESTS);
    let countedForWaypoint = 0;
    await waitUntil('the waypoint to count the path check\'s requests', async () => {
      countedForWaypoint = (await waypointRequests()) - beforeWaypoint;
      return countedForWaypoint >= PATH_CHECK_REQUESTS;
    }, 5000, 200).catch(() => undefined);
    const pathCheck: PathCheckCounts = { sent: PATH_CHECK_REQUESTS, countedForL4, countedForWaypoint };
    const problem = pathCheckProblem(pathCheck);
    if (problem) throw new BenchCommandError(problem);

    // The routes row: the same server through the same waypoint, by a 90/10 VirtualService.
    let routesTarget: WaypointTarget;
    try {
      await kubectl(CONTEXT, ['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: routedObjects(MESH_NAMESPACE, HTTP_PORT) }) });
      const routedVip = (await kubectl(CONTEXT, ['get', 'service', '-n', MESH_NAMESPACE, ROUTED_SERVICE, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
      if (!routedVip) throw new BenchCommandError(`Service ${MESH_NAMESPACE}/${ROUTED_SERVICE} has no cluster IP`);
      const routed: Address = { host: routedVip, port: HTTP_PORT };
      const before = await waypointRequests();
      await waitUntil(`requests to ${routedVip}:${HTTP_PORT} to be answered through the waypoint's route`, async () => {
        await probeHttp(client, routed, HTTP_BODY);
        return (await waypointRequests()) > before;
      }, 120_000, 1000);
      routesTarget = { variant: ROUTES, client, address: routed, proxies: [waypoint, ...ambit.proxies] };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      log(`  waypoint with routes: ${message}`);
      routesTarget = { variant: ROUTES, error: `waypoint with routes: ${message}` };
    }

    let haproxyTarget: WaypointTarget;
    try {
      haproxy = await openHaproxyHttp(context, started);
      haproxyTarget = { variant: HAPROXY_HTTP, client: haproxy.endpoints.clientPod, address: haproxy.dial(HTTP_PORT), proxies: haproxy.proxies };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      log(`  HAProxy (mode http): ${message}`);
      haproxyTarget = { variant: HAPROXY_HTTP, error: `HAProxy (mode http): ${message}` };
    }
    const targets: WaypointTarget[] = [
      { variant: L4, client, address: l4, proxies: ambit.proxies },
      { variant: WAYPOINT, client, address: viaWaypoint, proxies: [waypoint, ...ambit.proxies] },
      routesTarget,
      haproxyTarget,
    ];
    const description =
      `The waypoint is ${how}; its pod ${pod.name} runs on ${pod.node}. Service ${WAYPOINT_SERVICE} (label istio.io/use-waypoint=${WAYPOINT_NAME}, port ${HTTP_PORT} appProtocol http) selects only the server pod; ` +
      `ambit L4 dials the server pod IP (${l4.host}), ambit waypoint the Service's cluster IP (${vip}), ambit waypoint+routes the cluster IP of Service ${ROUTED_SERVICE} (same pod, same waypoint) with a 90/10 VirtualService between two DestinationRule subsets`;
    return { targets, waypoint, waypointRequests, pathCheck, description, close };
  } catch (err) {
    await close();
    throw err;
  }
}
