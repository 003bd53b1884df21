/**
 * The waypoint controller: for each Gateway of class istio-waypoint (or seed 004's istio-mesh), the
 * waypoint's objects and status, and its ambit.waypoint.Waypoint resource (the services that use
 * it), derived from the Gateways and the mesh's services. Ensures the two GatewayClasses exist.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { CustomObjectsApi, type KubeConfig, type KubernetesObject, type V1Deployment } from '@kubernetes/client-node';
import { isDeepStrictEqual } from 'node:util';
import { Counter, type Registry } from 'prom-client';

import { GATEWAY_API_GROUP } from '../../api/names.js';
import { MESH_GATEWAY_CLASS, serviceHostname, WAYPOINT_GATEWAY_CLASS, WAYPOINT_TYPE_URL, waypointResourceName } from '../../api/resources.js';
import { WaypointSchema, type L7Authorization } from '../../gen/ambit/waypoint/waypoint_pb.js';
import type { Address } from '../../gen/istio/workload/workload_pb.js';
import { apiClient, errorMessage, isNotFound, mergePatch, startInformer, statusPatch, type Informer, type ListResult } from '../../kube/index.js';
import type { Logger } from '../../util/log.js';
import { createGatewayClassIfMissing } from '../gateways/gateway-class.js';
import { kubeGatewayApi, type GatewayApi } from '../gateways/kube-api.js';
import type { GatewayWorkloadSettings } from '../gateways/render.js';
import { kubeTime } from '../gateways/status.js';
import type { ResourceCache } from '../xds/resource-cache.js';
import { readWaypointGateway, renderWaypointObjects, WAYPOINT_CONTROLLER_NAME, type WaypointGateway } from './objects.js';
import { waypointAcceptance } from './policy-status.js';
import { destinationHostnames, type DestinationPolicyInit, type ServiceRoutesInit } from '../routes/mesh-routes.js';
import { InvalidPolicyError, isTargeted, placePolicies, placeSelectorPolicies, readL7Authorization, readTargetedPolicy, type TargetedPolicy } from './policies.js';

export interface WaypointControllerOptions {
  kube: KubeConfig;
  cache: ResourceCache;
  network: string;
  domainSuffix: string;
  workload: GatewayWorkloadSettings;
  /** The mesh's Address resources (services carry `Service.waypoint`, workloads `Workload.waypoint`). */
  addresses: () => ReadonlyMap<string, Address>;
  /** The selector policies (`<ns>/<name>`) a waypoint enforces for a workload it serves (the registry leaves them out of the workload). */
  waypointPolicies?: (uid: string) => readonly string[] | undefined;
  registry: Registry;
  log: Logger;
  /** Called when the waypoint Gateways changed: which ServiceAccount may read which Waypoint resource. */
  onAccessChanged?: () => void;
  /** The mesh routes of a service (`<ns>/<hostname>`), if any route it. */
  routesOf?: (service: string) => ServiceRoutesInit | undefined;
  /** The DestinationRule traffic policy of requests to a hostname, if any. */
  destinationPolicyOf?: (hostname: string) => DestinationPolicyInit | undefined;
}

/** The services whose requests a waypoint routes: those it serves, and those its served workloads back. */
export function routedServices(services: readonly string[], workloads: readonly string[], addresses: ReadonlyMap<string, Address>): string[] {
  const names = new Set(services);
  for (const uid of workloads) {
    const address = addresses.get(uid);
    if (address?.type.case === 'workload') for (const name of Object.keys(address.type.value.services)) names.add(name);
  }
  return [...names].sort();
}

/** The services (`<ns>/<hostname>`) and workloads (uids) whose Service.waypoint / Workload.waypoint names this waypoint's Service. */
export function servedBy(gateway: WaypointGateway, addresses: ReadonlyMap<string, Address>, domainSuffix: string): { services: string[]; workloads: string[] } {
  const host = serviceHostname(gateway.objectName, gateway.namespace, domainSuffix);
  const services: string[] = [];
  const workloads: string[] = [];
  for (const [name, address] of addresses) {
    const waypoint = address.type.value?.waypoint?.destination;
    if (waypoint?.case !== 'hostname' || waypoint.value.namespace !== gateway.namespace || waypoint.value.hostname !== host) continue;
    if (address.type.case === 'service') services.push(name);
    else if (address.type.case === 'workload') workloads.push(name);
  }
  return { services: services.sort(), workloads: workloads.sort() };
}

