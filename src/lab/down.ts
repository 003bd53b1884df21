import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { succeeds } from '../util/exec.js';
import { HOST_LINK_NAME } from './fabric.js';
import { removeContext, strayLabContexts } from './kubeconfig.js';
import { deleteNetns, listNetns, netnsPids } from './netns.js';
import { NETNS_PREFIX } from './plan.js';
import { requireRoot } from './preflight.js';
import { stopAllRealNodes } from './real-nodes.js';
import { terminate } from './processes.js';
import { labDir, podsDir, readState } from './state.js';

type Progress = (message: string) => void;

/**
 * Removes everything a lab made, whether or not it is healthy: processes (recorded, and any
 * process found in one of the lab's network namespaces), the namespaces with their interfaces
 * and nftables tables, the host link and route, kubeconfig contexts, and the state directory.
 */
export async function labDown(progress: Progress): Promise<void> {
  requireRoot('ambit lab down');
  let state;
  try {
    state = readState();
  } catch (err) {
    progress(String((err as Error).message));
  }
  // Real nodes first: their kubelets, containerds, shims and containers, mounts and cgroups (src/lab/node).
  let realNodeError: unknown;
  try {
    const realNodes = await stopAllRealNodes();
    if (realNodes) progress(`stopped ${realNodes} real node(s)`);
  } catch (err) {
    // The rest still goes; the error is reported once everything else is removed.
    realNodeError = err;
    progress(String((err as Error).message));
  }
  const namespaces = [...(await listNetns())].filter((n) => n.startsWith(NETNS_PREFIX));
  const pids = new Set<number>((state?.processes ?? []).map((p) => p.pid));
  for (const ns of namespaces) for (const pid of await netnsPids(ns)) pids.add(pid);
  // Pod network namespaces are mounted inside the agents' mount namespaces, where `ip netns pids`
  // on the host cannot see them: take the container processes from the agents' pod records too.
  for (const cluster of state?.plan.clusters ?? []) for (const pid of recordedPodPids(cluster.name)) pids.add(pid);
  if (pids.size) progress(`stopping ${pids.size} process(es)`);
  await terminate([...pids], 5000);
  // A second sweep catches anything a dying agent started in the meantime.
  const late = (await Promise.all(namespaces.map(netnsPids))).flat();
  if (late.length) await terminate(late, 2000);
  if (namespaces.length) progress(`deleting ${namespaces.length} network namespace(s)`);
  for (const ns of namespaces) await deleteNetns(ns);
  await succeeds('ip', ['link', 'del', HOST_LINK_NAME]);
  const clusters = new Set([...(state?.plan.clusters.map((c) => c.name) ?? []), ...(await strayLabContexts())]);
  for (const cluster of clusters) await removeContext(cluster);
  if (clusters.size) progress(`removed kubeconfig contexts: ${[...clusters].map((c) => `lab-${c}`).join(', ')}`);
  const dir = labDir();
  if (realNodeError) throw realNodeError;
  if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  progress('lab down');
}

/** PIDs of the container processes the agent of a cluster recorded (pods/<pod>/pod.json). */
function recordedPodPids(cluster: string): number[] {
  const dir = podsDir(cluster);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((entry) => {
    try {
      const record = JSON.parse(readFileSync(join(dir, entry, 'pod.json'), 'utf8')) as { pids?: unknown; containers?: Record<string, { pid?: unknown }> };
      const fromContainers = Object.values(record.containers ?? {}).map((c) => c.pid);
      return [...(Array.isArray(record.pids) ? record.pids : []), ...fromContainers].filter((pid): pid is number => Number.isInteger(pid) && (pid as number) > 1);
    } catch {
      return [];
    }
  });
}
