// Route rules of the L7 proxies (waypoint, ingress): which rule accepts a request, and which weighted destination it goes to. Pure.
import type { HttpRoute, RouteMatch, StringMatch, WeightedDestination } from '../gen/ambit/route/route_pb.js';

export interface RequestFacts {
  method: string;
  /** Path with query string, as the request line has it. */
  url: string;
  /** Host header or :authority. */
  host: string;
  /** Lower-cased header names. */
  headers: Record<string, string | string[] | undefined>;
  /** The port the request was sent to (a waypoint: the service port); routes limited to another port do not match. */
  port?: number;
}

const regexCache = new Map<string, RegExp | undefined>();
function wholeMatch(pattern: string, value: string): boolean {
  let regex = regexCache.get(pattern);
  if (!regexCache.has(pattern)) {
    try {
      regex = new RegExp(`^(?:${pattern})$`);
    } catch {
      regex = undefined;
    }
    if (regexCache.size > 10_000) regexCache.clear();
    regexCache.set(pattern, regex);
  }
  return regex?.test(value) ?? false;
}

export function stringMatches(match: StringMatch | undefined, value: string | undefined): boolean {
  if (!match || match.match.case === undefined) return true;
  if (value === undefined) return false;
  switch (match.match.case) {
    case 'exact':
      return value === match.match.value;
    case 'prefix':
      return value.startsWith(match.match.value);
    case 'regex':
      return wholeMatch(match.match.value, value);
    case 'pathPrefix': {
      const prefix = match.match.value.replace(/\/+$/, '');
      return prefix === '' || value === prefix || value.startsWith(`${prefix}/`);
    }
  }
}

