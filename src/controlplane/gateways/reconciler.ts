/**
 * One reconcile of one east-west Gateway: make (or remove) its ServiceAccount, Deployment and
 * Service so they match the Gateway, then write its status if that changed. Reads come from the
 * informer caches; writes happen only when the cached object differs from the desired one.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from '../../util/log.js';
import { isAccepted, isEastWestGateway, isRecord, readGateway, type GatewayObject, type GatewayReading } from './gateway.js';
import type { GatewayApi, OwnedKind, OwnedObject } from './kube-api.js';
import type { GatewayControllerMetrics } from './metrics.js';
import { renderGatewayResources, type GatewayWorkloadSettings } from './render.js';
import type { ObjectStore } from './sources.js';
import { computeGatewayStatus, sameStatus, type ObservedResources } from './status.js';

export interface GatewayReconcilerOptions {
  api: GatewayApi;
  gateways: ObjectStore<GatewayObject>;
  owned: Record<OwnedKind, ObjectStore<KubernetesObject>>;
  /** The cluster's network: for Gateways without a `topology.istio.io/network` label. */
  clusterNetwork: string;
  workload: GatewayWorkloadSettings;
  log: Logger;
  metrics: GatewayControllerMetrics;
  now: () => Date;
}

const OWNED_KINDS: OwnedKind[] = ['Deployment', 'Service', 'ServiceAccount'];

/** Every field of `desired` has the same value in `actual` (which may have more: defaults, status). */
export function isSubset(desired: unknown, actual: unknown): boolean {
  if (Array.isArray(desired)) return Array.isArray(actual) && desired.length === actual.length && desired.every((d, i) => isSubset(d, actual[i]));
  if (isRecord(desired)) return isRecord(actual) && Object.entries(desired).every(([key, value]) => value === undefined || isSubset(value, actual[key]));
  return desired === actual;
}

export function isOwnedBy(object: KubernetesObject, uid: string): boolean {
  return !!uid && (object.metadata?.ownerReferences ?? []).some((ref) => ref.uid === uid);
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export class GatewayReconciler {
  /** Per Gateway, the Accepted verdict last logged: a malformed Gateway is logged once, not on every event. */
  private readonly logged = new Map<string, string>();

  constructor(private readonly options: GatewayReconcilerOptions) {}

  async reconcile(key: string): Promise<void> {
    const { namespace, name } = splitKey(key);
    const gateway = this.options.gateways.get(name, namespace);
    if (!gateway) {
      // Its objects go with it: they carry an ownerReference to it.
      this.logged.delete(key);
      return;
    }
    const uid = gateway.metadata?.uid ?? '';
    if (!isEastWestGateway(gateway)) {
      // The class was changed away from istio-east-west: what was made for it goes.
      await this.removeOwned(key, namespace, name, uid, 'the Gateway is no longer of class istio-east-west');
      this.logged.delete(key);
      return;
    }
    const reading = readGateway(gateway, this.options.clusterNetwork);
    let observed: ObservedResources = {};
    if (isAccepted(reading)) observed = await this.ensureResources(key, reading);
    else await this.removeOwned(key, namespace, name, uid, 'the Gateway is not accepted');
    const status = computeGatewayStatus(reading, observed, gateway.status, this.options.now());
    this.logVerdict(key, reading, status.conditions[0]!.status, status.conditions[0]!.message);
    if (sameStatus(gateway.status, status)) return;
    await this.options.api.patchGatewayStatus(namespace, name, status);
    this.options.metrics.writes.inc({ kind: 'Gateway', operation: 'status' });
    const programmed = status.conditions[1]!;
    this.options.log.info(
      { gateway: key, accepted: status.conditions[0]!.status, programmed: programmed.status, reason: programmed.reason, addresses: status.addresses.map((a) => a.value) },
      'Gateway status updated',
    );
  }

  private logVerdict(key: string, reading: GatewayReading, accepted: string, message: string): void {
    const invalidListeners = reading.listeners.some((l) => l.problem);
    const verdict = `${accepted}: ${message}`;
    if (this.logged.get(key) === verdict) return;
    this.logged.set(key, verdict);
    if (accepted === 'False' || invalidListeners) {
      const listeners = Object.fromEntries(reading.listeners.filter((l) => l.problem).map((l) => [l.name, l.problem]));
      this.options.log.warn({ gateway: key, accepted, message, ...(invalidListeners ? { invalidListeners: listeners } : {}) }, 'Gateway is not fully accepted');
    }
  }

  private async ensureResources(key: string, reading: GatewayReading): Promise<ObservedResources> {
    const desired = renderGatewayResources(reading, this.options.workload);
    for (const object of [desired.serviceAccount, desired.deployment, desired.service]) {
      const blocked = await this.ensure(key, object, reading.uid);
      if (blocked) return { blocked };
    }
    const { owned } = this.options;
    const current = (kind: OwnedKind) => {
      const object = owned[kind].get(reading.name, reading.namespace);
      return object && isOwnedBy(object, reading.uid) ? object : undefined;
    };
    return { service: current('Service'), deployment: current('Deployment') };
  }

  /** Applies `object` unless it is already as desired; returns why it cannot be when its name is taken. */
  private async ensure(key: string, object: OwnedObject, uid: string): Promise<string | undefined> {
    const { api, owned, log, metrics } = this.options;
    const name = object.metadata!.name!;
    const namespace = object.metadata!.namespace!;
    // The informers see only objects carrying the controller's label; anything else of that name must be looked up.
    const current = owned[object.kind].get(name, namespace) ?? (await api.read(object.kind, namespace, name));
    if (current && !isOwnedBy(current, uid)) {
      // A ServiceAccount has nothing to program: one that is already there serves as the gateway's identity as it is.
      if (object.kind === 'ServiceAccount') return undefined;
      return `${object.kind} ${namespace}/${name} already exists and is not owned by this Gateway; delete it or rename the Gateway`;
    }
    if (current && isSubset(object, current)) return undefined;
    await api.apply(object);
    metrics.writes.inc({ kind: object.kind, operation: 'apply' });
    log.info({ gateway: key, kind: object.kind, object: `${namespace}/${name}`, created: !current }, current ? 'updated gateway object' : 'created gateway object');
    return undefined;
  }

  private async removeOwned(key: string, namespace: string, name: string, uid: string, reason: string): Promise<void> {
    const { api, owned, log, metrics } = this.options;
    for (const kind of OWNED_KINDS) {
      const object = owned[kind].get(name, namespace);
      if (!object || !isOwnedBy(object, uid)) continue;
      await api.remove(kind, namespace, name, object.metadata!.uid!);
      metrics.writes.inc({ kind, operation: 'delete' });
      log.info({ gateway: key, kind, object: `${namespace}/${name}`, reason }, 'deleted gateway object');
    }
  }
}
