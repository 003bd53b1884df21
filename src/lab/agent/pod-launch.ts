import { existsSync, mkdirSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { writeFileAtomic } from '../state.js';

/**
 * How a container process is started. There is no container runtime and no image filesystem:
 * the process runs on the host's filesystem in a private mount namespace where
 *  - /etc is an overlay whose upper layer (in the pod's state directory) holds the pod's
 *    resolv.conf, hosts and hostname,
 *  - volumes are bind-mounted at their mountPaths; a mountPath whose parent does not exist on
 *    the host gets an overlay on its top-level directory first, so nothing is created on the host,
 *  - the UTS namespace carries the pod's hostname.
 * Everything vanishes with the process; nothing is left mounted on the host.
 */
export interface Mount {
  source: string;
  target: string;
  readOnly: boolean;
}

export interface LaunchSpec {
  netns: string;
  hostname: string;
  podDir: string;
  container: string;
  etcFiles: Record<string, string>;
  mounts: Mount[];
  workingDir?: string;
  argv: string[];
}

export class LaunchError extends Error {}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The path with symlinks of its existing ancestors resolved (the rest of it may not exist yet). */
function resolvedTarget(target: string): string {
  let existing = target;
  while (!existsSync(existing)) existing = posix.dirname(existing);
  return posix.join(realpathSync(existing), posix.relative(existing, target));
}

/** The top-level directory a new path would live under, after resolving symlinks. */
function topLevelFor(target: string): string {
  return `/${resolvedTarget(target).split('/').filter(Boolean)[0] ?? ''}`;
}

export function buildLaunchCommand(spec: LaunchSpec, labDirectory: string): string[] {
  const rootfs = join(spec.podDir, 'rootfs', spec.container);
  const overlays = new Set<string>(['/etc']);
  const steps: string[] = ['set -e'];
  const mounts = spec.mounts.map((m) => ({ ...m, target: posix.normalize(m.target) }));
  for (const mount of mounts) {
    if (!posix.isAbsolute(mount.target)) throw new LaunchError(`mountPath "${mount.target}" must be absolute`);
    if (!existsSync(mount.target)) {
      const top = topLevelFor(mount.target);
      if (top === '/') throw new LaunchError(`mountPath "${mount.target}": cannot create a new top-level directory on the lab host`);
      overlays.add(top);
    }
  }
  const labReal = existsSync(labDirectory) ? realpathSync(labDirectory) : labDirectory;
  for (const top of overlays) {
    if (labReal === top || labReal.startsWith(`${top}/`)) {
      throw new LaunchError(`cannot overlay ${top} for a mountPath: it holds the lab state directory ${labDirectory} (set AMBIT_LAB_DIR elsewhere)`);
    }
    const upper = join(rootfs, 'upper', top.slice(1));
    const work = join(rootfs, 'work', top.slice(1));
    mkdirSync(upper, { recursive: true });
    mkdirSync(work, { recursive: true });
    steps.push(`mount -t overlay ambit-pod -o ${quote(`lowerdir=${top},upperdir=${upper},workdir=${work}`)} ${quote(top)}`);
  }
  const etcUpper = join(rootfs, 'upper', 'etc');
  for (const [file, content] of Object.entries(spec.etcFiles)) writeFileAtomic(join(etcUpper, file), content, 0o644);
  for (const mount of mounts) {
    const target = resolvedTarget(mount.target);
    const sourceIsFile = existsSync(mount.source) && statSync(mount.source).isFile();
    steps.push(sourceIsFile ? `[ -e ${quote(target)} ] || { mkdir -p ${quote(dirname(target))}; : > ${quote(target)}; }` : `mkdir -p ${quote(target)}`);
    steps.push(`mount --bind ${quote(mount.source)} ${quote(target)}`);
    if (mount.readOnly) steps.push(`mount -o remount,bind,ro ${quote(target)}`);
  }
  steps.push(`hostname ${quote(spec.hostname)}`);
  if (spec.workingDir) steps.push(`cd ${quote(spec.workingDir)}`);
  steps.push('exec "$@"');
  // slave, not private: unmounts on the host (`ip netns delete` of other pods' namespaces) must
  // reach this mount namespace, or its copies keep those namespace files busy; nothing mounted
  // here propagates back to the host.
  return ['unshare', '--mount', '--uts', '--propagation', 'slave', '/bin/sh', '-c', steps.join('\n'), 'ambit-pod', ...spec.argv];
}
