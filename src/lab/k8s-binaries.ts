import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const K8S_BINARIES = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler'] as const;
export type K8sBinary = (typeof K8S_BINARIES)[number];

/** Build recipe revision, as in scripts/install-host-deps.sh: older caches are not used. */
const BUILD_REVISION = 'r2';

export function cacheRoot(): string {
  return process.env.AMBIT_CACHE_DIR ?? join(homedir(), '.cache', 'ambit');
}

/** What a real lab node runs from the same cache: kubelet, kube-proxy, and pause (the sandbox image's program). */
export const K8S_NODE_BINARIES = ['kubelet', 'kube-proxy', 'pause'] as const;
export type K8sNodeBinary = (typeof K8S_NODE_BINARIES)[number];

/** Directory holding the Kubernetes control-plane binaries, or an error that says how to get them. */
export function findK8sBinDir(): string {
  return findBinDir(K8S_BINARIES, 'Kubernetes control-plane binaries');
}

/** The first of AMBIT_K8S_BIN_DIR or the cache directories (newest first) that holds all of `wanted`. */
function findBinDir(wanted: readonly string[], what: string): string {
  const explicit = process.env.AMBIT_K8S_BIN_DIR;
  if (explicit) {
    const missing = wanted.filter((b) => !existsSync(join(explicit, b)));
    if (missing.length) throw new Error(`AMBIT_K8S_BIN_DIR=${explicit} lacks ${missing.join(', ')} (${what})`);
    return explicit;
  }
  const root = cacheRoot();
  const candidates = existsSync(root) ? readdirSync(root).filter((d) => d.startsWith('k8s-') && d.endsWith(`-${BUILD_REVISION}`)).sort().reverse() : [];
  for (const dir of candidates) {
    const full = join(root, dir);
    if (wanted.every((b) => existsSync(join(full, b)))) return full;
  }
  throw new Error(
    `${what} (${wanted.join(', ')}) not found (looked in AMBIT_K8S_BIN_DIR and ${root}/k8s-*-${BUILD_REVISION}/); ` +
      'run `npm run setup` (builds them once from Debian\'s kubernetes source package; a cache with only the ' +
      'control plane gets the node binaries added) or set AMBIT_K8S_BIN_DIR',
  );
}

export interface NodeBinaries {
  kubelet: string;
  kubeProxy: string;
  /** Static pause binary, built from build/pause/linux/pause.c of the same source. */
  pause: string;
  containerd: string;
  /** containerd's runc v2 shim: containerd finds it on PATH, so its directory must be on kubelet's and containerd's PATH. */
  shim: string;
  runc: string;
  /** Directory with the CNI plugins (bridge, ptp, host-local, loopback). */
  cniBinDir: string;
}

/** Everything a real lab node runs, or an error that names what is missing and how to get it. */
export function findNodeBinaries(): NodeBinaries {
  const dir = findBinDir(K8S_NODE_BINARIES, 'Kubernetes node binaries');
  const system = (name: string, pkg: string, paths: string[]) => {
    const found = paths.find((p) => existsSync(p));
    if (!found) throw new Error(`${name} not found (looked in ${paths.join(', ')}); run \`npm run setup\` (installs Debian package ${pkg})`);
    return found;
  };
  const cniBinDir = system('CNI plugins', 'containernetworking-plugins', ['/usr/lib/cni/host-local', '/opt/cni/bin/host-local']).replace(/\/host-local$/, '');
  for (const plugin of ['bridge', 'ptp', 'loopback']) system(`CNI plugin ${plugin}`, 'containernetworking-plugins', [join(cniBinDir, plugin)]);
  return {
    kubelet: join(dir, 'kubelet'),
    kubeProxy: join(dir, 'kube-proxy'),
    pause: join(dir, 'pause'),
    containerd: system('containerd', 'containerd', ['/usr/bin/containerd', '/usr/local/bin/containerd']),
    shim: system('containerd-shim-runc-v2', 'containerd', ['/usr/bin/containerd-shim-runc-v2', '/usr/local/bin/containerd-shim-runc-v2']),
    runc: system('runc', 'runc', ['/usr/bin/runc', '/usr/sbin/runc', '/usr/local/bin/runc']),
    cniBinDir,
  };
}

export function findEtcd(): string {
  for (const p of ['/usr/bin/etcd', '/usr/local/bin/etcd']) if (existsSync(p)) return p;
  throw new Error('etcd not found; run `npm run setup` (installs Debian package etcd-server)');
}
