import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { LabPlan } from './plan.js';
import type { Topology } from './topology.js';

export interface LabProcess {
  /** Which lab component this is, e.g. "cluster1/kube-apiserver". */
  name: string;
  pid: number;
  netns: string;
}

export interface LabState {
  topologyFile: string;
  topology: Topology;
  plan: LabPlan;
  createdAt: string;
  processes: LabProcess[];
}

export function labDir(): string {
  return process.env.AMBIT_LAB_DIR ?? join(homedir(), '.local', 'state', 'ambit', 'lab');
}

export const statePath = (dir = labDir()) => join(dir, 'state.json');
export const clusterDir = (cluster: string, dir = labDir()) => join(dir, 'clusters', cluster);
export const podsDir = (cluster: string, dir = labDir()) => join(clusterDir(cluster, dir), 'pods');

export function readState(dir = labDir()): LabState | undefined {
  const file = statePath(dir);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LabState;
  } catch (err) {
    throw new Error(`lab state ${file} is unreadable (${String(err)}); run \`ambit lab down\` to clean up`);
  }
}

export function writeState(state: LabState, dir = labDir()): void {
  const file = statePath(dir);
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2));
  renameSync(tmp, file);
}

/** Writes a file atomically (write to a temporary name, then rename). */
export function writeFileAtomic(file: string, data: string | Buffer, mode?: number): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, data, mode === undefined ? undefined : { mode });
  renameSync(tmp, file);
}
