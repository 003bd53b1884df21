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

/** Directory holding the Kubernetes control-plane binaries, or an error that says how to get them. */
export function findK8sBinDir(): string {
  const explicit = process.env.AMBIT_K8S_BIN_DIR;
  if (explicit) {
    const missing = K8S_BINARIES.filter((b) => !existsSync(join(explicit, b)));
    if (missing.length) throw new Error(`AMBIT_K8S_BIN_DIR=${explicit} lacks ${missing.join(', ')}`);
    return explicit;
  }
  const root = cacheRoot();
  const candidates = existsSync(root) ? readdirSync(root).filter((d) => d.startsWith('k8s-') && d.endsWith(`-${BUILD_REVISION}`)).sort().reverse() : [];
  for (const dir of candidates) {
    const full = join(root, dir);
    if (K8S_BINARIES.every((b) => existsSync(join(full, b)))) return full;
  }
  throw new Error(
    `Kubernetes binaries not found (looked in AMBIT_K8S_BIN_DIR and ${root}/k8s-*/); ` +
      'run `npm run setup` (builds them once from Debian\'s kubernetes source package) or set AMBIT_K8S_BIN_DIR',
  );
}

export function findEtcd(): string {
  for (const p of ['/usr/bin/etcd', '/usr/local/bin/etcd']) if (existsSync(p)) return p;
  throw new Error('etcd not found; run `npm run setup` (installs Debian package etcd-server)');
}
