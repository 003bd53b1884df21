// Starts and stops a real lab node (its containerd and kubelet), and finds whatever of it is left.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, succeeds } from '../../util/exec.js';
import { findNodeBinaries, type NodeBinaries } from '../k8s-binaries.js';
import { isAlive, sleep, terminate } from '../processes.js';
import { writeFileAtomic } from '../state.js';
import { cgroupExists, cgroupPids, ensureCgroup, removeCgroupTree, setFrozen } from './cgroups.js';
import { cniConfig, CNI_NETWORK_NAME } from './cni-config.js';
import { containerdConfig } from './containerd-config.js';
import { importImageArchive } from './images.js';
import { kubeletArgv, kubeletConfig } from './kubelet-config.js';
import { containerdLauncher, KUBELET_SYSCTLS, kubeletLauncher, RUNTIME_CGROUP } from './launch.js';
import { pauseImageArchive } from './oci-image.js';
import { LAB_PAUSE_IMAGE, nodePaths, type RealNodeSpec } from './spec.js';

/** What a started node wrote down (node.json), so that stop works from the state directory alone. */
export interface NodeRecord {
  name: string;
  containerdPid: number;
  kubeletPid: number;
  /** When kubelet was started (ms since the epoch). */
  startedKubeletAt: number;
  /** Inode of the node's mount namespace: every process still in it is the node's. */
  mountNs?: string;
}

export class RealNodeError extends Error {}

