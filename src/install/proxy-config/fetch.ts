/**
 * Finds the ztunnel serving a node and fetches its config dump (or another admin path) from the admin endpoint, which
 * listens on 127.0.0.1 inside the pod's network namespace: through `ambit lab exec` for lab
 * clusters (the lab has no kubelet to port-forward), through `kubectl port-forward` elsewhere.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readState } from '../../lab/state.js';
import { kubectl, KubectlError } from '../kubectl.js';
import { ZTUNNEL_ADMIN_PORT, ZTUNNEL_CONFIG_DUMP_PATH, ZTUNNEL_NAME } from '../names.js';

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

const adminUrl = (path: string) => `http://127.0.0.1:${ZTUNNEL_ADMIN_PORT}${path}`;
const FETCH_TIMEOUT_MS = 10_000;

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

/** The lab cluster behind a `lab-<cluster>` context, when that lab is up on this host. */
export function labClusterOf(context: string): string | undefined {
  const match = /^lab-(.+)$/.exec(context);
  if (!match) return undefined;
  const state = readState();
  return state?.plan.clusters.some((c) => c.name === match[1]) ? match[1] : undefined;
}

function capture(file: string, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 124 : 1), stdout, stderr });
    });
  });
}

const ambitBin = fileURLToPath(new URL('../../../bin/ambit.js', import.meta.url));

async function fetchThroughLab(cluster: string, pod: ZtunnelPod, path: string): Promise<string> {
  const args = [ambitBin, 'lab', 'exec', '--cluster', cluster, '-n', pod.namespace, pod.name, '--', 'curl', '-sS', '--max-time', String(FETCH_TIMEOUT_MS / 1000), adminUrl(path)];
  const result = await capture(process.execPath, args, FETCH_TIMEOUT_MS + 15_000);
  if (result.code !== 0) {
    const why = result.stderr.trim().replace(/^ambit: /, '') || `exit code ${result.code}`;
    throw new ProxyConfigError(`cannot reach the admin endpoint of ztunnel ${pod.name} on node ${pod.node} (${adminUrl(path)} in the pod): ${why}`);
  }
  return result.stdout;
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

/** The raw config_dump body of `pod`. */
export function fetchConfigDump(context: string, pod: ZtunnelPod): Promise<string> {
  return fetchAdminPath(context, pod, ZTUNNEL_CONFIG_DUMP_PATH);
}

/** The raw body of an admin endpoint path (`/config_dump`, `/debug/resources`) of `pod`. */
export async function fetchAdminPath(context: string, pod: ZtunnelPod, path: string): Promise<string> {
  const cluster = labClusterOf(context);
  try {
    return cluster ? await fetchThroughLab(cluster, pod, path) : await fetchThroughPortForward(context, pod, path);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (!cluster && context.startsWith('lab-')) {
      throw new ProxyConfigError(`${message} (no lab on this host has a cluster named "${context.slice(4)}"; lab clusters are read through the lab state of the user who ran \`ambit lab up\`)`);
    }
    if (err instanceof KubectlError) throw new ProxyConfigError(message);
    throw err;
  }
}
