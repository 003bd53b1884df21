/**
 * The east-west gateway controller: for each Gateway of class istio-east-west, a ServiceAccount,
 * a Deployment running `ambit gateway` and a LoadBalancer Service, and the Gateway's status
 * (addresses, Accepted, Programmed, listeners). Ensures GatewayClass istio-east-west exists.
 */
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import { errorMessage } from '../../kube/index.js';
import { backoffDelay } from '../../util/backoff.js';
import type { Logger } from '../../util/log.js';
import { EAST_WEST_GATEWAY_CLASS, GATEWAY_API_GROUP, GATEWAY_NAME_LABEL } from './constants.js';
import { gatewayKey, isEastWestGateway } from './gateway.js';
import { ensureGatewayClass } from './gateway-class.js';
import { kubeGatewayApi, type GatewayApi } from './kube-api.js';
import { createGatewayControllerMetrics, type GatewayControllerMetrics } from './metrics.js';
import { GatewayReconciler } from './reconciler.js';
import { informerSources, type GatewaySources, type WatchedKind } from './sources.js';
import { WorkQueue } from './work-queue.js';

export interface EastWestGatewayControllerOptions {
  kube: KubeConfig;
  clusterId: string;
  /** The cluster's network, for Gateways without a `topology.istio.io/network` label. */
  network: string;
  trustDomain: string;
  systemNamespace: string;
  /** Image of the gateway pods: the control plane's own (see ownImage). */
  image: string;
  imagePullPolicy?: string;
  /** AMBIT_LOG_LEVEL of the gateway pods; unset leaves their default. */
  logLevel?: string;
  log: Logger;
  registry: Registry;
}

/** Replacements for the API server, for tests. */
export interface ControllerBackends {
  api: GatewayApi;
  sources: GatewaySources;
  now: () => Date;
  /** Backoff of failed reconciles and GatewayClass checks. */
  retry: { baseDelayMs: number; maxDelayMs: number };
}

type ClassState = 'unknown' | 'ours' | 'foreign';

/** The Gateway an owned object belongs to: its controller ownerReference, else its gateway-name label. */
function ownerKey(object: KubernetesObject): string | undefined {
  const namespace = object.metadata?.namespace;
  if (!namespace) return undefined;
  const owner = object.metadata?.ownerReferences?.find((ref) => ref.kind === 'Gateway' && ref.apiVersion.startsWith(`${GATEWAY_API_GROUP}/`));
  const name = owner?.name ?? object.metadata?.labels?.[GATEWAY_NAME_LABEL];
  return name ? gatewayKey(namespace, name) : undefined;
}

export class EastWestGatewayController {
  private readonly api: GatewayApi;
  private readonly sources: GatewaySources;
  private readonly now: () => Date;
  private readonly retry: ControllerBackends['retry'];
  private readonly log: Logger;
  private readonly metrics: GatewayControllerMetrics;
  private readonly queue: WorkQueue;
  private classState: ClassState = 'unknown';
  private classCheck: Promise<void> | undefined;
  private classRetry: NodeJS.Timeout | undefined;
  private classFailures = 0;
  private running = false;

