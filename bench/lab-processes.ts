import { BenchCommandError } from './exec.js';
import { podsWithLabel } from './lab-kube.js';
import { containerPid } from './lab-pods.js';
import type { ProcessGroup } from './process-cost.js';

/**
 * The container processes of the pods a label selects in a lab cluster, for CPU and memory. Pod
 * names are read now; PIDs on every use (a restarted container has a new one).
 */
export async function podProcesses(cluster: string, namespace: string, selector: string, container: string, label: string): Promise<ProcessGroup> {
  const pods = (await podsWithLabel(`lab-${cluster}`, namespace, selector)).filter((p) => p.phase === 'Running');
  if (!pods.length) throw new BenchCommandError(`no running pod ${selector} in ${cluster}/${namespace}`);
  const group: ProcessGroup = { label, pids: () => pods.flatMap((p) => containerPid(cluster, namespace, p.name, container) ?? []) };
  if (!group.pids().length) throw new BenchCommandError(`no process found for the ${container} container of ${pods.map((p) => p.name).join(', ')} in ${cluster}`);
  return group;
}
