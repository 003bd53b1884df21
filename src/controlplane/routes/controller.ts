/**
 * The ingress route controller: watches Istio Gateways/VirtualServices and Gateway API
 * Gateways (class istio)/HTTPRoutes, translates them into one ambit.route.RouteConfig per ingress
 * (pushed over xDS), makes the `<name>-istio` ingress objects of class-istio Gateways, and writes
 * Gateway and HTTPRoute status. An invalid object is logged and counted with the field named, and
 * its last good version stays in force.
 */
import { toBinary } from '@bufbuild/protobuf';
import { CustomObjectsApi, type KubeConfig, type KubernetesObject, type V1Service } from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import { isDeepStrictEqual } from 'node:util';
import { ingressTargetPort } from '../../api/ingress-template.js';
import { GATEWAY_API_GROUP } from '../../api/names.js';
import { INGRESS_GATEWAY_CLASS, INGRESS_GATEWAY_NAME, INGRESS_LABELS, INGRESS_SERVICE_ACCOUNT, ROUTE_TYPE_URL, routeResourceName } from '../../api/resources.js';
import { RouteConfigSchema } from '../../gen/ambit/route/route_pb.js';
import { apiClient, createInformer, errorMessage, isNotFound, mergePatch, statusPatch, type Informer, type ListResult } from '../../kube/index.js';
import type { Logger } from '../../util/log.js';
import { createGatewayClassIfMissing } from '../gateways/gateway-class.js';
import { kubeGatewayApi, type GatewayApi } from '../gateways/kube-api.js';
import type { GatewayWorkloadSettings } from '../gateways/render.js';
import { kubeTime } from '../gateways/status.js';
import type { ResourceCache } from '../xds/resource-cache.js';
import { InvalidObjectError, objectKey } from './fields.js';
import { readGrpcRoute, readHttpRoute, readK8sGateway, type K8sGateway, type K8sHttpRoute } from './gateway-api.js';
import { INGRESS_CONTROLLER_NAME, ingressDeploymentName, ingressLabels, renderIngressObjects } from './ingress-objects.js';
import { WAYPOINT_CONTROLLER_NAME } from '../waypoints/objects.js';
import { readIstioGateway, readVirtualService, type IstioGateway, type VirtualService } from './istio.js';
import { translateRoutes, type IngressProxy, type RouteParentStatus } from './translate.js';
import { readDestinationRule, type DestinationRule } from './destination-rule.js';
import { destinationPolicyOf, meshRoutesOf, type DestinationPolicyInit, type MeshRouteInput, type ServiceRoutesInit } from './mesh-routes.js';

export interface RouteControllerOptions {
  kube: KubeConfig;
  cache: ResourceCache;
  systemNamespace: string;
  network: string;
  domainSuffix?: string;
  workload: GatewayWorkloadSettings;
  serviceExists(hostname: string): boolean;
  log: Logger;
  registry: Registry;
  /** Called when the ingresses changed: which ServiceAccount may read which RouteConfig. */
  onAccessChanged?: () => void;
  /** The endpoints of a service hostname with their pod labels (DestinationRule subsets select among them). */
  endpointsOf?: MeshRouteInput['endpointsOf'];
  /** Called when the mesh routes' inputs changed (VirtualServices, DestinationRules, HTTPRoutes): the waypoints' turn. */
  onMeshRoutesChanged?: () => void;
}

type Kind = 'IstioGateway' | 'VirtualService' | 'Gateway' | 'HTTPRoute' | 'GRPCRoute' | 'DestinationRule';

const SOURCES: Array<{ kind: Kind; group: string; version: string; plural: string }> = [
  { kind: 'IstioGateway', group: 'networking.istio.io', version: 'v1', plural: 'gateways' },
  { kind: 'VirtualService', group: 'networking.istio.io', version: 'v1', plural: 'virtualservices' },
  { kind: 'Gateway', group: GATEWAY_API_GROUP, version: 'v1', plural: 'gateways' },
  { kind: 'HTTPRoute', group: GATEWAY_API_GROUP, version: 'v1', plural: 'httproutes' },
  { kind: 'GRPCRoute', group: GATEWAY_API_GROUP, version: 'v1', plural: 'grpcroutes' },
  { kind: 'DestinationRule', group: 'networking.istio.io', version: 'v1', plural: 'destinationrules' },
];

/** Parsed objects by key; an object that stops parsing keeps its last good version here. */
class LastGood<T> {
  readonly items = new Map<string, T>();
  readonly rejected = new Map<string, string>();
}

