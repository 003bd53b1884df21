// `ambit proxy-config routes <waypoint pod>`: the mesh routes a waypoint holds (from its config dump's Waypoint resource), one line per rule and destination.
import { ProxyConfigError } from './fetch.js';
import { table } from './tables.js';

/** The JSON form (protobuf JSON) of the route messages the waypoint's config dump carries. */
interface StringMatchJson {
  exact?: string;
  prefix?: string;
  regex?: string;
  pathPrefix?: string;
}

export interface RouteJson {
  source?: string;
  matches?: Array<{ path?: StringMatchJson; method?: StringMatchJson; headers?: Array<{ name: string; value?: StringMatchJson; invert?: boolean }>; queryParams?: Array<{ name: string; value?: StringMatchJson }>; port?: number }>;
  destinations?: Array<{ hostname: string; port?: number; weight?: number; subset?: string; workloads?: string[] }>;
  directStatus?: number;
  fault?: { delayMs?: number; delayPercent?: number; abortStatus?: number; abortPercent?: number };
  timeoutMs?: number;
  retry?: { attempts?: number; perTryTimeoutMs?: number; retryOn?: string[] };
}

export interface ServiceRoutesJson {
  service: string;
  routes?: RouteJson[];
}

/** The routes of a waypoint's config dump; a dump without a Waypoint resource is an error naming the pod. */
export function waypointRoutes(dumpText: string, pod: string): ServiceRoutesJson[] {
  let dump: { waypoint?: { routes?: ServiceRoutesJson[] } | null };
  try {
    dump = JSON.parse(dumpText) as typeof dump;
  } catch {
    throw new ProxyConfigError(`${pod}: the admin endpoint did not return JSON`);
  }
  if (dump.waypoint === undefined) throw new ProxyConfigError(`${pod} is not a waypoint (its config dump has no waypoint section)`);
  return dump.waypoint?.routes ?? [];
}

function describeString(match: StringMatchJson | undefined): string {
  if (!match) return '*';
  if (match.exact !== undefined) return match.exact;
  if (match.prefix !== undefined) return `${match.prefix}*`;
  if (match.pathPrefix !== undefined) return `${match.pathPrefix}/*`;
  return `~${match.regex ?? ''}`;
}

export function describeMatch(route: RouteJson): string {
  const matches = route.matches ?? [];
  if (!matches.length) return '*';
  return matches
    .map((m) => {
      const parts = [
        m.path ? `path ${describeString(m.path)}` : '',
        m.method ? `method ${describeString(m.method)}` : '',
        ...(m.headers ?? []).map((h) => `${h.invert ? '!' : ''}${h.name}=${describeString(h.value)}`),
        ...(m.queryParams ?? []).map((q) => `?${q.name}=${describeString(q.value)}`),
        m.port ? `port ${m.port}` : '',
      ].filter(Boolean);
      return parts.length ? parts.join(' ') : '*';
    })
    .join(' | ');
}

export function describeBehaviour(route: RouteJson): string {
  const parts: string[] = [];
  if (route.fault?.abortStatus) parts.push(`abort ${route.fault.abortStatus} ${route.fault.abortPercent ?? 0}%`);
  if (route.fault?.delayMs) parts.push(`delay ${route.fault.delayMs}ms ${route.fault.delayPercent ?? 0}%`);
  if (route.timeoutMs) parts.push(`timeout ${route.timeoutMs}ms`);
  if (route.retry?.attempts) parts.push(`retries ${route.retry.attempts} on ${(route.retry.retryOn ?? []).join(',')}${route.retry.perTryTimeoutMs ? ` per try ${route.retry.perTryTimeoutMs}ms` : ''}`);
  return parts.join(', ') || '-';
}

/** Each destination of a route in words: host, port, subset with its pod count, share of the weight. */
export function describeDestinations(route: RouteJson): string[] {
  if (route.directStatus) return [`answers ${route.directStatus}`];
  const destinations = route.destinations ?? [];
  const total = destinations.reduce((sum, d) => sum + (d.weight ?? 0), 0);
  return destinations.map((d) => {
    const share = total ? `${Math.round(((d.weight ?? 0) / total) * 1000) / 10}%` : '-';
    const subset = d.subset ? ` subset ${d.subset} (${(d.workloads ?? []).length} pods)` : '';
    return `${d.hostname}${d.port ? `:${d.port}` : ''}${subset} ${share}`;
  });
}

export function routesTable(services: readonly ServiceRoutesJson[]): string {
  const rows: string[][] = [];
  for (const entry of services) {
    for (const route of entry.routes ?? []) {
      const targets = describeDestinations(route);
      targets.forEach((target, i) => rows.push(i === 0 ? [entry.service, route.source ?? '', describeMatch(route), target, describeBehaviour(route)] : ['', '', '', target, '']));
    }
  }
  if (!rows.length) return 'no mesh routes (requests go to the service they address)';
  return table(['SERVICE', 'RULE', 'MATCH', 'DESTINATION', 'POLICY'], rows);
}
