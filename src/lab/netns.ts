import { run, succeeds } from '../util/exec.js';

/** Thin wrappers over iproute2 for the lab's network plumbing. Every call names its netns. */

export async function listNetns(): Promise<Set<string>> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return new Set(
    stdout
      .split('\n')
      .map((line) => line.split(' ')[0]!.trim())
      .filter(Boolean),
  );
}

export async function ensureNetns(name: string, existing?: Set<string>): Promise<boolean> {
  const known = existing ?? (await listNetns());
  if (known.has(name)) return false;
  await run('ip', ['netns', 'add', name]);
  known.add(name);
  await ip(name, ['link', 'set', 'lo', 'up']);
  await sysctl(name, 'net.ipv4.ip_forward', '1');
  return true;
}

export async function deleteNetns(name: string): Promise<void> {
  await succeeds('ip', ['netns', 'delete', name]);
}

/** `ip -n <netns> …`; netns undefined means the host's root namespace. */
export async function ip(netns: string | undefined, args: string[]): Promise<string> {
  const argv = netns ? ['-n', netns, ...args] : args;
  return (await run('ip', argv)).stdout;
}

export async function linkExists(netns: string | undefined, link: string): Promise<boolean> {
  return succeeds('ip', [...(netns ? ['-n', netns] : []), 'link', 'show', 'dev', link]);
}

export async function sysctl(netns: string, key: string, value: string): Promise<void> {
  await run('ip', ['netns', 'exec', netns, 'sysctl', '-qw', `${key}=${value}`]);
}

/**
 * Creates a veth pair with one end in each namespace (undefined = root namespace), unless the
 * first end already exists.
 */
export async function ensureVeth(
  a: { netns: string | undefined; name: string },
  b: { netns: string | undefined; name: string },
): Promise<boolean> {
  if (await linkExists(a.netns, a.name)) return false;
  const peerNetns = b.netns ? ['netns', b.netns] : ['netns', '1'];
  await ip(a.netns, ['link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name, ...peerNetns]);
  return true;
}

/** Adds an address unless present (`ip addr replace` is idempotent). */
export async function setAddress(netns: string | undefined, dev: string, cidr: string): Promise<void> {
  await ip(netns, ['addr', 'replace', cidr, 'dev', dev]);
  await ip(netns, ['link', 'set', dev, 'up']);
}

export async function replaceRoute(netns: string | undefined, args: string[]): Promise<void> {
  await ip(netns, ['route', 'replace', ...args]);
}

/** PIDs of the processes whose network namespace is `netns`. */
export async function netnsPids(netns: string): Promise<number[]> {
  try {
    const { stdout } = await run('ip', ['netns', 'pids', netns]);
    return stdout
      .split('\n')
      .map((s) => Number(s.trim()))
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}
