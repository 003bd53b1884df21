/**
 * Finds the ztunnel serving a node and fetches its config dump (or another admin path) from the
 * admin endpoint, which listens on 127.0.0.1 inside the pod's network namespace: through
 * `kubectl port-forward` by default, or through whatever the caller passes (the CLI passes the
 * lab's way in for lab clusters, which have no kubelet to port-forward).
 */
import { spawn } from 'node:child_process';
import { kubectl, KubectlError } from '../kubectl.js';
import { ZTUNNEL_ADMIN_PORT, ZTUNNEL_CONFIG_DUMP_PATH, ZTUNNEL_NAME } from '../../api/names.js';

export class ProxyConfigError extends Error {}

export interface ZtunnelPod {
  name: string;
  namespace: string;
  node: string;
  phase: string;
}

interface PodItem {
  metadata?: { name?: string; creationTimestamp?: string; deletionTimestamp?: string };
  spec?: { nodeName?: string };
  status?: { phase?: string };
}

/** Reads one admin path of a ztunnel pod, resolving to the body or rejecting with a ProxyConfigError. */
export type AdminFetcher = (context: string, pod: ZtunnelPod, path: string) => Promise<string>;

/** The admin URL inside the pod's network namespace. */
export const adminUrl = (path: string) => `http://127.0.0.1:${ZTUNNEL_ADMIN_PORT}${path}`;
export const FETCH_TIMEOUT_MS = 10_000;

/** Resolves `target` (a ztunnel pod name, or a node name) to the ztunnel pod to ask. */
export async function locateZtunnel(context: string, namespace: string, target: string): Promise<ZtunnelPod> {
  const { stdout } = await kubectl(['--context', context, '-n', namespace, 'get', 'pods', '-l', `app=${ZTUNNEL_NAME}`, '-o', 'json']);
  const pods = ((JSON.parse(stdout) as { items?: PodItem[] }).items ?? [])
    .filter((p) => !p.metadata?.deletionTimestamp)
    .map((p) => ({
      name: p.metadata?.name ?? '',
      namespace,
      node: p.spec?.nodeName ?? '',
      phase: p.status?.phase ?? 'Unknown',
      created: p.metadata?.creationTimestamp ?? '',
    }));
  const byName = pods.find((p) => p.name === target);
  const onNode = pods.filter((p) => p.node === target).sort((a, b) => Number(b.phase === 'Running') - Number(a.phase === 'Running') || b.created.localeCompare(a.created));
  const found = byName ?? onNode[0];
  if (found) {
    const { created: _created, ...pod } = found;
    if (pod.phase !== 'Running') throw new ProxyConfigError(`ztunnel pod ${pod.name} on node ${pod.node || '(unscheduled)'} is ${pod.phase}, not Running; see \`kubectl --context ${context} -n ${namespace} describe pod ${pod.name}\``);
    return pod;
  }
  if (!pods.length) throw new ProxyConfigError(`no ztunnel pods in namespace ${namespace} of context ${context}; is ambit installed (\`ambit install --context ${context}\`)?`);
  const listing = pods.map((p) => `${p.name} on ${p.node || '(unscheduled)'}`).join(', ');
  const nodeExists = await kubectl(['--context', context, 'get', 'node', target, '-o', 'name']).then(
    () => true,
    () => false,
  );
  if (nodeExists) throw new ProxyConfigError(`no ztunnel runs on node ${target} (ztunnel pods: ${listing})`);
  throw new ProxyConfigError(`"${target}" is neither a node nor a ztunnel pod in namespace ${namespace}; ztunnel pods: ${listing}`);
}

/** Starts `kubectl port-forward` to the admin port on a free local port; resolves once it forwards. */
function portForward(context: string, pod: ZtunnelPod): Promise<{ port: number; stop: () => void }> {
  return new Promise((resolve, reject) => {
    const child = spawn('kubectl', ['--context', context, '-n', pod.namespace, 'port-forward', `pod/${pod.name}`, `:${ZTUNNEL_ADMIN_PORT}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let settled = false;
    const stop = () => child.kill('SIGTERM');
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      stop();
      reject(new ProxyConfigError(`cannot port-forward to ztunnel ${pod.name} on node ${pod.node}: ${message}`));
    };
    const timer = setTimeout(() => fail('kubectl port-forward did not start within 15s'), 15_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const match = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(chunk);
      if (match && !settled) {
        settled = true;
        clearTimeout(timer);
        resolve({ port: Number(match[1]), stop });
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', (err: NodeJS.ErrnoException) => fail(err.code === 'ENOENT' ? 'kubectl was not found on PATH' : err.message));
    child.on('close', (code) => {
      clearTimeout(timer);
      fail(stderr.trim() || `kubectl port-forward exited with code ${code}`);
    });
  });
}

async function fetchThroughPortForward(context: string, pod: ZtunnelPod, path: string): Promise<string> {
  const forward = await portForward(context, pod);
  try {
    const response = await fetch(`http://127.0.0.1:${forward.port}${path}`, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    const body = await response.text();
    if (!response.ok) throw new ProxyConfigError(`ztunnel ${pod.name} answered ${path} with HTTP ${response.status}: ${body.trim().slice(0, 200)}`);
    return body;
  } catch (err) {
    if (err instanceof ProxyConfigError) throw err;
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    throw new ProxyConfigError(`cannot reach the admin endpoint of ztunnel ${pod.name} on node ${pod.node} (${adminUrl(path)} in the pod): ${cause ?? (err as Error).message}`);
  } finally {
    forward.stop();
  }
}

/** Through `kubectl port-forward` to the admin port (any cluster whose nodes run a kubelet). */
export const portForwardFetcher: AdminFetcher = async (context, pod, path) => {
  try {
    return await fetchThroughPortForward(context, pod, path);
  } catch (err) {
    if (err instanceof KubectlError) throw new ProxyConfigError(err.message);
    throw err;
  }
};

/** The raw config_dump body of `pod`. */
export function fetchConfigDump(context: string, pod: ZtunnelPod, via: AdminFetcher = portForwardFetcher): Promise<string> {
  return via(context, pod, ZTUNNEL_CONFIG_DUMP_PATH);
}

/** The raw body of an admin endpoint path (`/config_dump`, `/debug/resources`) of `pod`. */
export function fetchAdminPath(context: string, pod: ZtunnelPod, path: string, via: AdminFetcher = portForwardFetcher): Promise<string> {
  return via(context, pod, path);
}

/** A proxy pod by name (a waypoint), to read its admin endpoint; it must be Running. */
export async function locatePod(context: string, namespace: string, name: string): Promise<ZtunnelPod> {
  let item: PodItem;
  try {
    item = JSON.parse((await kubectl(['--context', context, '-n', namespace, 'get', 'pod', name, '-o', 'json'])).stdout) as PodItem;
  } catch (err) {
    if (err instanceof KubectlError) throw new ProxyConfigError(`no pod ${name} in namespace ${namespace} of context ${context} (${err.message})`);
    throw err;
  }
  const pod = { name, namespace, node: item.spec?.nodeName ?? '', phase: item.status?.phase ?? 'Unknown' };
  if (pod.phase !== 'Running') throw new ProxyConfigError(`pod ${namespace}/${name} is ${pod.phase}, not Running`);
  return pod;
}
