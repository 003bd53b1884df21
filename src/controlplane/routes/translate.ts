/**
 * The control plane's route translation: Istio Gateway + VirtualService and Gateway API Gateway
 * (class istio) + HTTPRoute → one ambit.route.RouteConfig per ingress proxy, with the status each
 * HTTPRoute parent gets. Pure: objects in, resources and statuses out.
 */
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Protocol, RouteConfigSchema, type ListenerSchema, type RouteConfig, type VirtualHostSchema } from '../../gen/ambit/route/route_pb.js';
import { routeResourceName } from '../../api/resources.js';
import type { BackendRef, K8sGateway, K8sHttpRoute, K8sListener, ParentRef } from './gateway-api.js';
import type { HttpRouteInit, IstioGateway, VirtualService } from './istio.js';
import { intersectHost } from './hosts.js';
import { destinationOf, type DestinationInput } from './destinations.js';

export { intersectHost, qualifyHost } from './hosts.js';

/** An ingress Deployment the control plane configures. */
export interface IngressProxy {
  namespace: string;
  /** Deployment name; `<namespace>/<name>` names its RouteConfig. */
  name: string;
  /** Its pod labels (Istio Gateway selectors match them). */
  labels: Record<string, string>;
  /** The pod port behind a Service (or Gateway listener) port: 80 → 8080. */
  targetPort(port: number): number;
  /** The Gateway API Gateway (class istio) it was made for. */
  gateway?: { namespace: string; name: string };
}

export interface TranslationInput {
  proxies: IngressProxy[];
  istioGateways: IstioGateway[];
  virtualServices: VirtualService[];
  k8sGateways: K8sGateway[];
  httpRoutes: K8sHttpRoute[];
  /** GRPCRoutes, for their status (their rules go to waypoints with the mesh routes). */
  grpcRoutes?: K8sHttpRoute[];
  domainSuffix: string;
  /** Whether a Service of that hostname exists in the mesh. */
  serviceExists(hostname: string): boolean;
  /** DestinationRules and the services' endpoints with their labels: subsets at the ingress. */
  destinationRules?: DestinationInput['destinationRules'];
  endpointsOf?: DestinationInput['endpointsOf'];
}

export interface Condition {
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
}

export interface RouteParentStatus {
  parentRef: Record<string, unknown>;
  conditions: Condition[];
  /** Set for a Service parent (mesh routing, written as the mesh controller); the ingress controller otherwise. */
  mesh?: boolean;
}

export interface TranslationResult {
  configs: RouteConfig[];
  /** HTTPRoute key → the status of each of its parents that is a Gateway of class istio. */
  routeParents: Map<string, RouteParentStatus[]>;
  /** Gateway key → listener name → routes attached. */
  attachedRoutes: Map<string, Map<string, number>>;
  /** Things accepted but not served, one line each. */
  notes: string[];
}

type ListenerInit = MessageInitShape<typeof ListenerSchema>;
type VirtualHostInit = MessageInitShape<typeof VirtualHostSchema>;

const selects = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

class ConfigBuilder {
  private readonly listeners = new Map<number, ListenerInit & { virtualHosts: VirtualHostInit[]; sources: string[] }>();
  constructor(readonly proxy: IngressProxy) {}

  listener(port: number, protocol: Protocol, source: string) {
    let listener = this.listeners.get(port);
    if (!listener) this.listeners.set(port, (listener = { port, protocol, sources: [], virtualHosts: [] }));
    if (!listener.sources.includes(source)) listener.sources.push(source);
    return listener;
  }

  build(): RouteConfig {
    return create(RouteConfigSchema, {
      name: routeResourceName(this.proxy.namespace, this.proxy.name),
      namespace: this.proxy.namespace,
      listeners: [...this.listeners.values()].sort((a, b) => (a.port ?? 0) - (b.port ?? 0)),
    });
  }
}

