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
import { WaypointSchema } from '../../gen/ambit/waypoint/waypoint_pb.js';
import type { Address } from '../../gen/istio/workload/workload_pb.js';
import { apiClient, errorMessage, isNotFound, startInformer, type Informer, type ListResult } from '../../kube/index.js';
import type { Logger } from '../../util/log.js';
import { createGatewayClassIfMissing } from '../gateways/gateway-class.js';
import { kubeGatewayApi, type GatewayApi } from '../gateways/kube-api.js';
import type { GatewayWorkloadSettings } from '../gateways/render.js';
import { kubeTime } from '../gateways/status.js';
import type { ResourceCache } from '../xds/resource-cache.js';
import { readWaypointGateway, renderWaypointObjects, WAYPOINT_CONTROLLER_NAME, type WaypointGateway } from './objects.js';
import { InvalidPolicyError, placePolicies, readTargetedPolicy, type TargetedPolicy } from './policies.js';

export interface WaypointControllerOptions {
  kube: KubeConfig;
  cache: ResourceCache;
  network: string;
  domainSuffix: string;
  workload: GatewayWorkloadSettings;
  /** The mesh's Address resources (services carry `Service.waypoint`). */
  addresses: () => ReadonlyMap<string, Address>;
  registry: Registry;
  log: Logger;
}

/** The services (`<ns>/<hostname>`) whose Service.waypoint names this waypoint's Service. */
export function servicesOf(gateway: WaypointGateway, addresses: ReadonlyMap<string, Address>, domainSuffix: string): string[] {
  const host = serviceHostname(gateway.objectName, gateway.namespace, domainSuffix);
  const served: string[] = [];
  for (const [name, address] of addresses) {
    if (address.type.case !== 'service') continue;
    const waypoint = address.type.value.waypoint?.destination;
    if (waypoint?.case === 'hostname' && waypoint.value.namespace === gateway.namespace && waypoint.value.hostname === host) served.push(name);
  }
  return served.sort();
}

export class WaypointController {
  private readonly api: GatewayApi;
  private readonly custom: CustomObjectsApi;
  private informer?: Informer<KubernetesObject>;
  private policyInformer?: Informer<KubernetesObject>;
  /** Policies with targetRefs, by `<ns>/<name>`: the last good translation of each. */
  private readonly policies = new Map<string, TargetedPolicy>();
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
        this.policies.delete(key);
        return this.schedule();
      }
      try {
        const targeted = readTargetedPolicy(object as never);
        if (targeted) this.policies.set(key, targeted);
        else this.policies.delete(key);
      } catch (err) {
        if (!(err instanceof InvalidPolicyError)) throw err;
        this.rejectedPolicies.inc();
        this.options.log.warn({ policy: key, field: err.field, reason: err.message, keeping: this.policies.has(key) ? 'last good version' : 'nothing' }, 'invalid AuthorizationPolicy for a waypoint rejected');
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

  /** Whether `<namespace>/<name>` is the ServiceAccount a waypoint Gateway runs as: it may subscribe to that waypoint's resource. */
  isWaypointServiceAccount(namespace: string, name: string): boolean {
    for (const gateway of this.gateways.values()) if (gateway.namespace === namespace && gateway.serviceAccount === name && gateway.problems.length === 0) return true;
    return false;
  }

  /** Something the Waypoint resources derive from changed (services, their waypoints). */
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
    for (const gateway of this.gateways.values()) {
      if (gateway.problems.length) continue;
      const name = waypointResourceName(gateway.namespace, gateway.name);
      names.add(name);
      const services = servicesOf(gateway, this.options.addresses(), this.options.domainSuffix);
      const authorizations = placePolicies(gateway, this.policies.values(), services, this.options.domainSuffix);
      const resource = create(WaypointSchema, { name: gateway.name, namespace: gateway.namespace, services, authorizations });
      this.options.cache.set(WAYPOINT_TYPE_URL, name, toBinary(WaypointSchema, resource));
    }
    for (const name of this.published) if (!names.has(name)) this.options.cache.delete(WAYPOINT_TYPE_URL, name);
    this.published.clear();
    for (const name of names) this.published.add(name);
    if (this.gateways.size) await this.ensureClasses();
    let waiting = false;
    for (const gateway of this.gateways.values()) if (!(await this.program(gateway))) waiting = true;
    if (waiting) setTimeout(() => this.schedule(), 2000).unref();
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
    const key = `status:${gateway.namespace}/${gateway.name}`;
    const comparable = JSON.stringify(status, (k, v: unknown) => (k === 'lastTransitionTime' ? undefined : v));
    if (this.written.get(key) === comparable) return;
    try {
      await this.api.patchGatewayStatus(gateway.namespace, gateway.name, status as never);
      this.written.set(key, comparable);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