  constructor(options: EastWestGatewayControllerOptions, backends: Partial<ControllerBackends> = {}) {
    this.log = options.log;
    this.api = backends.api ?? kubeGatewayApi(options.kube);
    this.sources = backends.sources ?? informerSources(options.kube, options.log);
    this.now = backends.now ?? (() => new Date());
    this.retry = backends.retry ?? { baseDelayMs: 1000, maxDelayMs: 60_000 };
    this.metrics = createGatewayControllerMetrics(options.registry);
    const reconciler = new GatewayReconciler({
      api: this.api,
      gateways: this.sources.gateways,
      owned: this.sources.owned,
      clusterNetwork: options.network,
      workload: {
        clusterId: options.clusterId,
        trustDomain: options.trustDomain,
        systemNamespace: options.systemNamespace,
        image: options.image,
        imagePullPolicy: options.imagePullPolicy ?? 'IfNotPresent',
        ...(options.logLevel ? { logLevel: options.logLevel } : {}),
      },
      log: options.log,
      metrics: this.metrics,
      now: this.now,
    });
    this.queue = new WorkQueue(
      async (key) => {
        try {
          await reconciler.reconcile(key);
          this.metrics.reconciles.inc({ result: 'ok' });
        } catch (err) {
          this.metrics.reconciles.inc({ result: 'error' });
          throw err;
        }
      },
      {
        ...this.retry,
        onError: (key, err, attempt, delayMs) => {
          if (attempt === 1 || attempt % 10 === 0) this.log.warn({ gateway: key, attempt, retryInMs: delayMs, reason: errorMessage(err) }, 'Gateway reconcile failed; retrying');
        },
      },
    );
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.sources.start({
      changed: (kind, object) => this.changed(kind, object),
      // The Gateway CRD became readable (installed after the control plane started): the class may be creatable now.
      listed: (kind) => {
        if (kind === 'Gateway' && this.classState !== 'ours') this.checkClass();
      },
    });
    this.checkClass();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.classRetry);
    await this.sources.stop();
    await this.queue.stop();
    await this.classCheck;
  }

  /** Resolves once the GatewayClass check and every queued reconcile are done (retries on a timer excepted). */
  async idle(): Promise<void> {
    while (this.classCheck || !this.queue.isIdle()) {
      await this.classCheck;
      await this.queue.idle();
    }
  }

  /**
   * Whether `<namespace>/<name>` is the ServiceAccount this controller made for an east-west Gateway it
   * runs (the gateway pods' identity): the Gateway exists with class istio-east-west, the class is ours,
   * and the ServiceAccount is owned by that Gateway. The control plane's xDS lets these subscribe.
   */
  isGatewayServiceAccount(namespace: string, name: string): boolean {
    if (this.classState !== 'ours') return false;
    const gateway = this.sources.gateways.get(name, namespace);
    if (!gateway || !isEastWestGateway(gateway)) return false;
    const account = this.sources.owned.ServiceAccount.get(name, namespace);
    return account !== undefined && ownerKey(account) === gatewayKey(namespace, name);
  }

  private changed(kind: WatchedKind, object: KubernetesObject): void {
    if (this.classState !== 'ours') return;
    const key = kind === 'Gateway' ? gatewayKey(object.metadata?.namespace ?? '', object.metadata?.name ?? '') : ownerKey(object);
    if (key) this.queue.add(key);
  }

  private checkClass(): void {
    if (this.classCheck || !this.running) return;
    clearTimeout(this.classRetry);
    this.classCheck = ensureGatewayClass(this.api, { log: this.log, metrics: this.metrics, now: this.now })
      .then((ownership) => {
        this.classFailures = 0;
        if (ownership.ours) {
          const before = this.classState;
          this.classState = 'ours';
          if (before !== 'ours') for (const gateway of this.sources.gateways.list()) this.changed('Gateway', gateway);
        } else if (this.classState !== 'foreign') {
          this.classState = 'foreign';
          this.log.warn(
            { gatewayClass: EAST_WEST_GATEWAY_CLASS, controllerName: ownership.controllerName },
            'GatewayClass belongs to another controller; leaving its Gateways alone',
          );
        }
      })
      .catch((err: unknown) => {
        this.classFailures++;
        const delay = backoffDelay(this.classFailures, { initialMs: this.retry.baseDelayMs, maxMs: this.retry.maxDelayMs });
        if (this.classFailures === 1 || this.classFailures % 10 === 0) {
          this.log.info({ gatewayClass: EAST_WEST_GATEWAY_CLASS, reason: errorMessage(err), retryInMs: delay }, 'cannot ensure GatewayClass yet (Gateway API CRDs not installed?)');
        }
        if (!this.running) return;
        this.classRetry = setTimeout(() => this.checkClass(), delay);
      })
      .finally(() => {
        this.classCheck = undefined;
      });
  }
}