function translateIstio(input: TranslationInput, builders: ConfigBuilder[], notes: string[]): void {
  const destinations: DestinationInput = { destinationRules: input.destinationRules ?? [], domainSuffix: input.domainSuffix, serviceExists: input.serviceExists, endpointsOf: input.endpointsOf ?? (() => []) };
  const byGateway = new Map<string, VirtualService[]>();
  for (const vs of [...input.virtualServices].sort((a, b) => a.key.localeCompare(b.key))) {
    for (const gateway of vs.gateways) {
      const list = byGateway.get(gateway) ?? [];
      list.push(vs);
      byGateway.set(gateway, list);
    }
  }
  for (const gateway of input.istioGateways) {
    const ref = `${gateway.namespace}/${gateway.name}`;
    const targets = builders.filter((b) => Object.keys(gateway.selector).length > 0 && selects(gateway.selector, b.proxy.labels));
    for (const server of gateway.servers) {
      if (server.protocol === 'unsupported') {
        notes.push(`${gateway.key}: spec.servers[${server.index}].port.protocol: ${server.protocolName} is not served by the ingress yet`);
        continue;
      }
      if (server.protocol === 'HTTPS') notes.push(`${gateway.key}: spec.servers[${server.index}]: TLS termination (HTTPS) is not served by the ingress yet`);
      for (const builder of targets) {
        const listener = builder.listener(builder.proxy.targetPort(server.port), server.protocol === 'HTTP' ? Protocol.HTTP : Protocol.HTTPS, gateway.key);
        for (const vs of byGateway.get(ref) ?? []) {
          const domains = new Set<string>();
          for (const allowed of server.hosts) {
            if (allowed.namespace !== '*' && allowed.namespace !== vs.namespace) continue;
            for (const host of vs.hosts) {
              const both = intersectHost(host, allowed.host);
              if (both) domains.add(both);
            }
          }
          if (!domains.size) continue;
          const routes: HttpRouteInit[] = [];
          for (const rule of vs.rules) {
            const matches = rule.matches.filter((m) => (m.port === undefined || m.port === server.port) && (m.gateways === undefined || m.gateways.includes(ref)));
            if (rule.matches.length && !matches.length) continue;
            const problems: string[] = [];
            const index = vs.rules.indexOf(rule);
            routes.push({
              source: rule.source,
              matches: matches.map((m) => m.match),
              destinations: rule.destinations.map((d, i) => destinationOf(d, vs, destinations, problems, `spec.http[${index}].route[${i}]`)),
              mirrors: rule.mirrors.map((m, i) => ({ destination: destinationOf(m, vs, destinations, problems, `spec.http[${index}].mirrors[${i}]`), percent: m.percent })),
              ...rule.behaviour,
            });
            notes.push(...problems);
          }
          if (routes.length) listener.virtualHosts.push({ domains: [...domains], routes });
        }
      }
    }
  }
}

function condition(type: string, ok: boolean, reason: string, message: string): Condition {
  return { type, status: ok ? 'True' : 'False', reason, message };
}

function listenerAccepts(listener: K8sListener, ref: ParentRef, route: K8sHttpRoute, gateway: K8sGateway): boolean {
  if (ref.sectionName !== undefined && ref.sectionName !== listener.name) return false;
  if (ref.port !== undefined && ref.port !== listener.port) return false;
  if (listener.protocol === 'unsupported') return false;
  return listener.from === 'All' || (listener.from === 'Same' && route.namespace === gateway.namespace);
}

function resolveBackends(route: K8sHttpRoute, backends: BackendRef[], input: TranslationInput, problems: string[]) {
  const resolved: Array<{ hostname: string; port: number; weight: number }> = [];
  for (const backend of backends) {
    if (backend.kind !== 'Service' || backend.group !== '') {
      problems.push(`InvalidKind: ${backend.field}: ${backend.group || 'core'}/${backend.kind} is not a Service`);
      continue;
    }
    if (backend.namespace !== route.namespace) {
      problems.push(`RefNotPermitted: ${backend.field}: a Service in namespace ${backend.namespace} needs a ReferenceGrant, which is not served yet`);
      continue;
    }
    const hostname = `${backend.name}.${backend.namespace}.svc.${input.domainSuffix}`;
    if (!input.serviceExists(hostname)) {
      problems.push(`BackendNotFound: ${backend.field}: Service ${backend.namespace}/${backend.name} not found`);
      continue;
    }
    resolved.push({ hostname, port: backend.port, weight: backend.weight });
  }
  return resolved;
}

/** The status of a route's Service parent (mesh routing, GAMMA: the Service's waypoint applies it). */
function serviceParentStatus(route: K8sHttpRoute, ref: ParentRef, input: TranslationInput): RouteParentStatus {
  const problems: string[] = [];
  route.rules.forEach((rule) => resolveBackends(route, rule.backends, input, problems));
  const exists = input.serviceExists(`${ref.name}.${ref.namespace}.svc.${input.domainSuffix}`);
  const firstProblem = problems[0];
  return {
    parentRef: ref.raw,
    mesh: true,
    conditions: [
      exists ? condition('Accepted', true, 'Accepted', 'Route was valid') : condition('Accepted', false, 'NoMatchingParent', `Service ${ref.namespace}/${ref.name} not found`),
      firstProblem ? condition('ResolvedRefs', false, firstProblem.slice(0, firstProblem.indexOf(':')), problems.map((p) => p.slice(p.indexOf(':') + 2)).join('; ')) : condition('ResolvedRefs', true, 'ResolvedRefs', 'All references resolved'),
    ],
  };
}

