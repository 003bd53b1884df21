import { run, succeeds } from '../../util/exec.js';
import { deleteNetns, ensureNetns, ip, sysctl } from '../netns.js';
import { NETNS_PREFIX, POD_GATEWAY, type NodePlan } from '../plan.js';

/** Names derived from the pod UID: unique, and short enough for interface names (≤ 15). */
export function podNetnsName(uid: string): string {
  return `${NETNS_PREFIX}pod-${uid.replace(/-/g, '').slice(0, 12)}`;
}

export function hostVethName(uid: string): string {
  return `p${uid.replace(/-/g, '').slice(0, 12)}`;
}

/**
 * Gives the pod its own network namespace: eth0 with the pod IP (/32), default route through a
 * link-local next hop that the node answers by proxy ARP, and a /32 route on the node.
 */
export async function setUpPodNetwork(node: NodePlan, uid: string, podIp: string): Promise<string> {
  const netns = podNetnsName(uid);
  const hostVeth = hostVethName(uid);
  await ensureNetns(netns);
  if (!(await succeeds('ip', ['-n', node.netns, 'link', 'show', 'dev', hostVeth]))) {
    await ip(node.netns, ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
  }
  await sysctl(node.netns, `net.ipv4.conf.${hostVeth}.proxy_arp`, '1');
  await sysctl(node.netns, `net.ipv4.conf.${hostVeth}.rp_filter`, '0');
  await ip(node.netns, ['link', 'set', hostVeth, 'up']);
  await ip(node.netns, ['route', 'replace', `${podIp}/32`, 'dev', hostVeth, 'scope', 'link']);
  await ip(netns, ['addr', 'replace', `${podIp}/32`, 'dev', 'eth0']);
  await ip(netns, ['link', 'set', 'eth0', 'up']);
  await ip(netns, ['route', 'replace', POD_GATEWAY, 'dev', 'eth0', 'scope', 'link']);
  await ip(netns, ['route', 'replace', 'default', 'via', POD_GATEWAY, 'dev', 'eth0']);
  return netns;
}

export async function tearDownPodNetwork(node: NodePlan, uid: string, podIp: string | undefined): Promise<void> {
  if (podIp) await succeeds('ip', ['-n', node.netns, 'route', 'del', `${podIp}/32`]);
  await succeeds('ip', ['-n', node.netns, 'link', 'del', hostVethName(uid)]);
  await deleteNetns(podNetnsName(uid));
}

/** Runs a short command inside a namespace and reports whether it succeeded (used by probes). */
export async function runInNetns(netns: string, argv: string[], timeoutMs: number): Promise<{ ok: boolean; stdout: string }> {
  try {
    const { stdout } = await run('ip', ['netns', 'exec', netns, ...argv], { timeoutMs });
    return { ok: true, stdout };
  } catch {
    return { ok: false, stdout: '' };
  }
}