/**
 * What the controller keeps of one AuthorizationPolicy. One with targetRefs is the waypoints' own
 * (its status says whether one enforces it); any other is ztunnel's unless a waypoint serves the
 * workloads it selects (its error matters only then).
 */
type PolicyRecord =
  | { kind: 'targeted'; generation: number; good?: TargetedPolicy; error?: string }
  | { kind: 'selector'; good?: L7Authorization; error?: InvalidPolicyError };

export class WaypointController {
  private readonly api: GatewayApi;
  private readonly custom: CustomObjectsApi;
  private informer?: Informer<KubernetesObject>;
  private policyInformer?: Informer<KubernetesObject>;
  /** Every AuthorizationPolicy by `<ns>/<name>`: its last good translation and why its latest version was rejected. */
  private readonly policyRecords = new Map<string, PolicyRecord>();
  private readonly reportedErrors = new Set<string>();
  /** The waypoint objects and status need another look (a Gateway changed, or a Deployment was not ready yet). */
  private programDue = true;
  private readonly rejectedPolicies: Counter;
  private readonly gateways = new Map<string, WaypointGateway>();
  private readonly written = new Map<string, unknown>();
  private readonly published = new Set<string>();
  private timer?: NodeJS.Timeout;
  private running = false;
  private classesChecked = false;

  constructor(private readonly options: WaypointControllerOptions) {
    this.api = kubeGatewayApi(options.kube);
    this.custom = apiClient(options.kube, CustomObjectsApi);
    this.rejectedPolicies = new Counter({ name: 'ambit_waypoint_policies_rejected_total', help: 'AuthorizationPolicies for waypoints rejected as invalid (their last good version stays in force)', registers: [options.registry] });
  }

