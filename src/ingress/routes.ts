/** The ingress's route table: a RouteConfig from xDS, and the choice of route and destination for one request. */
import type { HttpRoute, Listener, RouteMatch, StringMatch, WeightedDestination } from '../gen/ambit/route/route_pb.js';

export interface RequestFacts {
  method: string;
  /** Path with query string, as the request line has it. */
  url: string;
  /** Host header or :authority. */
  host: string;
  /** Lower-cased header names. */
  headers: Record<string, string | string[] | undefined>;
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

/** How specific a domain is for a host: exact beats the longest wildcard suffix beats `*`; -1 when it does not match. */
function domainScore(domain: string, host: string): number {
  if (domain === host) return Number.MAX_SAFE_INTEGER;
  if (domain === '*') return 0;
  if (domain.startsWith('*.') && host.endsWith(domain.slice(1))) return domain.length;
  return -1;
}

/** The host without port, lower case. */
export function requestHost(host: string): string {
  const lower = host.toLowerCase();
  if (lower.startsWith('[')) return lower.slice(0, lower.indexOf(']') + 1);
  const colon = lower.lastIndexOf(':');
  return colon >= 0 && /^\d+$/.test(lower.slice(colon + 1)) ? lower.slice(0, colon) : lower;
}

/** The first route of the most specific virtual host(s) that accepts the request. */
export function findRoute(listener: Listener, request: RequestFacts): HttpRoute | undefined {
  const host = requestHost(request.host);
  let best = -1;
  let candidates: HttpRoute[] = [];
  for (const vhost of listener.virtualHosts) {
    const score = Math.max(-1, ...vhost.domains.map((d) => domainScore(d, host)));
    if (score < 0 || score < best) continue;
    if (score > best) {
      best = score;
      candidates = [];
    }
    candidates.push(...vhost.routes);
  }
  const queryAt = request.url.indexOf('?');
  const path = queryAt >= 0 ? request.url.slice(0, queryAt) : request.url;
  const query = new URLSearchParams(queryAt >= 0 ? request.url.slice(queryAt + 1) : '');
  return candidates.find((route) => route.matches.length === 0 || route.matches.some((m) => routeMatches(m, request, path, query)));
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
