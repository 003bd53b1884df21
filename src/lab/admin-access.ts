/**
 * How `ambit proxy-config` and `ambit explain` reach a ztunnel's admin port on a lab cluster: the
 * agent's nodes have no kubelet to port-forward, so the request runs inside the pod through `ambit
 * lab exec`; real lab nodes (nodeRuntime kubelet) are port-forwarded to as any cluster.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { adminUrl, FETCH_TIMEOUT_MS, ProxyConfigError, type AdminFetcher, type ZtunnelPod } from '../install/proxy-config/fetch.js';
import { readState } from './state.js';

/** The lab cluster behind a `lab-<cluster>` context, when that lab is up on this host. */
export function labClusterOf(context: string): string | undefined {
  const match = /^lab-(.+)$/.exec(context);
  if (!match) return undefined;
  const state = readState();
  return state?.plan.clusters.some((c) => c.name === match[1]) ? match[1] : undefined;
}

/** Agent-run lab clusters through `ambit lab exec`, every other context (real lab nodes too) through `otherwise`. */
export function labAdminFetcher(otherwise: AdminFetcher): AdminFetcher {
  return async (context, pod, path) => {
    const cluster = labClusterOf(context);
    if (cluster && readState()?.plan.clusters.find((c) => c.name === cluster)?.nodeRuntime !== 'kubelet') return fetchThroughLab(cluster, pod, path);
    try {
      return await otherwise(context, pod, path);
    } catch (err) {
      if (!context.startsWith('lab-')) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new ProxyConfigError(`${message} (no lab on this host has a cluster named "${context.slice(4)}"; lab clusters are read through the lab state of the user who ran \`ambit lab up\`)`);
    }
  };
}

const ambitBin = fileURLToPath(new URL('../../bin/ambit.js', import.meta.url));

async function fetchThroughLab(cluster: string, pod: ZtunnelPod, path: string): Promise<string> {
  const args = [ambitBin, 'lab', 'exec', '--cluster', cluster, '-n', pod.namespace, pod.name, '--', 'curl', '-sS', '--max-time', String(FETCH_TIMEOUT_MS / 1000), adminUrl(path)];
  const result = await capture(process.execPath, args, FETCH_TIMEOUT_MS + 15_000);
  if (result.code !== 0) {
    const why = result.stderr.trim().replace(/^ambit: /, '') || `exit code ${result.code}`;
    throw new ProxyConfigError(`cannot reach the admin endpoint of ztunnel ${pod.name} on node ${pod.node} (${adminUrl(path)} in the pod): ${why}`);
  }
  return result.stdout;
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
