import { existsSync } from 'node:fs';
import { findEtcd, findK8sBinDir } from './k8s-binaries.js';

export class PreflightError extends Error {}

export function requireRoot(action: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new PreflightError(`${action} must run as root: the lab creates network namespaces, veth pairs and nftables rules (try: sudo ambit …)`);
  }
}

/** Everything `lab up` needs on the host, with what to do about each missing piece. */
export function checkHostTools(): void {
  const missing: string[] = [];
  for (const [tool, pkg] of [
    ['/usr/sbin/ip', 'iproute2'],
    ['/usr/sbin/nft', 'nftables'],
    ['/usr/bin/unshare', 'util-linux'],
    ['/usr/bin/nsenter', 'util-linux'],
    ['/usr/bin/curl', 'curl'],
  ] as const) {
    if (!existsSync(tool) && !existsSync(tool.replace('/usr/sbin', '/sbin'))) missing.push(`${tool} (Debian package ${pkg})`);
  }
  try {
    findEtcd();
  } catch (err) {
    missing.push((err as Error).message);
  }
  try {
    findK8sBinDir();
  } catch (err) {
    missing.push((err as Error).message);
  }
  if (missing.length) throw new PreflightError(`the lab host is missing:\n  - ${missing.join('\n  - ')}\nrun \`npm run setup\` as root to install them`);
}