export class RouteController {
  private readonly informers = new Map<Kind, Informer<KubernetesObject>>();
  private readonly istioGateways = new LastGood<IstioGateway>();
  private readonly virtualServices = new LastGood<VirtualService>();
  private readonly k8sGateways = new LastGood<K8sGateway & { uid: string }>();
  private readonly httpRoutes = new LastGood<K8sHttpRoute>();
  private readonly grpcRoutes = new LastGood<K8sHttpRoute>();
  private readonly destinationRules = new LastGood<DestinationRule>();
  private readonly reportedMeshProblems = new Set<string>();
  private readonly api: GatewayApi;
  private readonly custom: CustomObjectsApi;
  private readonly written = new Map<string, unknown>();
  private readonly published = new Set<string>();
  private timer?: NodeJS.Timeout;
  private running = false;
  private readonly rejectedTotal: Counter;
  private readonly rejectedNow: Gauge;
  private classChecked = false;
  private lastNotes = new Set<string>();

  constructor(private readonly options: RouteControllerOptions) {
    this.api = kubeGatewayApi(options.kube);
    this.custom = apiClient(options.kube, CustomObjectsApi);
    this.rejectedTotal = new Counter({ name: 'ambit_route_objects_rejected_total', help: 'Route objects (Gateway, VirtualService, HTTPRoute) rejected as invalid', labelNames: ['kind'], registers: [options.registry] });
    this.rejectedNow = new Gauge({ name: 'ambit_route_objects_invalid', help: 'Route objects currently invalid (their last good version is in force)', labelNames: ['kind'], registers: [options.registry] });
  }

  start(): void {
    this.running = true;
    for (const source of SOURCES) {
      const path = `/apis/${source.group}/${source.version}/${source.plural}`;
      const changed = (object: KubernetesObject) => this.changed(source.kind, object, false);
      const removed = (object: KubernetesObject) => this.changed(source.kind, object, true);
      const informer = createInformer<KubernetesObject>({
        config: this.options.kube,
        path,
        list: () => this.custom.listClusterCustomObject({ group: source.group, version: source.version, plural: source.plural }) as Promise<ListResult<KubernetesObject>>,
        what: `${source.plural}.${source.group}`,
        log: this.options.log,
        optional: true,
        onAdd: changed,
        onUpdate: changed,
        onDelete: removed,
        onListed: () => this.schedule(),
      });
      this.informers.set(source.kind, informer);
      informer.start();
    }
    this.schedule();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await Promise.all([...this.informers.values()].map((i) => i.stop()));
  }

