// The base layers: a Debian root filesystem from `debootstrap --variant=minbase`, slimmed as Debian's -slim images are.
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { collectTree, type LayerEntry } from './layer-tar.js';
import { BuildStepError, runLogged } from './run-logged.js';

export interface DebianSpec {
  suite: string;
  variant: 'minbase';
  /** Extra Debian packages (debootstrap --include), with their dependencies. */
  include: string[];
  mirror: string;
}

export const DEFAULT_MIRROR = process.env.AMBIT_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';

/** Bump when the recipe below changes, so bases of the older recipe are rebuilt. */
const RECIPE = 'debian-r1';

export class NeedsRootError extends Error {}

export function debianArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
  const arch = map[process.arch];
  if (!arch) throw new Error(`unsupported architecture ${process.arch} (amd64 and arm64 are)`);
  return arch;
}

function debootstrapVersion(): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'debootstrap'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/** What decides the base layer's content (Debian's archive aside: a point release does not rebuild it; --no-cache does). */
export function debianKeyInputs(spec: DebianSpec): Record<string, unknown> {
  return { recipe: RECIPE, ...spec, include: [...spec.include].sort(), arch: debianArch(), debootstrap: debootstrapVersion() };
}

export function describeDebian(spec: DebianSpec): string {
  const include = spec.include.length ? ` --include=${spec.include.join(',')}` : '';
  return `debootstrap --variant=${spec.variant}${include} ${spec.suite} (${spec.mirror})`;
}

/** Mount points at or below `dir` (debootstrap mounts proc and sys in the target while it configures packages). */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts what debootstrap left mounted below `dir`; throws if something stays mounted. */
async function unmountAll(dir: string): Promise<void> {
  for (const m of await mountsUnder(dir)) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // checked below
    }
  }
  const left = await mountsUnder(dir);
  if (left.length) throw new Error(`cannot unmount under ${dir}: ${left.join(', ')}`);
}

/** Removes a root filesystem tree, never through a mount. */
export async function removeRootfs(dir: string): Promise<void> {
  await unmountAll(dir);
  await rm(dir, { recursive: true, force: true });
}

async function removeChildren(dir: string, keep: (name: string) => boolean = () => false): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(names.filter((n) => !keep(n)).map((n) => rm(join(dir, n), { recursive: true, force: true })));
}

// Kept in the image so packages a user installs later are slimmed the same way.
const DPKG_EXCLUDES = `# ambit image: no documentation or translations (as Debian's -slim images)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
`;

/** Removes caches, logs, host files debootstrap copied in, documentation and translations. */
async function slim(root: string): Promise<void> {
  await removeChildren(join(root, 'var/cache/apt'), (n) => n === 'archives');
  await removeChildren(join(root, 'var/cache/apt/archives'), (n) => n === 'partial');
  await removeChildren(join(root, 'var/lib/apt/lists'), (n) => n === 'partial');
  await removeChildren(join(root, 'var/log'));
  await removeChildren(join(root, 'usr/share/man'));
  await removeChildren(join(root, 'usr/share/info'));
  await removeChildren(join(root, 'usr/share/locale'), (n) => n === 'locale.alias');
  for (const pkg of await readdir(join(root, 'usr/share/doc')).catch(() => [] as string[])) {
    await removeChildren(join(root, 'usr/share/doc', pkg), (n) => n === 'copyright');
  }
  for (const f of ['etc/resolv.conf', 'etc/hostname', 'var/cache/debconf/config.dat-old', 'var/cache/debconf/templates.dat-old', 'var/lib/dpkg/status-old', 'var/lib/dpkg/diversions-old']) {
    await rm(join(root, f), { force: true });
  }
  await mkdir(join(root, 'etc/dpkg/dpkg.cfg.d'), { recursive: true });
  await writeFile(join(root, 'etc/dpkg/dpkg.cfg.d/ambit-slim'), DPKG_EXCLUDES);
  // The runtime mounts /etc/hosts and /etc/resolv.conf; a plain default for `ctr run` and docker.
  await writeFile(join(root, 'etc/hosts'), '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n');
}

/** The runtime provides these; the image has them as empty directories. */
const EMPTY_DIRS = new Set(['dev', 'proc', 'sys', 'tmp', 'run']);
const excludeRuntimeDirs = (relative: string) => {
  const slash = relative.indexOf('/');
  return slash > 0 && EMPTY_DIRS.has(relative.slice(0, slash));
};

/**
 * Runs debootstrap into `root` (which must not exist) and slims it; returns the layer entries
 * (numeric owners as Debian set them). `debCache` keeps the downloaded packages between builds.
 */
export async function debootstrapRootfs(spec: DebianSpec, root: string, debCache: string, logFile: string): Promise<LayerEntry[]> {
  if (process.getuid?.() !== 0) {
    throw new NeedsRootError('building the Debian base layer needs root (debootstrap runs chroot and mknod); run as root, or reuse a cached base layer');
  }
  await mkdir(debCache, { recursive: true });
  const args = [`--variant=${spec.variant}`, `--arch=${debianArch()}`, `--cache-dir=${debCache}`];
  if (spec.include.length) args.push(`--include=${spec.include.join(',')}`);
  args.push(spec.suite, root, spec.mirror);
  try {
    await runLogged('debootstrap', args, {
      logFile,
      timeoutMs: 20 * 60_000,
      what: `${describeDebian(spec)}`,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' },
    });
  } catch (err) {
    await removeRootfs(root).catch(() => undefined);
    if (err instanceof BuildStepError && /is not installed$/.test(err.message)) {
      throw new BuildStepError(`${err.message}: apt-get install debootstrap (scripts/install-host-deps.sh installs it)`);
    }
    throw err;
  }
  await unmountAll(root);
  await slim(root);
  return collectTree(root, '', { exclude: excludeRuntimeDirs });
}
