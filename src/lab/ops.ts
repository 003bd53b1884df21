import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { apiClient } from '../kube/index.js';
import { runInteractive } from '../util/exec.js';
import { clusterFiles } from './controlplane.js';
import { clusterOf } from './plan.js';
import { isAlive } from './processes.js';
import { realNodeRunning } from './real-nodes.js';
import { labDir, podsDir, readState, type LabState } from './state.js';

export class LabOpError extends Error {}

export function requireState(): LabState {
  const state = readState();
  if (!state) throw new LabOpError(`no lab is up (no state in ${labDir()}); start one with \`ambit lab up -f <topology.yaml>\``);
  return state;
}

function clients(cluster: string) {
  const config = new KubeConfig();
  config.loadFromFile(clusterFiles(cluster).adminKubeconfig);
  return { core: apiClient(config, CoreV1Api), apps: apiClient(config, AppsV1Api) };
}

/** Resolves `pod`, `pod/<name>` or `deploy/<name>` (also deployment/, deployments/) to a running pod. */
export async function resolvePod(clusterName: string, namespace: string, target: string): Promise<V1Pod> {
  const state = requireState();
  clusterOf(state.plan, clusterName);
  const { core, apps } = clients(clusterName);
  const [kind, name] = target.includes('/') ? (target.split('/', 2) as [string, string]) : ['pod', target];
  if (kind === 'pod' || kind === 'pods' || kind === 'po') {
    try {
      return await core.readNamespacedPod({ name, namespace });
    } catch {
      throw new LabOpError(`pod "${name}" not found in namespace "${namespace}" of cluster ${clusterName}`);
    }
  }
  if (!['deploy', 'deployment', 'deployments'].includes(kind)) throw new LabOpError(`unsupported target "${target}": use <pod>, pod/<name> or deploy/<name>`);
  let selector: Record<string, string> | undefined;
  try {
    selector = (await apps.readNamespacedDeployment({ name, namespace })).spec?.selector?.matchLabels;
  } catch {
    throw new LabOpError(`deployment "${name}" not found in namespace "${namespace}" of cluster ${clusterName}`);
  }
  const labelSelector = Object.entries(selector ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
  const pods = (await core.listNamespacedPod({ namespace, labelSelector })).items.filter((p) => !p.metadata?.deletionTimestamp);
  const running = pods.filter((p) => p.status?.phase === 'Running').sort((a, b) => String(b.metadata?.creationTimestamp).localeCompare(String(a.metadata?.creationTimestamp)));
  if (!running[0]) throw new LabOpError(`deployment "${name}" has no running pod (${pods.length} pod(s) total)`);
  return running[0];
}

interface PodRuntimeInfo {
  dir: string;
  containers: Record<string, { pid?: number }>;
}

function runtimeInfo(cluster: string, pod: V1Pod): PodRuntimeInfo {
  const dir = join(podsDir(cluster), `${pod.metadata!.namespace}_${pod.metadata!.name}_${pod.metadata!.uid}`);
  const file = join(dir, 'pod.json');
  if (!existsSync(file)) throw new LabOpError(`pod ${pod.metadata!.namespace}/${pod.metadata!.name} is not running on a lab node of ${cluster}`);
  return { dir, containers: (JSON.parse(readFileSync(file, 'utf8')) as { containers: PodRuntimeInfo['containers'] }).containers };
}

function pickContainer(pod: V1Pod, container?: string): string {
  const names = pod.spec?.containers.map((c) => c.name) ?? [];
  if (container && !names.includes(container)) throw new LabOpError(`container "${container}" is not in pod ${pod.metadata!.name} (containers: ${names.join(', ')})`);
  return container ?? names[0]!;
}

/** kubectl with the cluster's admin credentials, for clusters whose nodes run a real kubelet. */
function kubectlOnRealNodes(state: LabState, cluster: string, args: string[]): Promise<number> | undefined {
  if (clusterOf(state.plan, cluster).nodeRuntime !== 'kubelet') return undefined;
  return runInteractive('kubectl', ['--kubeconfig', clusterFiles(cluster).adminKubeconfig, ...args]);
}

/** Runs a command inside a pod's container (its network, mount and UTS namespaces, with its environment). */
export async function labExec(cluster: string, namespace: string, target: string, command: string[], container?: string): Promise<number> {
  if (!command.length) throw new LabOpError('no command given; usage: ambit lab exec --cluster <c> -n <ns> <pod> -- <command…>');
  // Real nodes: kubectl exec, with stdin, and a terminal when this command has one.
  const tty = process.stdin.isTTY ? ['-t'] : [];
  const real = kubectlOnRealNodes(requireState(), cluster, ['-n', namespace, 'exec', '-i', ...tty, ...(container ? ['-c', container] : []), target, '--', ...command]);
  if (real) return real;
  const pod = await resolvePod(cluster, namespace, target);
  const name = pickContainer(pod, container);
  const info = runtimeInfo(cluster, pod);
  const pid = info.containers[name]?.pid;
  if (!pid || !isAlive(pid)) throw new LabOpError(`container ${name} of pod ${pod.metadata!.name} is not running`);
  const envFile = join(info.dir, 'env', `${name}.json`);
  const env = existsSync(envFile) ? (JSON.parse(readFileSync(envFile, 'utf8')) as Record<string, string>) : { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  return runInteractive('nsenter', ['-t', String(pid), '-n', '-m', '-u', '--', ...command], env);
}

export async function labLogs(cluster: string, namespace: string, target: string, options: { container?: string; follow?: boolean }): Promise<number> {
  const real = kubectlOnRealNodes(requireState(), cluster, ['-n', namespace, 'logs', ...(options.container ? ['-c', options.container] : []), ...(options.follow ? ['-f'] : []), target]);
  if (real) return real;
  const pod = await resolvePod(cluster, namespace, target);
  const name = pickContainer(pod, options.container);
  const info = runtimeInfo(cluster, pod);
  const file = join(info.dir, 'logs', `${name}.log`);
  if (!existsSync(file)) return 0;
  if (options.follow) return runInteractive('tail', ['-n', '+1', '-f', file]);
  process.stdout.write(readFileSync(file));
  return 0;
}

export async function labStatus(): Promise<string> {
  const state = readState();
  if (!state) return `no lab is up (state directory ${labDir()})`;
  const lines = [`lab from ${state.topologyFile}, created ${state.createdAt}, mesh ${state.topology.meshID}, trust domain ${state.topology.trustDomain}`];
  for (const cluster of state.plan.clusters) {
    const procs = state.processes.filter((p) => p.name.startsWith(`${cluster.name}/`));
    const down = procs.filter((p) => !isAlive(p.pid)).map((p) => p.name.split('/')[1]);
    lines.push(`cluster ${cluster.name}  network=${cluster.network}  api=${cluster.apiServerUrl}  context=lab-${cluster.name}  services=${cluster.serviceCidr}  loadbalancers=${cluster.loadBalancerCidr}`);
    lines.push(`  processes: ${procs.length - down.length}/${procs.length} running${down.length ? ` (down: ${down.join(', ')})` : ''}`);
    let nodes: Map<string, boolean> = new Map();
    try {
      const list = await clients(cluster.name).core.listNode();
      nodes = new Map(list.items.map((n) => [n.metadata!.name!, n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false]));
    } catch {
      lines.push('  kube-apiserver: not answering');
    }
    const podDirs = existsSync(podsDir(cluster.name)) ? readdirSync(podsDir(cluster.name)).length : 0;
    const real = cluster.nodeRuntime === 'kubelet';
    for (const node of cluster.nodes) {
      const runtime = real ? `  kubelet ${realNodeRunning(node.name) ? 'running' : 'not running'}` : '';
      lines.push(`  node ${node.name}  ip=${node.ip}  pods=${node.podCidr}  ${node.region}/${node.zone}  ${nodes.get(node.name) ? 'Ready' : 'NotReady'}${runtime}`);
    }
    lines.push(real ? '  nodes: real kubelet + containerd (kubectl exec, logs, port-forward work)' : `  pods running on lab nodes: ${podDirs}`);
  }
  return lines.join('\n');
}
