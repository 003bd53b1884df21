/**
 * The Kubernetes objects of the control-plane scale case, kwok-style: Nodes no agent runs, and
 * pods bound to them whose status the bench writes itself (Running, an address, Ready or not).
 * No process ever runs for them; the control planes only see them through the API.
 */
import type { V1Namespace, V1Node, V1NodeStatus, V1Pod, V1PodStatus, V1Service } from '@kubernetes/client-node';
import { DATAPLANE_MODE_AMBIENT, DATAPLANE_MODE_LABEL } from '../../src/api/resources.js';

export const SCALE_NAMESPACE = 'scale';
export const SCALE_SERVICE = 'scale';
export const SCALE_PORT = 8080;
const APP = { app: 'scale' };
/** Marks the bench's fake nodes (and lets a clean-up find them). */
export const FAKE_NODE_LABEL = 'bench.ambit.dev/fake-node';

export interface ScaleSizes {
  podsPerCluster: number;
  fakeNodesPerCluster: number;
  /** Pods per cluster created not Ready, then made Ready one at a time to time the propagation. */
  latencySamples: number;
}

export function scaleSizes(quick: boolean): ScaleSizes {
  return quick ? { podsPerCluster: 250, fakeNodesPerCluster: 2, latencySamples: 20 } : { podsPerCluster: 2500, fakeNodesPerCluster: 10, latencySamples: 200 };
}

export const fakeNodeName = (index: number) => `scale-node-${index}`;
export const scalePodName = (index: number) => `scale-${String(index).padStart(5, '0')}`;

/** The pods created not Ready: the last `latencySamples` of the cluster. */
export const startsNotReady = (index: number, sizes: ScaleSizes) => index >= sizes.podsPerCluster - sizes.latencySamples;

export function fakeNode(name: string, locality: { region: string; zone: string }): V1Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      // No kubernetes.io/os label: the ztunnel DaemonSet selects kubernetes.io/os=linux and
      // tolerates every taint, so that label is what keeps its pods off these nodes.
      labels: { [FAKE_NODE_LABEL]: 'true', type: 'kwok', 'kubernetes.io/hostname': name, 'topology.kubernetes.io/region': locality.region, 'topology.kubernetes.io/zone': locality.zone },
    },
    // The scheduler must not place real pods here (nothing would run them).
    spec: { taints: [{ key: 'kwok.x-k8s.io/node', value: 'fake', effect: 'NoSchedule' }] },
  };
}

/** A Ready node status; posted again every few seconds, as a kubelet's heartbeat. */
export function fakeNodeStatus(now: Date, since: Date): V1NodeStatus {
  const condition = (type: string, status: string, reason: string) => ({ type, status, reason, message: 'ambit bench fake node', lastHeartbeatTime: now, lastTransitionTime: since });
  return {
    capacity: { cpu: '32', memory: '256Gi', pods: '1000' },
    allocatable: { cpu: '32', memory: '256Gi', pods: '1000' },
    conditions: [
      condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
      condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
      condition('PIDPressure', 'False', 'KubeletHasSufficientPID'),
      condition('Ready', 'True', 'KubeletReady'),
    ],
    nodeInfo: {
      machineID: '', systemUUID: '', bootID: '', kernelVersion: '', osImage: 'fake', containerRuntimeVersion: 'fake://0',
      kubeletVersion: 'v1.20.2', kubeProxyVersion: 'v1.20.2', operatingSystem: 'linux', architecture: 'amd64',
    },
  };
}

export function scaleNamespace(): V1Namespace {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SCALE_NAMESPACE, labels: { [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE_AMBIENT } } };
}

/**
 * Global in both clusters. Headless: the lab's kube-proxy stand-in would otherwise rewrite its
 * nftables maps of thousands of endpoints on every pod change, which is the lab's cost, not the
 * mesh's. The control planes build the same workloads and synthetic workloads either way.
 */
export function scaleService(): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: SCALE_SERVICE, namespace: SCALE_NAMESPACE, labels: { 'istio.io/global': 'true' } },
    spec: { clusterIP: 'None', selector: APP, ports: [{ name: 'http', port: SCALE_PORT, targetPort: SCALE_PORT, protocol: 'TCP' }] },
  };
}

export function scalePod(name: string, nodeName: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: SCALE_NAMESPACE, labels: APP },
    spec: {
      nodeName,
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 0,
      containers: [{ name: 'main', image: 'busybox', command: ['sleep', 'infinity'], ports: [{ name: 'http', containerPort: SCALE_PORT, protocol: 'TCP' }] }],
    },
  };
}

/**
 * A unique address per (cluster, pod) outside every range of the lab (198.18.0.0/15): they are
 * never routed, only read by the control planes. Up to 64,000 pods per cluster.
 */
export function fakePodIp(clusterIndex: number, podIndex: number): string {
  if (podIndex < 0 || podIndex >= 64_000) throw new RangeError(`pod index ${podIndex} out of range`);
  return `10.${200 + clusterIndex}.${Math.floor(podIndex / 250)}.${(podIndex % 250) + 1}`;
}

/** The status a kubelet would post: Running with an address, and Ready (or not yet). */
export function fakePodStatus(ip: string, ready: boolean, now: Date): V1PodStatus {
  const readyStatus = ready ? 'True' : 'False';
  return {
    phase: 'Running',
    podIP: ip,
    podIPs: [{ ip }],
    startTime: now,
    conditions: [
      { type: 'PodScheduled', status: 'True', lastTransitionTime: now },
      { type: 'Initialized', status: 'True', lastTransitionTime: now },
      { type: 'ContainersReady', status: readyStatus, lastTransitionTime: now },
      { type: 'Ready', status: readyStatus, lastTransitionTime: now },
    ],
  };
}
