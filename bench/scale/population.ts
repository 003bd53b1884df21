/**
 * Puts the scale case's fake nodes and pods into a lab cluster through the API, keeps the nodes
 * Ready while the case runs, flips pods' readiness, and removes everything again.
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import { waitUntil } from '../exec.js';
import type { LabCluster } from '../multicluster-lab.js';
import { coreApiFor, createOrKeep, errorMessage, forEachLimited, mergePatch, statusCode, withRetries } from './kube-api.js';
import {
  FAKE_NODE_LABEL,
  fakeNode,
  fakeNodeName,
  fakeNodeStatus,
  fakePodIp,
  fakePodStatus,
  SCALE_NAMESPACE,
  scaleNamespace,
  scalePod,
  scalePodName,
  scaleService,
  startsNotReady,
  type ScaleSizes,
} from './objects.js';

/** Requests in flight per cluster while creating pods. */
export const API_CONCURRENCY = 32;
/** The node lifecycle controller marks a node NotReady after 40 s without a heartbeat. */
const HEARTBEAT_MS = 10_000;

type Log = (line: string) => void;

export class ScaleCluster {
  private heartbeat?: NodeJS.Timeout;
  private readonly since = new Date();

  constructor(
    readonly cluster: LabCluster,
    /** Position of the cluster in the lab (0, 1): it picks the cluster's fake pod address range. */
    readonly index: number,
    private readonly sizes: ScaleSizes,
    private readonly log: Log,
    readonly api: CoreV1Api = coreApiFor(cluster.context),
  ) {}

  get nodeNames(): string[] {
    return Array.from({ length: this.sizes.fakeNodesPerCluster }, (_, i) => fakeNodeName(i));
  }

  podIp(podIndex: number): string {
    return fakePodIp(this.index, podIndex);
  }

  /** Removes what an earlier run may have left, so that this run starts from nothing. */
  async removeLeftovers(): Promise<void> {
    const namespace = await this.api.readNamespace({ name: SCALE_NAMESPACE }).catch(() => undefined);
    const nodes = await this.api.listNode({ labelSelector: FAKE_NODE_LABEL });
    if (!namespace && nodes.items.length === 0) return;
    this.log(`  ${this.cluster.name}: removing the leftovers of an earlier run`);
    await this.remove(nodes.items.map((n) => n.metadata!.name!));
  }

  async createNodes(): Promise<void> {
    const region = this.cluster.nodes[0]?.region ?? '';
    for (const name of this.nodeNames) {
      await createOrKeep(`create node ${name}`, () => this.api.createNode({ body: fakeNode(name, { region, zone: 'scale' }) }));
    }
    await this.postNodeStatus();
    this.heartbeat = setInterval(() => void this.postNodeStatus().catch((err: unknown) => this.log(`  ${this.cluster.name}: fake node heartbeat failed: ${errorMessage(err)}`)), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  private async postNodeStatus(): Promise<void> {
    const status = fakeNodeStatus(new Date(), this.since);
    for (const name of this.nodeNames) await withRetries(`status of node ${name}`, () => this.api.patchNodeStatus({ name, body: { status } }, mergePatch));
  }

  /** The namespace (ambient) and the global Service; waits for the namespace's default ServiceAccount, without which pods are refused. */
  async createNamespaceAndService(): Promise<void> {
    await createOrKeep(`create namespace ${SCALE_NAMESPACE}`, () => this.api.createNamespace({ body: scaleNamespace() }));
    await waitUntil(`service account ${SCALE_NAMESPACE}/default in ${this.cluster.name}`, async () => {
      await this.api.readNamespacedServiceAccount({ name: 'default', namespace: SCALE_NAMESPACE });
      return true;
    }, 60_000, 200);
    await createOrKeep(`create service ${SCALE_NAMESPACE}/scale`, () => this.api.createNamespacedService({ namespace: SCALE_NAMESPACE, body: scaleService() }));
  }

  /**
   * Creates every pod and posts its status right after, as a kubelet would once it runs: Running,
   * with its address, Ready except for the last `latencySamples`.
   */
  async createPods(): Promise<void> {
    const total = this.sizes.podsPerCluster;
    const nodes = this.nodeNames;
    let done = 0;
    const indexes = Array.from({ length: total }, (_, i) => i);
    await forEachLimited(indexes, API_CONCURRENCY, async (i) => {
      const name = scalePodName(i);
      await createOrKeep(`create pod ${name}`, () => this.api.createNamespacedPod({ namespace: SCALE_NAMESPACE, body: scalePod(name, nodes[i % nodes.length]!) }));
      await this.postPodStatus(i, !startsNotReady(i, this.sizes));
      done++;
      if (done % Math.max(1, Math.round(total / 5)) === 0) this.log(`  ${this.cluster.name}: ${done}/${total} pods`);
    });
  }

  async postPodStatus(podIndex: number, ready: boolean): Promise<void> {
    const name = scalePodName(podIndex);
    const status = fakePodStatus(this.podIp(podIndex), ready, new Date());
    await withRetries(`status of pod ${name}`, () => this.api.patchNamespacedPodStatus({ name, namespace: SCALE_NAMESPACE, body: { status } }, mergePatch));
  }

  /** Deletes the pods at once (no kubelet would confirm a graceful deletion), the namespace and the fake nodes. */
  async remove(nodeNames = this.nodeNames): Promise<void> {
    clearInterval(this.heartbeat);
    await this.api.deleteCollectionNamespacedPod({ namespace: SCALE_NAMESPACE, gracePeriodSeconds: 0 }).catch(ignoreNotFound);
    await this.api.deleteNamespace({ name: SCALE_NAMESPACE }).catch(ignoreNotFound);
    for (const name of nodeNames) await this.api.deleteNode({ name }).catch(ignoreNotFound);
    await waitUntil(`namespace ${SCALE_NAMESPACE} in ${this.cluster.name} to be deleted`, async () => {
      try {
        await this.api.readNamespace({ name: SCALE_NAMESPACE });
        return false;
      } catch (err) {
        return statusCode(err) === 404;
      }
    }, 180_000, 1000);
  }
}

function ignoreNotFound(err: unknown): void {
  if (statusCode(err) !== 404) throw err;
}
