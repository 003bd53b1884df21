import type { V1Node } from '@kubernetes/client-node';
import type { Logger } from '../../util/log.js';
import { nodeTopologyLabels, type NodePlan } from '../plan.js';
import { errorMessage, mergePatch, statusCode } from '../../kube/index.js';
import type { Kube } from './kube.js';

const HEARTBEAT_MS = 10_000;

function nodeLabels(node: NodePlan): Record<string, string> {
  return {
    'kubernetes.io/hostname': node.name,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': 'amd64',
    'beta.kubernetes.io/os': 'linux',
    'beta.kubernetes.io/arch': 'amd64',
    ...nodeTopologyLabels(node),
  };
}

function nodeStatus(node: NodePlan, since: Date) {
  const now = new Date();
  const condition = (type: string, status: string, reason: string, message: string) => ({
    type,
    status,
    reason,
    message,
    lastHeartbeatTime: now,
    lastTransitionTime: since,
  });
  return {
    capacity: { cpu: '8', memory: '16Gi', pods: '110', 'ephemeral-storage': '100Gi' },
    allocatable: { cpu: '8', memory: '16Gi', pods: '110', 'ephemeral-storage': '100Gi' },
    addresses: [
      { type: 'InternalIP', address: node.ip },
      { type: 'Hostname', address: node.name },
    ],
    conditions: [
      condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'ambit lab node agent has sufficient memory available'),
      condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'ambit lab node agent has no disk pressure'),
      condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'ambit lab node agent has sufficient PID available'),
      condition('Ready', 'True', 'KubeletReady', 'ambit lab node agent is posting ready status'),
    ],
    daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
    nodeInfo: {
      machineID: node.netns,
      systemUUID: node.netns,
      bootID: String(since.getTime()),
      kernelVersion: '',
      osImage: 'ambit lab node (network namespace)',
      containerRuntimeVersion: 'ambit-lab://0.1',
      kubeletVersion: 'v1.20.2',
      kubeProxyVersion: 'v1.20.2',
      operatingSystem: 'linux',
      architecture: 'amd64',
    },
  };
}

/** Registers the cluster's nodes and keeps them Ready with a heartbeat, as the kubelet does. */
export class NodeRegistrar {
  private timer?: NodeJS.Timeout;
  private readonly since = new Date();

  constructor(
    private readonly kube: Kube,
    private readonly nodes: NodePlan[],
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    for (const node of this.nodes) await this.register(node);
    this.timer = setInterval(() => void this.heartbeat(), HEARTBEAT_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async register(node: NodePlan): Promise<void> {
    const body: V1Node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: node.name, labels: nodeLabels(node) },
      spec: { podCIDR: node.podCidr, podCIDRs: [node.podCidr] },
    };
    try {
      await this.kube.core.createNode({ body });
      this.log.info({ node: node.name, ip: node.ip, podCidr: node.podCidr }, 'node registered');
    } catch (err) {
      if (statusCode(err) !== 409) throw err;
      await this.kube.core.patchNode({ name: node.name, body: { metadata: { labels: nodeLabels(node) } } }, mergePatch);
    }
    await this.postStatus(node);
  }

  private async postStatus(node: NodePlan): Promise<void> {
    await this.kube.core.patchNodeStatus({ name: node.name, body: { status: nodeStatus(node, this.since) } }, mergePatch);
  }

  private async heartbeat(): Promise<void> {
    for (const node of this.nodes) {
      try {
        await this.postStatus(node);
      } catch (err) {
        if (statusCode(err) === 404) {
          await this.register(node).catch((e) => this.log.warn({ node: node.name, err: errorMessage(e) }, 're-register failed'));
        } else {
          this.log.warn({ node: node.name, err: errorMessage(err) }, 'heartbeat failed');
        }
      }
    }
  }
}
