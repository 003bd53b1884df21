import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { podsDir } from '../src/lab/state.js';

/** PID of a running container of a lab pod, from the node agent's record of the pod (pods/<ns>_<name>_<uid>/pod.json). */
export function containerPid(cluster: string, namespace: string, podName: string, container: string): number | undefined {
  let entries: string[];
  try {
    entries = readdirSync(podsDir(cluster));
  } catch {
    return undefined;
  }
  const entry = entries.find((name) => name.startsWith(`${namespace}_${podName}_`));
  if (!entry) return undefined;
  try {
    const record = JSON.parse(readFileSync(join(podsDir(cluster), entry, 'pod.json'), 'utf8')) as { containers?: Record<string, { pid?: number }> };
    return record.containers?.[container]?.pid;
  } catch {
    return undefined;
  }
}
