/**
 * `ambit explain` against a cluster: finds the source pod and the ztunnel on its node, fetches that
 * ztunnel's resources from its admin endpoint, and explains the connection from them.
 */
import { kubectl, KubectlError, resolveContext } from '../install/kubectl.js';
import { fetchAdminPath, fetchConfigDump, locatePod, locateZtunnel, type AdminFetcher } from '../install/proxy-config/fetch.js';
import { waypointRoutes } from '../install/proxy-config/routes.js';
import { explainHttpRoute, parseHttpRequest, type HttpRequestSpec } from './http-route.js';
import type { Explanation } from './types.js';
import { RESOURCES_PATH } from '../ztunnel/admin/resources.js';
import { explainConnection, type SourcePod } from './explain.js';
import { renderExplanation } from './render.js';
import { stateFromResources } from './state-from-resources.js';
import { ExplainArgumentError, parseOutputFormat, parseSourcePod, parseTarget, type SourcePodName } from './target.js';

export interface ExplainOptions {
  context?: string;
  from: string;
  to: string;
  output: string;
  /** Namespace of the ztunnel pods. */
  ztunnelNamespace: string;
  clusterDomain: string;
  /** How the ztunnel's admin endpoint is reached (default `kubectl port-forward`). */
  fetchAdmin?: AdminFetcher;
  /** `--http "<METHOD> <path>"`: also explain the mesh route this request follows at the waypoint. */
  http?: string;
  /** `--header "<name>: <value>"` for `--http`. */
  headers?: string[];
}

interface PodObject {
  spec?: { nodeName?: string };
  status?: { phase?: string; podIP?: string };
}

async function readSourcePod(context: string, pod: SourcePodName): Promise<SourcePod> {
  let stdout: string;
  try {
    ({ stdout } = await kubectl(['--context', context, '-n', pod.namespace, 'get', 'pod', pod.name, '-o', 'json']));
  } catch (err) {
    if (err instanceof KubectlError && /NotFound|not found/.test(err.message)) {
      throw new ExplainArgumentError(`pod ${pod.namespace}/${pod.name} not found in context ${context}`);
    }
    throw err;
  }
  const object = JSON.parse(stdout) as PodObject;
  const node = object.spec?.nodeName;
  if (!node) throw new ExplainArgumentError(`pod ${pod.namespace}/${pod.name} is not scheduled to a node yet (phase ${object.status?.phase ?? 'Unknown'}): no ztunnel serves it`);
  return { ...pod, node, ...(object.status?.podIP ? { ip: object.status.podIP } : {}) };
}

/** Adds the HTTP route the request follows at the waypoint on the path (read from the waypoint pod's config dump), or says why there is none. */
async function explainHttp(context: string, explanation: Explanation, options: ExplainOptions, request: HttpRequestSpec): Promise<void> {
  const waypoint = explanation.paths.find((p) => p.waypoint)?.waypoint;
  if (!waypoint) {
    explanation.notes.push('--http: no waypoint on the path, so no HTTP route applies (ztunnel works at L4)');
    return;
  }
  const [namespace, name] = waypoint.pod.split('/') as [string, string];
  const service = explanation.destination.service ?? explanation.paths.find((p) => p.waypoint)?.endpoint ?? '';
  const hostname = service.slice(service.indexOf('/') + 1);
  try {
    const pod = await locatePod(context, namespace, name);
    const routes = waypointRoutes(await fetchConfigDump(context, pod, options.fetchAdmin), `pod ${waypoint.pod}`);
    explanation.http = explainHttpRoute(routes, waypoint.pod, service, request.headers.host ?? hostname, explanation.destination.port, request);
  } catch (err) {
    explanation.notes.push(`--http: cannot read the routes of waypoint ${waypoint.pod}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The report for `ambit explain`, as text or JSON. */
export async function runExplain(options: ExplainOptions): Promise<string> {
  const from = parseSourcePod(options.from);
  const target = parseTarget(options.to);
  const format = parseOutputFormat(options.output);
  const context = await resolveContext(options.context);
  const source = await readSourcePod(context, from);
  const ztunnel = await locateZtunnel(context, options.ztunnelNamespace, source.node);
  const where = `ztunnel ${ztunnel.name} on node ${ztunnel.node}`;
  const { state, refused } = stateFromResources(await fetchAdminPath(context, ztunnel, RESOURCES_PATH, options.fetchAdmin), where);
  const request = options.http === undefined ? undefined : parseHttpRequest(options.http, options.headers ?? []);
  const explanation = explainConnection({ state, source, target, clusterDomain: options.clusterDomain });
  if (request) await explainHttp(context, explanation, options, request);
  explanation.notes.push(`worked out from the state of ${where} (cluster ${state.clusterId || '(none)'}, network ${state.network || '(none)'})`);
  for (const problem of refused) explanation.notes.push(`ztunnel refuses some of its resources, as it would: ${problem}`);
  return format === 'json' ? JSON.stringify(explanation, null, 2) : renderExplanation(explanation);
}
