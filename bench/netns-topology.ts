import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { netnsPlace, runCommand } from './exec.js';
import type { BenchTopology } from './topology.js';

/**
 * The topology of `--skip-lab`: four network namespaces wired like two lab nodes with one pod
 * each, connected only to each other (never to the host's namespace):
 *
 *   abench-cpod 10.250.1.2 ── 10.250.1.1 abench-cnode 10.250.0.1 ── 10.250.0.2 abench-snode 10.250.2.1 ── 10.250.2.2 abench-spod
 */
export const NETNS = { clientPod: 'abench-cpod', clientNode: 'abench-cnode', serverNode: 'abench-snode', serverPod: 'abench-spod' } as const;
export const ADDRESSES = {
  clientNode: '10.250.0.1',
  serverNode: '10.250.0.2',
  clientPod: '10.250.1.2',
  clientPodGateway: '10.250.1.1',
  serverPod: '10.250.2.2',
  serverPodGateway: '10.250.2.1',
} as const;

async function ip(args: string[]): Promise<void> {
  const r = await runCommand(['ip', ...args], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

async function inNetns(netns: string, argv: string[]): Promise<void> {
  const r = await runCommand(['ip', 'netns', 'exec', netns, ...argv], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${netns}: ${r.stderr.trim()}`);
}

export async function deleteNetnsTopology(): Promise<void> {
  const list = (await runCommand(['ip', 'netns', 'list'])).stdout;
  for (const name of Object.values(NETNS)) {
    if (new RegExp(`^${name}( |$)`, 'm').test(list)) await runCommand(['ip', 'netns', 'delete', name]);
  }
}

/** A veth pair created inside namespace `a` with its peer moved straight into `b`. */
async function link(a: string, aName: string, aAddr: string, b: string, bName: string, bAddr: string): Promise<void> {
  await ip(['-n', a, 'link', 'add', aName, 'type', 'veth', 'peer', 'name', bName, 'netns', b]);
  await ip(['-n', a, 'addr', 'add', `${aAddr}/24`, 'dev', aName]);
  await ip(['-n', b, 'addr', 'add', `${bAddr}/24`, 'dev', bName]);
  await ip(['-n', a, 'link', 'set', aName, 'up']);
  await ip(['-n', b, 'link', 'set', bName, 'up']);
}

export async function createNetnsTopology(): Promise<BenchTopology> {
  await deleteNetnsTopology();
  for (const name of Object.values(NETNS)) {
    await ip(['netns', 'add', name]);
    await ip(['-n', name, 'link', 'set', 'lo', 'up']);
  }
  const a = ADDRESSES;
  await link(NETNS.clientNode, 'ab-to-snode', a.clientNode, NETNS.serverNode, 'ab-to-cnode', a.serverNode);
  await link(NETNS.clientPod, 'eth0', a.clientPod, NETNS.clientNode, 'ab-cpod', a.clientPodGateway);
  await link(NETNS.serverPod, 'eth0', a.serverPod, NETNS.serverNode, 'ab-spod', a.serverPodGateway);
  await ip(['-n', NETNS.clientPod, 'route', 'add', 'default', 'via', a.clientPodGateway]);
  await ip(['-n', NETNS.serverPod, 'route', 'add', 'default', 'via', a.serverPodGateway]);
  await ip(['-n', NETNS.clientNode, 'route', 'add', '10.250.2.0/24', 'via', a.serverNode]);
  await ip(['-n', NETNS.serverNode, 'route', 'add', '10.250.1.0/24', 'via', a.clientNode]);
  for (const node of [NETNS.clientNode, NETNS.serverNode]) await inNetns(node, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);

  const workDir = mkdtempSync(join(tmpdir(), 'ambit-bench-'));
  return {
    kind: 'netns',
    description: `network namespaces (--skip-lab): ${NETNS.clientPod} ${a.clientPod} → ${NETNS.clientNode} ${a.clientNode} → ${NETNS.serverNode} ${a.serverNode} → ${NETNS.serverPod} ${a.serverPod}, veth links`,
    plain: {
      clientPod: netnsPlace('client pod', NETNS.clientPod),
      serverPod: netnsPlace('server pod', NETNS.serverPod),
      serverPodIp: a.serverPod,
      clientNode: netnsPlace('client node', NETNS.clientNode),
      serverNode: netnsPlace('server node', NETNS.serverNode),
      clientNodeIp: a.clientNode,
      serverNodeIp: a.serverNode,
    },
    workDir,
    teardown: deleteNetnsTopology,
  };
}
