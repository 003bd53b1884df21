/**
 * Lab clusters by kubeconfig context, for the two-network cases: kubectl and the ambit CLI on the
 * host, the lab plan's nodes, and running lab pods as places to run programs in (the one-cluster
 * topology in lab-topology.ts has its own, cluster1-only versions of these).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClusterPlan } from '../src/lab/plan.js';
import { readState } from '../src/lab/state.js';
import { BenchCommandError, processNamespacesPlace, runCommand, waitUntil, type Place, type RunResult } from './exec.js';
import { containerPid } from './lab-pods.js';

export const repoRoot = fileURLToPath(new URL('../', import.meta.url));

export type Log = (line: string) => void;

export async function hostCommand(argv: string[], timeoutMs = 60_000, input?: string): Promise<RunResult> {
  const r = await runCommand(argv, { timeoutMs, ...(input !== undefined ? { input } : {}) });
  if (r.code !== 0) throw new BenchCommandError(`\`${argv.join(' ')}\` exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 2000)}`);
  return r;
}

export const ambitCli = (args: string[], timeoutMs = 300_000) => hostCommand([process.execPath, join(repoRoot, 'bin/ambit.js'), ...args], timeoutMs);

export async function kubectl(context: string, args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await runCommand(['kubectl', '--context', context, ...args], { timeoutMs: options.timeoutMs ?? 60_000, ...(options.input !== undefined ? { input: options.input } : {}) });
  if (r.code !== 0) throw new BenchCommandError(`kubectl --context ${context} ${args.join(' ')}: ${(r.stderr || r.stdout).trim().slice(0, 2000)}`);
  return r.stdout;
}

export async function kubectlJson<T>(context: string, args: string[]): Promise<T> {
  return JSON.parse(await kubectl(context, [...args, '-o', 'json'])) as T;
}

/** `kubectl create …` that leaves an object someone already created alone. */
export async function kubectlCreateIfMissing(context: string, args: string[]): Promise<void> {
  const r = await runCommand(['kubectl', '--context', context, 'create', ...args], { timeoutMs: 60_000 });
  if (r.code !== 0 && !/AlreadyExists|already exists/.test(r.stderr)) throw new BenchCommandError(`kubectl --context ${context} create ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** The cluster as the lab planned it (nodes, their namespaces and addresses). */
export function clusterPlan(cluster: string): ClusterPlan {
  const plan = readState()?.plan.clusters.find((c) => c.name === cluster);
  if (!plan) throw new BenchCommandError(`cluster ${cluster} is not in the lab plan (is the lab up?)`);
  return plan;
}

/** Newest modification time under a directory (to know whether dist/ is older than src/). */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

/** The lab runs the compiled CLI (dist/) and needs the host's packages: both brought up to date. */
export async function prepareHost(log: Log): Promise<void> {
  const main = join(repoRoot, 'dist/cli/main.js');
  if (!existsSync(main) || statSync(main).mtimeMs < newestMtime(join(repoRoot, 'src'))) {
    log('building dist/ (the lab runs the compiled CLI)');
    await hostCommand([process.execPath, join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', join(repoRoot, 'tsconfig.json')], 600_000);
  }
  log('host dependencies of the lab (scripts/install-host-deps.sh)');
  await hostCommand(['bash', join(repoRoot, 'scripts/install-host-deps.sh')], 900_000);
}

export interface PodSummary {
  name: string;
  node: string;
  ip: string;
  phase: string;
  ready: boolean;
}

interface PodJson {
  metadata: { name: string; deletionTimestamp?: string };
  spec: { nodeName?: string };
  status: { phase?: string; podIP?: string; conditions?: Array<{ type: string; status: string }> };
}

const summarize = (p: PodJson): PodSummary => ({
  name: p.metadata.name,
  node: p.spec.nodeName ?? '',
  ip: p.status.podIP ?? '',
  phase: p.status.phase ?? '',
  ready: (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
});

export async function podsWithLabel(context: string, namespace: string, selector: string): Promise<PodSummary[]> {
  const list = await kubectlJson<{ items: PodJson[] }>(context, ['get', 'pods', '-n', namespace, '-l', selector]);
  return list.items.filter((p) => !p.metadata.deletionTimestamp).map(summarize);
}

export interface RunningPod extends PodSummary {
  /** PID of the container's process: its namespaces are the pod's. */
  pid: number;
  place: Place;
}

/** Waits until a lab pod runs and has an address; `container` names the container to enter. */
export async function waitForRunningPod(cluster: string, namespace: string, name: string, container: string, timeoutMs = 120_000): Promise<RunningPod> {
  let found: RunningPod | undefined;
  await waitUntil(`pod ${namespace}/${name} in ${cluster} to run`, async () => {
    const pod = summarize(await kubectlJson<PodJson>(`lab-${cluster}`, ['get', 'pod', '-n', namespace, name]));
    const pid = containerPid(cluster, namespace, name, container);
    if (pod.phase !== 'Running' || !pod.ip || !pid) return false;
    found = { ...pod, pid, place: processNamespacesPlace(`pod ${namespace}/${name} (${cluster})`, pid) };
    return true;
  }, timeoutMs, 500);
  return found!;
}
