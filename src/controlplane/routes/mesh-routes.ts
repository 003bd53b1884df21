/**
 * Mesh routes: VirtualServices that apply to mesh traffic (no `gateways`, or `mesh`), their
 * DestinationRule subsets, and HTTPRoutes whose parent is a Service (Gateway API's mesh routing),
 * translated into one service's ambit.route.HttpRoutes, as the waypoint serving that service applies
 * them. Pure: objects in, routes and problems out.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { DestinationPolicySchema, ServiceRoutesSchema } from '../../gen/ambit/waypoint/waypoint_pb.js';
import type { K8sHttpRoute } from './gateway-api.js';
import type { HttpRouteInit, VirtualService } from './istio.js';
import { intersectHost, qualifyHost } from './hosts.js';
import { destinationOf, destinationRuleFor, type DestinationInput } from './destinations.js';

export type ServiceRoutesInit = MessageInitShape<typeof ServiceRoutesSchema>;
export type DestinationPolicyInit = MessageInitShape<typeof DestinationPolicySchema>;

export interface MeshRouteInput extends DestinationInput {
  virtualServices: readonly VirtualService[];
  httpRoutes: readonly K8sHttpRoute[];
}

export interface MeshRoutesResult {
  routes: ServiceRoutesInit;
  /** Which objects made the routes (`<Kind>/<ns>/<name>`), for logs. */
  sources: string[];
  /** What is wrong with them, naming the object and field (the route stays; its requests get 503). */
  problems: string[];
}

const byAge = <T extends { created: number; key: string }>(a: T, b: T) => a.created - b.created || a.key.localeCompare(b.key);

/** How well a VirtualService host names `hostname`: 2 exactly, 1 by wildcard, 0 not. */
function hostScore(vs: VirtualService, hostname: string, input: MeshRouteInput): number {
  let best = 0;
  for (const host of vs.hosts) {
    if (host.startsWith('*')) {
      if (intersectHost(host, hostname) === hostname) best = Math.max(best, 1);
    } else if (qualifyHost(host, vs.namespace, input) === hostname) return 2;
  }
  return best;
}

/** The VirtualService that routes `hostname` in the mesh: an exact host beats a wildcard, then the oldest wins (Istio). */
export function virtualServiceFor(hostname: string, input: MeshRouteInput): VirtualService | undefined {
  let chosen: { vs: VirtualService; score: number } | undefined;
  for (const vs of [...input.virtualServices].filter((v) => v.mesh).sort(byAge)) {
    const score = hostScore(vs, hostname, input);
    if (score > (chosen?.score ?? 0)) chosen = { vs, score };
  }
  return chosen?.vs;
}

function fromVirtualService(vs: VirtualService, input: MeshRouteInput, problems: string[]): HttpRouteInit[] {
  return vs.rules.flatMap((rule, index): HttpRouteInit[] => {
    const matches = rule.matches.filter((m) => m.gateways === undefined || m.gateways.includes('mesh'));
    // A rule whose every match names gateways only applies there.
    if (rule.matches.length && !matches.length) return [];
    return [
      {
        source: rule.source,
        matches: matches.map((m) => ({ ...m.match, port: m.port ?? 0 })),
        destinations: rule.destinations.map((d, i) => destinationOf(d, vs, input, problems, `spec.http[${index}].route[${i}]`)),
        mirrors: rule.mirrors.map((m, i) => ({ destination: destinationOf(m, vs, input, problems, `spec.http[${index}].mirrors[${i}]`), percent: m.percent })),
        ...rule.behaviour,
      },
    ];
  });
}

/** HTTPRoutes with this Service among their parents (GAMMA), oldest first; Service backends only. */
function fromHttpRoutes(serviceNamespace: string, serviceName: string, input: MeshRouteInput, problems: string[], sources: string[]): HttpRouteInit[] {
  const routes: HttpRouteInit[] = [];
  for (const route of [...input.httpRoutes].sort((a, b) => a.key.localeCompare(b.key))) {
    const parent = route.parents.find((p) => p.kind === 'Service' && p.namespace === serviceNamespace && p.name === serviceName);
    if (!parent) continue;
    sources.push(route.key);
    const toService = (backend: K8sHttpRoute['rules'][number]['backends'][number]) => {
      if (backend.kind !== 'Service' || backend.group !== '') {
        problems.push(`${route.key}: ${backend.field}: ${backend.group || 'core'}/${backend.kind} is not a Service`);
        return [];
      }
      const hostname = `${backend.name}.${backend.namespace}.svc.${input.domainSuffix}`;
      if (!input.serviceExists(hostname)) problems.push(`${route.key}: ${backend.field}: Service ${backend.namespace}/${backend.name} not found`);
      return [{ hostname, port: backend.port, weight: backend.weight }];
    };
    for (const rule of route.rules) {
      const destinations = rule.backends.flatMap(toService);
      routes.push({
        source: rule.source,
        matches: rule.matches.map((m) => ({ ...m, port: parent.port ?? 0 })),
        destinations,
        mirrors: rule.mirrors.flatMap((m) => toService(m).map((destination) => ({ destination, percent: m.percent }))),
        ...rule.behaviour,
        // Gateway API: a rule without a usable backend (and no redirect) answers 500.
        directStatus: destinations.length || rule.behaviour.redirect ? 0 : 500,
      });
    }
  }
  return routes;
}

/**
 * The routes of service `<namespace>/<hostname>`: Gateway API routes with the Service as parent take
 * precedence over VirtualServices (as in Istio's ambient mode); undefined when nothing routes it.
 */
export function meshRoutesOf(service: string, input: MeshRouteInput): MeshRoutesResult | undefined {
  const slash = service.indexOf('/');
  const namespace = service.slice(0, slash);
  const hostname = service.slice(slash + 1);
  const problems: string[] = [];
  const sources: string[] = [];
  const suffix = `.${namespace}.svc.${input.domainSuffix}`;
  const shortName = hostname.endsWith(suffix) ? hostname.slice(0, -suffix.length) : undefined;
  const gamma = shortName ? fromHttpRoutes(namespace, shortName, input, problems, sources) : [];
  if (gamma.length) return { routes: { service, routes: gamma }, sources, problems };
  const vs = virtualServiceFor(hostname, input);
  if (!vs) return undefined;
  return { routes: { service, routes: fromVirtualService(vs, input, problems) }, sources: [vs.key], problems };
}

/** The DestinationRule traffic policy (load balancer, outlier detection) of requests to `hostname`, if a rule gives one. */
export function destinationPolicyOf(hostname: string, input: Pick<MeshRouteInput, 'destinationRules' | 'domainSuffix' | 'serviceExists'>): DestinationPolicyInit | undefined {
  const rule = destinationRuleFor(hostname, input);
  if (!rule || (!rule.loadBalancer && !rule.outlierDetection && !rule.connectionPool)) return undefined;
  return { hostname, source: `${rule.namespace}/${rule.name}`, loadBalancer: rule.loadBalancer, outlierDetection: rule.outlierDetection, connectionPool: rule.connectionPool };
}

/** Every destination hostname of a service's routes, the service's own first. */
export function destinationHostnames(service: string, routes: ServiceRoutesInit | undefined): string[] {
  const names = new Set([service.slice(service.indexOf('/') + 1)]);
  for (const route of routes?.routes ?? []) for (const d of route.destinations ?? []) if (d.hostname) names.add(d.hostname);
  return [...names];
}
