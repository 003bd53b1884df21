// The node's cgroups: /<node> in every mounted hierarchy (cpuset values copied), its processes, and their removal.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Mount points of the host's cgroup hierarchies (v1 controllers, named ones, and the v2 one of a hybrid host). */
export function cgroupMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => {
      const [left, right] = line.split(' - ');
      const fstype = right?.split(' ')[0];
      return fstype === 'cgroup' || fstype === 'cgroup2' ? left!.split(' ')[4]! : undefined;
    })
    .filter((m): m is string => Boolean(m));
}

/**
 * Creates `/<path>` (e.g. "node3" or "node3/runtime") in every hierarchy. A new cpuset cgroup has no
 * CPUs or memory nodes and cannot take tasks until they are set, so they are copied from the parent.
 */
export function ensureCgroup(path: string): void {
  for (const mount of cgroupMounts()) {
    let dir = mount;
    for (const part of path.split('/').filter(Boolean)) {
      const parent = dir;
      dir = join(dir, part);
      if (!existsSync(dir)) mkdirSync(dir);
      for (const file of ['cpuset.cpus', 'cpuset.mems']) {
        const own = join(dir, file);
        if (existsSync(own) && readFileSync(own, 'utf8').trim() === '') writeFileSync(own, readFileSync(join(parent, file), 'utf8'));
      }
    }
  }
}

/** Puts a process into `/<path>` of every hierarchy. */
export function joinCgroup(path: string, pid: number): void {
  for (const mount of cgroupMounts()) writeFileSync(join(mount, path, 'cgroup.procs'), `${pid}\n`);
}

function subtree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const children = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory());
  return [...children.flatMap((c) => subtree(join(dir, c.name))), dir];
}

/** Every process in `/<root>` or below, in any hierarchy. */
export function cgroupPids(root: string): number[] {
  const pids = new Set<number>();
  for (const mount of cgroupMounts()) {
    for (const dir of subtree(join(mount, root))) {
      try {
        for (const s of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (s.trim()) pids.add(Number(s));
      } catch {
        /* removed meanwhile */
      }
    }
  }
  return [...pids];
}

/** Freezes or thaws `/<root>` (cgroup v1 freezer), so that nothing in it can fork while it is being emptied. */
export function setFrozen(root: string, frozen: boolean): void {
  const freezer = cgroupMounts().find((m) => existsSync(join(m, 'freezer.state')) || m.endsWith('/freezer'));
  const file = freezer && join(freezer, root, 'freezer.state');
  if (file && existsSync(file)) writeFileSync(file, frozen ? 'FROZEN' : 'THAWED');
}

/** Removes `/<root>` and everything below it, deepest first, in every hierarchy; returns what could not be removed. */
export function removeCgroupTree(root: string): string[] {
  const left: string[] = [];
  for (const mount of cgroupMounts()) {
    for (const dir of subtree(join(mount, root))) {
      try {
        rmdirSync(dir);
      } catch {
        left.push(dir);
      }
    }
  }
  return left;
}

export function cgroupExists(root: string): string[] {
  return cgroupMounts()
    .map((m) => join(m, root))
    .filter((d) => existsSync(d));
}
