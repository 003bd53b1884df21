import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { podsDir, readState } from '../../src/lab/state.js';
import { kubectl, labExec, repoRoot, sh, type Result } from './lab.js';

export interface PodInfo {
  name: string;
  uid: string;
  node: string;
  ip: string;
  restarts: number;
  ready: boolean;
}

export async function pods(context: string, namespace: string, selector?: string): Promise<PodInfo[]> {
  const args = ['get', 'pods', '-n', namespace, '-o', 'json', ...(selector ? ['-l', selector] : [])];
  const list = JSON.parse(await kubectl(context, args)) as {
    items: Array<{ metadata: { name: string; uid: string; deletionTimestamp?: string }; spec: { nodeName?: string }; status: { podIP?: string; containerStatuses?: Array<{ restartCount: number }>; conditions?: Array<{ type: string; status: string }> } }>;
  };
  return list.items
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => ({
      name: p.metadata.name,
      uid: p.metadata.uid,
      node: p.spec.nodeName ?? '',
      ip: p.status.podIP ?? '',
      restarts: (p.status.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0),
      ready: (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    }));
}

/** PID of a running container of a lab pod (from the agent's pod record). */
export function containerPid(cluster: string, namespace: string, podName: string, container: string): number | undefined {
  const dir = podsDir(cluster);
  const entry = readdirSync(dir).find((name) => name.startsWith(`${namespace}_${podName}_`));
  if (!entry) return undefined;
  const record = JSON.parse(readFileSync(join(dir, entry, 'pod.json'), 'utf8')) as { containers?: Record<string, { pid?: number }> };
  return record.containers?.[container]?.pid;
}

export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return Math.round((kb / 1024) * 10) / 10;
}

export function nodeNetns(cluster: string, node: string): string {
  const state = readState();
  const plan = state?.plan as unknown as { clusters: Array<{ name: string; nodes: Array<{ name: string; netns: string; ip: string }> }> } | undefined;
  const found = plan?.clusters.find((c) => c.name === cluster)?.nodes.find((n) => n.name === node);
  if (!found) throw new Error(`no node ${node} in cluster ${cluster} of the lab plan`);
  return found.netns;
}

export function nodeIp(cluster: string, node: string): string {
  const state = readState();
  const plan = state?.plan as unknown as { clusters: Array<{ name: string; nodes: Array<{ name: string; ip: string }> }> } | undefined;
  const found = plan?.clusters.find((c) => c.name === cluster)?.nodes.find((n) => n.name === node);
  if (!found) throw new Error(`no node ${node} in cluster ${cluster} of the lab plan`);
  return found.ip;
}

/** Runs a command in a node's network namespace (what a hostNetwork process sees). */
export function inNode(cluster: string, node: string, argv: string[], timeoutMs = 30_000): Promise<Result> {
  return sh('ip', ['netns', 'exec', nodeNetns(cluster, node), ...argv], { timeoutMs });
}

export interface ProbeResult {
  handshake: string;
  statuses: Array<number | string>;
}

/**
 * Runs a command in a lab pod's network namespace only (the host's files and programs, the pod's
 * addresses: connections it opens come from the pod IP).
 */
export function inPodNetwork(cluster: string, namespace: string, podName: string, container: string, argv: string[], timeoutMs = 30_000): Promise<Result> {
  const pid = containerPid(cluster, namespace, podName, container);
  if (!pid) throw new Error(`no running container ${container} in pod ${namespace}/${podName} of ${cluster}`);
  return sh('nsenter', ['-t', String(pid), '-n', '--', ...argv], { timeoutMs });
}

/** Runs a script of the repository (`node --import tsx <script> '<json request>'`) and parses the JSON line it prints last. */
export async function runJsonScript<T>(run: (argv: string[]) => Promise<Result>, script: string, request: object): Promise<T> {
  const r = await run([process.execPath, '--import', 'tsx', `${repoRoot}${script}`, JSON.stringify(request)]);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${script} printed ${JSON.stringify(r.stdout.slice(0, 2000))} ${r.stderr.slice(0, 2000)}`);
  }
}

export function hboneProbe(cluster: string, node: string, request: object): Promise<ProbeResult> {
  return runJsonScript<ProbeResult>((argv) => inNode(cluster, node, argv), 'test/helpers/hbone-probe.ts', request);
}

export async function ztunnelPodOn(context: string, node: string): Promise<string> {
  const out = await kubectl(context, ['get', 'pods', '-n', 'istio-system', '-l', 'app=ztunnel', '--field-selector', `spec.nodeName=${node}`, '-o', 'jsonpath={.items[0].metadata.name}']);
  if (!out.trim()) throw new Error(`no ztunnel pod on ${node}`);
  return out.trim();
}

export async function ztunnelMetrics(cluster: string, node: string): Promise<string> {
  const r = await inNode(cluster, node, ['curl', '-sS', '--max-time', '5', `http://${nodeIp(cluster, node)}:15020/metrics`]);
  if (r.code !== 0) throw new Error(`metrics of ztunnel on ${node}: ${r.stderr}`);
  return r.stdout;
}

export async function curlFrom(cluster: string, namespace: string, target: string, url: string, maxTime = 5): Promise<Result> {
  return labExec(cluster, namespace, target, ['curl', '-sS', '--max-time', String(maxTime), url]);
}

/** Every process the lab started and recorded: control planes, agents, and the pods' containers. */
export function recordedLabPids(): number[] {
  const state = readState();
  const pids = (state?.processes ?? []).map((p) => p.pid);
  for (const cluster of state?.plan.clusters ?? []) {
    const dir = podsDir(cluster.name);
    let entries: string[] = [];
    try {
      entries = readdirSync(dir);
    } catch {
      continue;
    }
    for (const entry of entries) {
      try {
        const record = JSON.parse(readFileSync(join(dir, entry, 'pod.json'), 'utf8')) as { containers?: Record<string, { pid?: number }> };
        for (const c of Object.values(record.containers ?? {})) if (c.pid) pids.push(c.pid);
      } catch {
        /* a pod being torn down */
      }
    }
  }
  return pids;
}