function spawnLauncher(script: string, logFile: string, env: NodeJS.ProcessEnv): number {
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn('/bin/sh', ['-c', script], { detached: true, stdio: ['ignore', fd, fd], env });
    if (child.pid === undefined) throw new RealNodeError(`could not start ${script.slice(0, 60)}`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function mountNsOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/**
 * Writes the node's configuration, starts its containerd (imports the pause image into it) and its
 * kubelet. Returns once both run; the Node becomes Ready by kubelet's own doing.
 */
export async function startRealNode(spec: RealNodeSpec, bins: NodeBinaries = findNodeBinaries()): Promise<NodeRecord> {
  if (!existsSync(`/run/netns/${spec.netns}`)) throw new RealNodeError(`network namespace ${spec.netns} does not exist`);
  if (existsSync(nodePaths(spec.stateDir).record)) throw new RealNodeError(`node ${spec.name} already has state in ${spec.stateDir}; stop it first`);
  const paths = nodePaths(spec.stateDir);
  for (const dir of [paths.containerdRoot, paths.containerdState, paths.runcRoot, paths.cniConfDir, paths.cniDataDir, paths.cniCache, paths.kubeletRoot, paths.varLog, paths.sysctlDir, paths.tmp, paths.logs]) {
    mkdirSync(dir, { recursive: true });
  }
  // The mount point for the node's own CNI cache (libcni writes /var/lib/cni, not configurable in containerd 1.6).
  mkdirSync('/var/lib/cni', { recursive: true });
  writeFileAtomic(paths.containerdConfig, containerdConfig(spec, paths, bins));
  writeFileAtomic(join(paths.cniConfDir, `10-${CNI_NETWORK_NAME}.conflist`), cniConfig(spec, paths));
  writeFileAtomic(paths.kubeletConfig, kubeletConfig(spec, paths));
  writeFileAtomic(paths.resolvConf, 'nameserver 127.0.0.1\n');
  for (const [key, value] of Object.entries(KUBELET_SYSCTLS)) writeFileAtomic(join(paths.sysctlDir, key.replace(/\//g, '.')), `${value}\n`);
  ensureCgroup(`${spec.name}/${RUNTIME_CGROUP}`);

  const env = { PATH: `${[...new Set([bins.shim, bins.runc, bins.containerd].map((b) => b.slice(0, b.lastIndexOf('/'))))].join(':')}:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: spec.stateDir };
  const containerdLog = join(paths.logs, 'containerd.log');
  const containerdPid = spawnLauncher(containerdLauncher(spec, paths, bins.containerd), containerdLog, env);
  const record: NodeRecord = { name: spec.name, containerdPid, kubeletPid: 0, startedKubeletAt: 0 };
  writeFileAtomic(paths.record, JSON.stringify(record));
  await waitForContainerd(paths.containerdSocket, containerdPid, containerdLog);
  record.mountNs = mountNsOf(containerdPid);
  if (record.mountNs === mountNsOf(process.pid)) throw new RealNodeError(`containerd of ${spec.name} runs in the host's mount namespace`);
  writeFileAtomic(paths.record, JSON.stringify(record));

  const pauseArchive = join(paths.tmp, 'pause.oci.tar');
  writeFileSync(pauseArchive, pauseImageArchive(spec.sandboxImage ?? LAB_PAUSE_IMAGE, bins.pause));
  await importImageArchive(spec, pauseArchive);
  rmSync(pauseArchive);

  const kubeletLog = join(paths.logs, 'kubelet.log');
  record.startedKubeletAt = Date.now();
  record.kubeletPid = spawnLauncher(kubeletLauncher(spec, containerdPid, kubeletArgv(spec, paths, bins)), kubeletLog, env);
  writeFileAtomic(paths.record, JSON.stringify(record));
  await sleep(300);
  if (!isAlive(record.kubeletPid)) throw new RealNodeError(`kubelet of ${spec.name} exited at once:\n${tail(kubeletLog)}`);
  return record;
}

async function waitForContainerd(socket: string, pid: number, log: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) throw new RealNodeError(`containerd exited:\n${tail(log)}`);
    if (existsSync(socket) && (await succeeds('ctr', ['--address', socket, 'version']))) return;
    await sleep(100);
  }
  throw new RealNodeError(`containerd did not answer on ${socket} within 20 s:\n${tail(log)}`);
}

export function readNodeRecord(stateDir: string): NodeRecord | undefined {
  try {
    return JSON.parse(readFileSync(nodePaths(stateDir).record, 'utf8')) as NodeRecord;
  } catch {
    return undefined;
  }
}

/** PIDs of processes whose mount namespace is `ns` (e.g. one that left the node's cgroup). */
function pidsInMountNs(ns: string | undefined): number[] {
  // Never the host's own namespace (that would be every process of the host).
  if (!ns || ns === mountNsOf(process.pid) || ns === mountNsOf(1)) return [];
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => pid !== process.pid && mountNsOf(pid) === ns);
}

/** Everything of the node that is still alive: processes in its cgroups or its mount namespace. */
export function nodePids(spec: Pick<RealNodeSpec, 'name' | 'stateDir'>): number[] {
  const record = readNodeRecord(spec.stateDir);
  const recorded = [record?.containerdPid, record?.kubeletPid].filter((p): p is number => Boolean(p) && isAlive(p!));
  return [...new Set([...cgroupPids(spec.name), ...pidsInMountNs(record?.mountNs), ...recorded])];
}

/**
 * Stops the node and removes all of it, whatever state it is in (also after kill -9 of any of its
 * processes): kubelet gets SIGTERM, then every process in the node's cgroups and mount namespace
 * is frozen and killed (containers, shims, containerd); the mount namespace dies with them and takes
 * every mount of the node along; then its cgroups and state directory go.
 */
export async function stopRealNode(spec: Pick<RealNodeSpec, 'name' | 'stateDir'>): Promise<void> {
  const record = readNodeRecord(spec.stateDir);
  if (record?.kubeletPid) await terminate([record.kubeletPid], 5000);
  const killed = new Set<number>();
  for (let round = 0; round < 50; round++) {
    const pids = nodePids(spec);
    if (!pids.length) break;
    for (const pid of pids) killed.add(pid);
    setFrozen(spec.name, true);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    setFrozen(spec.name, false);
    await sleep(100);
  }
  const still = nodePids(spec);
  if (still.length) throw new RealNodeError(`node ${spec.name}: processes ${still.join(', ')} survive SIGKILL`);
  // Shims and containers are reparented to PID 1 when containerd dies: wait until it has reaped them
  // (a zombie is out of every cgroup and namespace already, but still a process-table entry).
  const reapDeadline = Date.now() + 10_000;
  while (Date.now() < reapDeadline && [...killed].some((pid) => existsSync(`/proc/${pid}`))) await sleep(50);
  let left: string[] = [];
  for (let attempt = 0; attempt < 50; attempt++) {
    left = removeCgroupTree(spec.name);
    if (!left.length) break;
    await sleep(100);
  }
  if (left.length) throw new RealNodeError(`node ${spec.name}: cgroups ${left.join(', ')} cannot be removed`);
  // Nothing of the node was mounted in the host's namespace; should a mount be there anyway, it goes too.
  for (const mount of hostMountsUnder(spec.stateDir).reverse()) await run('umount', ['-l', mount]);
  rmSync(spec.stateDir, { recursive: true, force: true });
}

/** Host mounts at or below `dir`. */
export function hostMountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => Boolean(m) && (m === dir || m!.startsWith(`${dir}/`)));
}

/** What of a node is left, described (empty after stopRealNode). */
export function nodeLeftovers(spec: Pick<RealNodeSpec, 'name' | 'stateDir'>): string[] {
  const found: string[] = [];
  const pids = nodePids(spec);
  if (pids.length) found.push(`processes: ${pids.join(', ')}`);
  const cgroups = cgroupExists(spec.name);
  if (cgroups.length) found.push(`cgroups: ${cgroups.join(', ')}`);
  const mounts = hostMountsUnder(spec.stateDir);
  if (mounts.length) found.push(`mounts: ${mounts.join(', ')}`);
  if (existsSync(spec.stateDir)) found.push(`state directory ${spec.stateDir}`);
  return found;
}