/** GRPCRoutes: Service parents are served at their waypoint; Gateway parents (the ingress) are not yet. */
function grpcRouteStatuses(input: TranslationInput, result: TranslationResult): void {
  for (const route of input.grpcRoutes ?? []) {
    const statuses = route.parents.map((ref) =>
      ref.kind === 'Service'
        ? serviceParentStatus(route, ref, input)
        : { parentRef: ref.raw, conditions: [condition('Accepted', false, 'NotAllowedByListeners', 'the ingress serves HTTPRoutes only; GRPCRoutes are served on Service parents (mesh)'), condition('ResolvedRefs', true, 'ResolvedRefs', 'All references resolved')] },
    );
    if (statuses.length) result.routeParents.set(route.key, statuses);
  }
}

function translateGatewayApi(input: TranslationInput, builders: ConfigBuilder[], result: TranslationResult): void {
  const gateways = new Map(input.k8sGateways.map((g) => [`${g.namespace}/${g.name}`, g]));
  for (const gateway of input.k8sGateways) {
    result.attachedRoutes.set(gateway.key, new Map(gateway.listeners.map((l) => [l.name, 0])));
    const builder = builders.find((b) => b.proxy.gateway?.namespace === gateway.namespace && b.proxy.gateway.name === gateway.name);
    for (const listener of gateway.listeners) {
      // Open even without routes: a request then gets 404, not a refused connection.
      if (builder && listener.protocol === 'HTTP') builder.listener(builder.proxy.targetPort(listener.port), Protocol.HTTP, gateway.key);
      if (listener.protocol !== 'HTTP') result.notes.push(`${gateway.key}: listener ${listener.name}: protocol ${listener.protocolName} is not served by the ingress yet`);
    }
  }
  for (const route of [...input.httpRoutes].sort((a, b) => a.key.localeCompare(b.key))) {
    const statuses: RouteParentStatus[] = [];
    for (const ref of route.parents) {
      if (ref.kind === 'Service') {
        statuses.push(serviceParentStatus(route, ref, input));
        continue;
      }
      const gateway = gateways.get(`${ref.namespace}/${ref.name}`);
      if (!gateway) continue;
      const builder = builders.find((b) => b.proxy.gateway?.namespace === gateway.namespace && b.proxy.gateway.name === gateway.name);
      const listeners = gateway.listeners.filter((l) => listenerAccepts(l, ref, route, gateway));
      const refProblems: string[] = [];
      const rules = route.rules.map((rule) => ({ rule, destinations: resolveBackends(route, rule.backends, input, refProblems) }));
      let attached = 0;
      for (const listener of listeners) {
        const domains = (route.hostnames.length ? route.hostnames : ['*']).map((h) => intersectHost(h, listener.hostname ?? '*')).filter((h): h is string => h !== undefined);
        if (!domains.length) continue;
        attached++;
        result.attachedRoutes.get(gateway.key)!.set(listener.name, (result.attachedRoutes.get(gateway.key)!.get(listener.name) ?? 0) + 1);
        if (!builder) continue;
        const target = builder.listener(builder.proxy.targetPort(listener.port), listener.protocol === 'HTTPS' ? Protocol.HTTPS : Protocol.HTTP, gateway.key);
        for (const { rule } of rules) {
          const unserved = [...Object.keys(rule.behaviour), ...(rule.mirrors.length ? ['RequestMirror'] : [])];
          if (unserved.length) result.notes.push(`${rule.source}: ${unserved.join(', ')} not applied at the ingress yet`);
        }
        target.virtualHosts.push({
          domains: [...new Set(domains)],
          routes: rules.map(({ rule, destinations }) => ({
            source: rule.source,
            matches: rule.matches,
            destinations,
            // Gateway API: a rule whose backends are all invalid (or absent) answers 500.
            directStatus: destinations.length ? 0 : 500,
          })),
        });
      }
      const accepted = attached > 0
        ? condition('Accepted', true, 'Accepted', 'Route was valid')
        : listeners.length
          ? condition('Accepted', false, 'NoMatchingListenerHostname', 'no hostname of the route matches a listener of the parent')
          : condition('Accepted', false, 'NotAllowedByListeners', 'no listener of the parent accepts this route (sectionName, port, protocol or allowedRoutes)');
      const firstProblem = refProblems[0];
      const resolvedRefs = firstProblem
        ? condition('ResolvedRefs', false, firstProblem.slice(0, firstProblem.indexOf(':')), refProblems.map((p) => p.slice(p.indexOf(':') + 2)).join('; '))
        : condition('ResolvedRefs', true, 'ResolvedRefs', 'All references resolved');
      statuses.push({ parentRef: ref.raw, conditions: [accepted, resolvedRefs] });
    }
    if (statuses.length) result.routeParents.set(route.key, statuses);
  }
}

export function translateRoutes(input: TranslationInput): TranslationResult {
  const builders = input.proxies.map((proxy) => new ConfigBuilder(proxy));
  const result: TranslationResult = { configs: [], routeParents: new Map(), attachedRoutes: new Map(), notes: [] };
  translateIstio(input, builders, result.notes);
  translateGatewayApi(input, builders, result);
  grpcRouteStatuses(input, result);
  result.configs = builders.map((b) => b.build());
  return result;
}