  /** Something the translation reads outside its own objects changed (services). */
  schedule(delayMs = 50): void {
    if (!this.running || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.sync().catch((err: unknown) => {
        this.options.log.warn({ err: errorMessage(err) }, 'route sync failed; retrying');
        this.schedule(2000);
      });
    }, delayMs);
  }

  /** The RouteConfigs of the ingress Deployments that run as ServiceAccount `<namespace>/<name>`: what it may read. */
  ingressRoutesOf(namespace: string, name: string): Set<string> {
    const names = new Set<string>();
    if (namespace === this.options.systemNamespace && name === INGRESS_SERVICE_ACCOUNT) names.add(routeResourceName(namespace, INGRESS_GATEWAY_NAME));
    for (const gateway of this.k8sGateways.items.values()) {
      // A class-istio Gateway's Deployment `<name>-istio` runs as the ServiceAccount of the same name.
      const deployment = ingressDeploymentName(gateway.name);
      if (gateway.namespace === namespace && deployment === name && gateway.className === INGRESS_GATEWAY_CLASS) names.add(routeResourceName(namespace, deployment));
    }
    return names;
  }

  private changed(kind: Kind, object: KubernetesObject, deleted: boolean): void {
    const key = objectKey(kind === 'IstioGateway' ? 'Gateway' : kind, object);
    const read = <T>(store: LastGood<T>, parse: (o: KubernetesObject) => T) => {
      if (deleted) {
        store.items.delete(key);
        store.rejected.delete(key);
        return;
      }
      try {
        store.items.set(key, parse(object));
        store.rejected.delete(key);
      } catch (err) {
        if (!(err instanceof InvalidObjectError)) throw err;
        this.rejectedTotal.inc({ kind: kind === 'IstioGateway' ? 'Gateway' : kind });
        store.rejected.set(key, err.message);
        this.options.log.warn({ object: key, field: err.problem.field, reason: err.problem.message, keeping: store.items.has(key) ? 'last good version' : 'nothing' }, 'invalid route object rejected');
      }
    };
    if (kind === 'IstioGateway') read(this.istioGateways, readIstioGateway);
    else if (kind === 'VirtualService') read(this.virtualServices, readVirtualService);
    else if (kind === 'HTTPRoute') read(this.httpRoutes, readHttpRoute);
    else if (kind === 'GRPCRoute') read(this.grpcRoutes, readGrpcRoute);
    else if (kind === 'DestinationRule') read(this.destinationRules, readDestinationRule);
    else if (deleted || (object as { spec?: { gatewayClassName?: string } }).spec?.gatewayClassName === INGRESS_GATEWAY_CLASS) read(this.k8sGateways, (o) => ({ ...readK8sGateway(o), uid: o.metadata?.uid ?? '' }));
    else {
      this.k8sGateways.items.delete(key);
      this.k8sGateways.rejected.delete(key);
    }
    for (const [label, store] of [['Gateway', this.istioGateways], ['VirtualService', this.virtualServices], ['HTTPRoute', this.httpRoutes], ['GRPCRoute', this.grpcRoutes], ['DestinationRule', this.destinationRules]] as const) this.rejectedNow.set({ kind: label }, store.rejected.size);
    if (kind !== 'IstioGateway' && kind !== 'Gateway') this.options.onMeshRoutesChanged?.();
    this.schedule();
  }

  /**
   * The mesh routes of service `<namespace>/<hostname>` (its waypoint applies them), from the last good
   * VirtualServices, DestinationRules and HTTPRoutes; undefined when nothing routes it. Problems (an
   * unknown host or subset) are logged once each; such a destination has no endpoint (503).
   */
  meshRoutesOf(service: string): ServiceRoutesInit | undefined {
    const result = meshRoutesOf(service, {
      virtualServices: [...this.virtualServices.items.values()],
      destinationRules: [...this.destinationRules.items.values()],
      httpRoutes: [...this.httpRoutes.items.values(), ...this.grpcRoutes.items.values()],
      domainSuffix: this.options.domainSuffix ?? 'cluster.local',
      serviceExists: this.options.serviceExists,
      endpointsOf: this.options.endpointsOf ?? (() => []),
    });
    for (const problem of result?.problems ?? []) {
      if (this.reportedMeshProblems.has(problem)) continue;
      if (this.reportedMeshProblems.size > 10_000) this.reportedMeshProblems.clear();
      this.reportedMeshProblems.add(problem);
      this.options.log.warn({ service, problem }, 'mesh route cannot be followed as written');
    }
    return result?.routes;
  }

  /** The DestinationRule traffic policy for requests to `hostname` (load balancer, outlier detection), if any. */
  destinationPolicyOf(hostname: string): DestinationPolicyInit | undefined {
    return destinationPolicyOf(hostname, { destinationRules: [...this.destinationRules.items.values()], domainSuffix: this.options.domainSuffix ?? 'cluster.local', serviceExists: this.options.serviceExists });
  }

  private proxies(): IngressProxy[] {
    const proxies: IngressProxy[] = [
      {
        namespace: this.options.systemNamespace,
        name: INGRESS_GATEWAY_NAME,
        labels: { ...INGRESS_LABELS },
        targetPort: (port) => (port === 80 || port === 443 ? ingressTargetPort(port) : port),
      },
    ];
    for (const gateway of this.k8sGateways.items.values()) {
      proxies.push({ namespace: gateway.namespace, name: ingressDeploymentName(gateway.name), labels: ingressLabels(gateway.name), targetPort: ingressTargetPort, gateway: { namespace: gateway.namespace, name: gateway.name } });
    }
    return proxies;
  }

  private async sync(): Promise<void> {
    const result = translateRoutes({
      proxies: this.proxies(),
      istioGateways: [...this.istioGateways.items.values()],
      virtualServices: [...this.virtualServices.items.values()],
      k8sGateways: [...this.k8sGateways.items.values()],
      httpRoutes: [...this.httpRoutes.items.values()],
      grpcRoutes: [...this.grpcRoutes.items.values()],
      domainSuffix: this.options.domainSuffix ?? 'cluster.local',
      serviceExists: this.options.serviceExists,
      destinationRules: [...this.destinationRules.items.values()],
      endpointsOf: this.options.endpointsOf,
    });
    const notes = new Set(result.notes);
    for (const note of notes) if (!this.lastNotes.has(note)) this.options.log.info({ note }, 'route configuration not served');
    this.lastNotes = notes;
    const names = new Set<string>();
    for (const config of result.configs) {
      names.add(config.name);
      this.options.cache.set(ROUTE_TYPE_URL, config.name, toBinary(RouteConfigSchema, config));
    }
    for (const name of this.published) if (!names.has(name)) this.options.cache.delete(ROUTE_TYPE_URL, name);
    this.published.clear();
    for (const name of names) this.published.add(name);
    this.options.onAccessChanged?.();
    await this.writeObjects(result.attachedRoutes);
    await this.writeRouteStatus(result.routeParents);
  }

  private async ensureClass(): Promise<void> {
    if (this.classChecked) return;
    await createGatewayClassIfMissing(this.api, INGRESS_GATEWAY_CLASS, INGRESS_CONTROLLER_NAME, 'ambit ingress gateways: HTTP into the mesh', new Date());
    this.classChecked = true;
  }

  private async writeObjects(attached: Map<string, Map<string, number>>): Promise<void> {
    if (!this.k8sGateways.items.size) return;
    await this.ensureClass();
    let waiting = false;
    for (const gateway of this.k8sGateways.items.values()) {
      const objects = renderIngressObjects(gateway, this.options.workload, this.options.network);
      const key = `objects:${gateway.key}`;
      if (!isDeepStrictEqual(this.written.get(key), objects)) {
        for (const object of [objects.serviceAccount, objects.service, objects.deployment]) await this.api.apply(object);
        this.written.set(key, objects);
        this.options.log.info({ gateway: gateway.key, deployment: objects.deployment.metadata?.name }, 'ingress objects applied');
      }
      const service = (await this.api.read('Service', gateway.namespace, objects.service.metadata!.name!)) as V1Service | undefined;
      const ip = service?.status?.loadBalancer?.ingress?.[0]?.ip;
      if (!ip) waiting = true;
      const now = kubeTime(new Date());
      const generation = 0;
      const cond = (type: string, ok: boolean, reason: string, message: string) => ({ type, status: ok ? 'True' : 'False', reason, message, observedGeneration: generation, lastTransitionTime: now });
      const status = {
        addresses: ip ? [{ type: 'IPAddress' as const, value: ip }] : [],
        conditions: [cond('Accepted', true, 'Accepted', 'Resource accepted'), ip ? cond('Programmed', true, 'Programmed', 'Resource programmed, assigned to service(s)') : cond('Programmed', false, 'AddressNotAssigned', 'waiting for the LoadBalancer address')],
        listeners: gateway.listeners.map((l) => ({
          name: l.name,
          supportedKinds: [{ group: GATEWAY_API_GROUP, kind: 'HTTPRoute' }],
          attachedRoutes: attached.get(gateway.key)?.get(l.name) ?? 0,
          conditions: l.protocol === 'HTTP'
            ? [cond('Accepted', true, 'Accepted', 'No errors found'), cond('Programmed', true, 'Programmed', 'No errors found'), cond('ResolvedRefs', true, 'ResolvedRefs', 'No errors found')]
            : [cond('Accepted', false, 'UnsupportedProtocol', `protocol ${l.protocolName} is not served by the ingress yet`), cond('Programmed', false, 'Invalid', 'not served'), cond('ResolvedRefs', true, 'ResolvedRefs', 'No errors found')],
        })),
      };
      await this.writeStatus(`status:${gateway.key}`, status, () => this.api.patchGatewayStatus(gateway.namespace, gateway.name, status as never));
    }
    if (waiting) setTimeout(() => this.schedule(), 2000).unref();
  }

  private async writeRouteStatus(parents: Map<string, RouteParentStatus[]>): Promise<void> {
    for (const route of [...this.httpRoutes.items.values(), ...this.grpcRoutes.items.values()]) {
      const plural = route.key.startsWith('GRPCRoute/') ? 'grpcroutes' : 'httproutes';
      const statuses = parents.get(route.key);
      if (!statuses) continue;
      const now = kubeTime(new Date());
      const status = {
        parents: statuses.map((p) => ({
          parentRef: p.parentRef,
          controllerName: p.mesh ? WAYPOINT_CONTROLLER_NAME : INGRESS_CONTROLLER_NAME,
          conditions: p.conditions.map((c) => ({ ...c, observedGeneration: route.generation, lastTransitionTime: now })),
        })),
      };
      await this.writeStatus(`status:${route.key}`, statuses, () =>
        this.custom.patchNamespacedCustomObjectStatus({ group: GATEWAY_API_GROUP, version: 'v1', plural, namespace: route.namespace, name: route.name, body: statusPatch(status) }, mergePatch),
      );
    }
  }

  /** Writes a status only when what it says changed (times excluded). */
  private async writeStatus(key: string, comparable: unknown, write: () => Promise<unknown>): Promise<void> {
    const sameAs = JSON.stringify(comparable, (k, v: unknown) => (k === 'lastTransitionTime' ? undefined : v));
    if (this.written.get(key) === sameAs) return;
    try {
      await write();
      this.written.set(key, sameAs);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