  start(): void {
    this.running = true;
    const changed = (object: KubernetesObject, deleted: boolean) => {
      const key = `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
      const reading = deleted ? undefined : readWaypointGateway(object);
      if (reading) this.gateways.set(key, reading);
      else this.gateways.delete(key);
      this.programDue = true;
      this.schedule();
    };
    this.informer = startInformer<KubernetesObject>({
      config: this.options.kube,
      path: `/apis/${GATEWAY_API_GROUP}/v1/gateways`,
      list: () => this.custom.listClusterCustomObject({ group: GATEWAY_API_GROUP, version: 'v1', plural: 'gateways' }) as Promise<ListResult<KubernetesObject>>,
      what: 'Gateways (waypoints)',
      log: this.options.log,
      optional: true,
      onAdd: (o) => changed(o, false),
      onUpdate: (o) => changed(o, false),
      onDelete: (o) => changed(o, true),
    });
    const policyChanged = (object: KubernetesObject, deleted: boolean) => {
      const key = `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
      if (deleted) {
        this.policyRecords.delete(key);
        this.written.delete(`policy-status:${key}`);
        return this.schedule();
      }
      const previous = this.policyRecords.get(key);
      if (isTargeted(object as { spec?: unknown })) {
        const record: PolicyRecord = { kind: 'targeted', generation: object.metadata?.generation ?? 0, good: previous?.kind === 'targeted' ? previous.good : undefined };
        try {
          record.good = readTargetedPolicy(object as never) ?? record.good;
        } catch (err) {
          if (!(err instanceof InvalidPolicyError)) throw err;
          record.error = err.message;
          this.rejectedPolicies.inc();
          this.options.log.warn({ policy: key, field: err.field, reason: err.message, keeping: record.good ? 'last good version' : 'nothing' }, 'invalid AuthorizationPolicy for a waypoint rejected');
        }
        this.policyRecords.set(key, record);
      } else {
        const record: PolicyRecord = { kind: 'selector', good: previous?.kind === 'selector' ? previous.good : undefined };
        try {
          record.good = readL7Authorization(object as never);
        } catch (err) {
          if (!(err instanceof InvalidPolicyError)) throw err;
          record.error = err;
        }
        this.policyRecords.set(key, record);
      }
      this.schedule();
    };
    this.policyInformer = startInformer<KubernetesObject>({
      config: this.options.kube,
      path: '/apis/security.istio.io/v1/authorizationpolicies',
      list: () => this.custom.listClusterCustomObject({ group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies' }) as Promise<ListResult<KubernetesObject>>,
      what: 'AuthorizationPolicies (waypoints)',
      log: this.options.log,
      optional: true,
      onAdd: (o) => policyChanged(o, false),
      onUpdate: (o) => policyChanged(o, false),
      onDelete: (o) => policyChanged(o, true),
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await this.informer?.stop();
    await this.policyInformer?.stop();
  }

  /** The Waypoint resources of the Gateways whose Deployment runs as ServiceAccount `<namespace>/<name>`: what it may read. */
  waypointResourcesOf(namespace: string, name: string): Set<string> {
    const names = new Set<string>();
    for (const gateway of this.gateways.values()) {
      if (gateway.namespace === namespace && gateway.serviceAccount === name && gateway.problems.length === 0) names.add(waypointResourceName(gateway.namespace, gateway.name));
    }
    return names;
  }

  /** Something the Waypoint resources derive from changed (services, workloads, their waypoints). */
  schedule(delayMs = 50): void {
    if (!this.running || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sync().catch((err: unknown) => {
        this.options.log.warn({ err: errorMessage(err) }, 'waypoint sync failed; retrying');
        this.schedule(2000);
      });
    }, delayMs);
  }

  private async sync(): Promise<void> {
    const names = new Set<string>();
    const servedServices = new Map<string, readonly string[]>();
    for (const gateway of this.gateways.values()) {
      if (gateway.problems.length) continue;
      const name = waypointResourceName(gateway.namespace, gateway.name);
      names.add(name);
      const { services, workloads } = servedBy(gateway, this.options.addresses(), this.options.domainSuffix);
      servedServices.set(name, services);
      const authorizations = [...placePolicies(gateway, this.targetedPolicies(), services, this.options.domainSuffix), ...this.workloadPolicies(gateway, workloads)];
      authorizations.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
      const routed = routedServices(services, workloads, this.options.addresses()).map((service) => ({ service, routes: this.options.routesOf?.(service) }));
      const routes = routed.flatMap((r) => r.routes ?? []);
      const hostnames = new Set(routed.flatMap((r) => destinationHostnames(r.service, r.routes)));
      const destinationPolicies = [...hostnames].sort().flatMap((hostname) => this.options.destinationPolicyOf?.(hostname) ?? []);
      const resource = create(WaypointSchema, { name: gateway.name, namespace: gateway.namespace, services, workloads, authorizations, routes, destinationPolicies });
      this.options.cache.set(WAYPOINT_TYPE_URL, name, toBinary(WaypointSchema, resource));
    }
    for (const name of this.published) if (!names.has(name)) this.options.cache.delete(WAYPOINT_TYPE_URL, name);
    this.published.clear();
    for (const name of names) this.published.add(name);
    await this.writePolicyStatuses(servedServices);
    if (!this.programDue) return;
    // Only Gateway changes (programDue) change who may read which Waypoint resource.
    this.programDue = false;
    this.options.onAccessChanged?.();
    if (this.gateways.size) await this.ensureClasses();
    let waiting = false;
    try {
      for (const gateway of this.gateways.values()) if (!(await this.program(gateway))) waiting = true;
    } catch (err) {
      this.programDue = true;
      throw err;
    }
    if (waiting) {
      setTimeout(() => {
        this.programDue = true;
        this.schedule();
      }, 2000).unref();
    }
  }

  /** The last good translation of every policy with targetRefs. */
  private *targetedPolicies(): Iterable<TargetedPolicy> {
    for (const record of this.policyRecords.values()) if (record.kind === 'targeted' && record.good) yield record.good;
  }

  /** The selector policies of the workloads a waypoint serves, placed; a policy the waypoint cannot read is reported once. */
  private workloadPolicies(gateway: WaypointGateway, workloads: readonly string[]): L7Authorization[] {
    const selectorRecord = (name: string) => {
      const record = this.policyRecords.get(name);
      return record?.kind === 'selector' ? record : undefined;
    };
    const { placed, used } = placeSelectorPolicies(workloads, (uid) => this.options.waypointPolicies?.(uid), { get: (name) => selectorRecord(name)?.good });
    for (const name of used) {
      const record = selectorRecord(name);
      const error = record?.error;
      if (!error || this.reportedErrors.has(`${name}|${error.message}`)) continue;
      this.reportedErrors.add(`${name}|${error.message}`);
      this.rejectedPolicies.inc();
      this.options.log.warn({ policy: name, waypoint: `${gateway.namespace}/${gateway.name}`, field: error.field, reason: error.message, keeping: record.good ? 'last good version' : 'nothing' }, 'AuthorizationPolicy on workloads behind a waypoint cannot be enforced there');
    }
    return placed;
  }

  /** The WaypointAccepted condition of every policy with targetRefs, written when it changes. */
  private async writePolicyStatuses(servedServices: ReadonlyMap<string, readonly string[]>): Promise<void> {
    for (const [key, record] of this.policyRecords) {
      if (record.kind !== 'targeted') continue;
      const condition = waypointAcceptance(record.good, record.error, this.gateways.values(), servedServices, this.options.domainSuffix);
      const [namespace, name] = key.split('/') as [string, string];
      try {
        await this.writeIfChanged(`policy-status:${key}`, condition, async () => {
          const status = { conditions: [{ ...condition, observedGeneration: record.generation, lastTransitionTime: kubeTime(new Date()) }] };
          await this.custom.patchNamespacedCustomObjectStatus({ group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', namespace, name, body: statusPatch(status) }, mergePatch);
        });
      } catch (err) {
        if (isNotFound(err)) continue;
        this.options.log.warn({ policy: key, err: errorMessage(err) }, 'cannot write the AuthorizationPolicy status; retrying');
        setTimeout(() => this.schedule(), 2000).unref();
      }
    }
  }

  /** Runs `write` unless `value` (without lastTransitionTime) is what was last written under `key`, and remembers it once written. */
  private async writeIfChanged(key: string, value: unknown, write: () => Promise<void>): Promise<void> {
    const comparable = JSON.stringify(value, (k, v: unknown) => (k === 'lastTransitionTime' ? undefined : v));
    if (this.written.get(key) === comparable) return;
    await write();
    this.written.set(key, comparable);
  }

  private async ensureClasses(): Promise<void> {
    if (this.classesChecked) return;
    for (const className of [WAYPOINT_GATEWAY_CLASS, MESH_GATEWAY_CLASS]) {
      await createGatewayClassIfMissing(this.api, className, WAYPOINT_CONTROLLER_NAME, 'ambit waypoints: L7 policy, routing and metrics for mesh traffic', new Date());
    }
    this.classesChecked = true;
  }

  /** Applies the objects and writes the status; true when the waypoint is ready (nothing to wait for). */
  private async program(gateway: WaypointGateway): Promise<boolean> {
    const now = kubeTime(new Date());
    const cond = (type: string, ok: boolean, reason: string, message: string) => ({ type, status: ok ? 'True' : 'False', reason, message, observedGeneration: gateway.generation, lastTransitionTime: now });
    if (gateway.problems.length) {
      const message = gateway.problems.join('; ');
      this.options.log.warn({ gateway: `${gateway.namespace}/${gateway.name}`, problems: gateway.problems }, 'waypoint Gateway not accepted');
      await this.writeStatus(gateway, { conditions: [cond('Accepted', false, 'InvalidParameters', message), cond('Programmed', false, 'Invalid', message)] });
      return true;
    }
    const objects = renderWaypointObjects(gateway, this.options.workload, this.options.network);
    const key = `objects:${gateway.namespace}/${gateway.name}`;
    if (!isDeepStrictEqual(this.written.get(key), objects)) {
      for (const object of [objects.serviceAccount, objects.service, objects.deployment]) if (object) await this.api.apply(object);
      this.written.set(key, objects);
      this.options.log.info({ gateway: `${gateway.namespace}/${gateway.name}`, deployment: objects.deployment.metadata?.name }, 'waypoint objects applied');
    }
    const deployment = (await this.api.read('Deployment', gateway.namespace, gateway.objectName)) as V1Deployment | undefined;
    const ready = (deployment?.status?.availableReplicas ?? 0) > 0;
    const conditions = [
      cond('Accepted', true, 'Accepted', 'Resource accepted'),
      ready ? cond('Programmed', true, 'Programmed', 'Resource programmed, assigned to service(s)') : cond('Programmed', false, 'Pending', 'waiting for the waypoint Deployment to have an available pod'),
    ];
    if (gateway.className === MESH_GATEWAY_CLASS) {
      conditions.push(
        ready
          ? cond('Ready', true, 'Ready', `Deployed waypoint proxy to "${gateway.namespace}" namespace for "${gateway.serviceAccount}" service account`)
          : cond('Ready', false, 'Pending', `waiting for the waypoint proxy of "${gateway.serviceAccount}" to be available`),
      );
    }
    await this.writeStatus(gateway, { conditions });
    return ready;
  }

  private async writeStatus(gateway: WaypointGateway, status: { conditions: Array<Record<string, unknown>> }): Promise<void> {
    try {
      await this.writeIfChanged(`status:${gateway.namespace}/${gateway.name}`, status, () => this.api.patchGatewayStatus(gateway.namespace, gateway.name, status as never));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