function headerValue(headers: RequestFacts['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function routeMatches(match: RouteMatch, request: RequestFacts, path: string, query: URLSearchParams): boolean {
  if (match.port && request.port !== undefined && match.port !== request.port) return false;
  if (!stringMatches(match.path, path)) return false;
  if (match.method && !stringMatches(match.method, request.method)) return false;
  for (const header of match.headers) {
    const value = header.name === 'host' || header.name === ':authority' ? request.host : headerValue(request.headers, header.name);
    const ok = header.value ? stringMatches(header.value, value) : value !== undefined;
    if (ok === header.invert) return false;
  }
  for (const param of match.queryParams) if (!stringMatches(param.value, query.get(param.name) ?? undefined)) return false;
  return true;
}

/** The host without port, lower case. */
export function requestHost(host: string): string {
  const lower = host.toLowerCase();
  if (lower.startsWith('[')) return lower.slice(0, lower.indexOf(']') + 1);
  const colon = lower.lastIndexOf(':');
  return colon >= 0 && /^\d+$/.test(lower.slice(colon + 1)) ? lower.slice(0, colon) : lower;
}

/** The first route that accepts the request (a route without matches accepts every request). */
export function firstMatchingRoute(routes: readonly HttpRoute[], request: RequestFacts): HttpRoute | undefined {
  const queryAt = request.url.indexOf('?');
  const path = queryAt >= 0 ? request.url.slice(0, queryAt) : request.url;
  let query: URLSearchParams | undefined;
  return routes.find((route) => route.matches.length === 0 || route.matches.some((m) => routeMatches(m, request, path, (query ??= new URLSearchParams(queryAt >= 0 ? request.url.slice(queryAt + 1) : '')))));
}

/** The path after a route's rewrite: the matched prefix (or exact path) replaced, or every regex match substituted; the query stays. */
export function rewrittenPath(route: HttpRoute, request: RequestFacts): string {
  const rewrite = route.rewrite;
  if (!rewrite || (!rewrite.uri && !rewrite.uriRegex)) return request.url;
  const queryAt = request.url.indexOf('?');
  const path = queryAt >= 0 ? request.url.slice(0, queryAt) : request.url;
  const query = queryAt >= 0 ? request.url.slice(queryAt) : '';
  if (rewrite.uriRegex) {
    try {
      // Istio writes groups as \1; JavaScript's replace reads $1.
      return path.replace(new RegExp(rewrite.uriRegex, 'g'), rewrite.uriRegexSubstitution.replace(/\\(\d)/g, '$$$1')) + query;
    } catch {
      return request.url;
    }
  }
  if (rewrite.fullPath) return rewrite.uri + query;
  let params: URLSearchParams | undefined;
  const accepted = route.matches.find((m) => routeMatches(m, request, path, (params ??= new URLSearchParams(query.slice(1)))));
  const matched = accepted?.path?.match;
  if (matched?.case === 'prefix' && path.startsWith(matched.value)) return rewrite.uri + path.slice(matched.value.length) + query;
  if (matched?.case === 'pathPrefix') {
    const prefix = matched.value.replace(/\/+$/, '');
    if (path.startsWith(prefix)) return (rewrite.uri + path.slice(prefix.length)).replace(/^\/\//, '/') + query;
  }
  return rewrite.uri + query;
}

/** A redirect's Location for a request (scheme, host and port kept unless the redirect replaces them). */
export function redirectLocation(route: HttpRoute, request: RequestFacts, scheme = 'http'): string {
  const redirect = route.redirect!;
  const host = redirect.authority || requestHost(request.host);
  const port = redirect.port ? `:${redirect.port}` : redirect.authority ? '' : (/:(\d+)$/.exec(request.host)?.[0] ?? '');
  const queryAt = request.url.indexOf('?');
  const path = redirect.uri || (queryAt >= 0 ? request.url.slice(0, queryAt) : request.url);
  return `${redirect.scheme || scheme}://${host}${port}${path}`;
}

/** Subset uid sets by the config's own list: a new config brings new lists, so old sets go with it. */
const subsetSets = new WeakMap<readonly string[], ReadonlySet<string>>();

/** A destination's DestinationRule subset as resolve() takes it (its workloads as a set, made once per config); undefined without one. */
export function subsetOf(destination: WeightedDestination): { name: string; workloads: ReadonlySet<string> } | undefined {
  if (!destination.subset) return undefined;
  let workloads = subsetSets.get(destination.workloads);
  if (!workloads) subsetSets.set(destination.workloads, (workloads = new Set(destination.workloads)));
  return { name: destination.subset, workloads };
}

/** A destination picked by weight (all weights zero: the first). */
export function pickDestination(destinations: readonly WeightedDestination[], random: () => number = Math.random): WeightedDestination | undefined {
  const total = destinations.reduce((sum, d) => sum + d.weight, 0);
  if (total === 0) return destinations[0];
  let point = random() * total;
  for (const destination of destinations) {
    point -= destination.weight;
    if (point < 0) return destination;
  }
  return destinations[destinations.length - 1];
}

function stringMatchProblem(field: string, match: StringMatch | undefined): string[] {
  if (match?.match.case !== 'regex') return [];
  try {
    new RegExp(`^(?:${match.match.value})$`);
    return [];
  } catch {
    return [`${field}: invalid regular expression`];
  }
}

/** Problems that make a route unsafe to follow (the control plane validates; this guards the wire). */
export function routeProblems(route: HttpRoute, where: string): string[] {
  const problems: string[] = [];
  route.matches.forEach((match, i) => {
    problems.push(...stringMatchProblem(`${where}.matches[${i}].path`, match.path), ...stringMatchProblem(`${where}.matches[${i}].method`, match.method));
    match.headers.forEach((header, h) => problems.push(...stringMatchProblem(`${where}.matches[${i}].headers[${h}]`, header.value)));
    match.queryParams.forEach((param, q) => problems.push(...stringMatchProblem(`${where}.matches[${i}].queryParams[${q}]`, param.value)));
  });
  if (!route.directStatus && !route.redirect && route.destinations.length === 0) problems.push(`${where}: no destination, redirect or direct status`);
  if (route.redirect && route.redirect.code && ![301, 302, 303, 307, 308].includes(route.redirect.code)) problems.push(`${where}.redirect.code: ${route.redirect.code}`);
  if (route.rewrite?.uriRegex) {
    try {
      new RegExp(route.rewrite.uriRegex);
    } catch {
      problems.push(`${where}.rewrite: invalid regular expression`);
    }
  }
  for (const [i, mirror] of route.mirrors.entries()) if (!mirror.destination?.hostname || !(mirror.percent >= 0 && mirror.percent <= 100)) problems.push(`${where}.mirrors[${i}]: no destination or a percentage outside 0–100`);
  if (route.directStatus && (route.directStatus < 200 || route.directStatus > 599)) problems.push(`${where}: direct status ${route.directStatus}`);
  const fault = route.fault;
  if (fault) {
    for (const [name, value] of [['delayPercent', fault.delayPercent], ['abortPercent', fault.abortPercent]] as const) if (!(value >= 0 && value <= 100)) problems.push(`${where}.fault.${name}: ${value}`);
    if (fault.abortStatus && (fault.abortStatus < 200 || fault.abortStatus > 599)) problems.push(`${where}.fault.abortStatus: ${fault.abortStatus}`);
  }
  return problems;
}

/** Envoy's request flag and body for an injected abort. */
export const FAULT_ABORT_BODY = 'fault filter abort';

/** The fault a route injects into one request: a delay (ms, 0 none) and an abort status (0 none), each drawn by its percentage. */
export function drawFault(route: HttpRoute, random: () => number = Math.random): { delayMs: number; abortStatus: number } {
  const fault = route.fault;
  if (!fault) return { delayMs: 0, abortStatus: 0 };
  const hit = (percent: number) => percent >= 100 || (percent > 0 && random() * 100 < percent);
  return { delayMs: fault.delayMs > 0 && hit(fault.delayPercent) ? fault.delayMs : 0, abortStatus: fault.abortStatus > 0 && hit(fault.abortPercent) ? fault.abortStatus : 0 };
}
