/** The ingress's route table: the virtual host a request's host picks in a listener of its RouteConfig, then the shared route rules. */
import type { HttpRoute, Listener } from '../gen/ambit/route/route_pb.js';
import { firstMatchingRoute, requestHost, type RequestFacts } from '../l7/route-match.js';

export { pickDestination, requestHost, stringMatches, type RequestFacts } from '../l7/route-match.js';

/** How specific a domain is for a host: exact beats the longest wildcard suffix beats `*`; -1 when it does not match. */
function domainScore(domain: string, host: string): number {
  if (domain === host) return Number.MAX_SAFE_INTEGER;
  if (domain === '*') return 0;
  if (domain.startsWith('*.') && host.endsWith(domain.slice(1))) return domain.length;
  return -1;
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
  return firstMatchingRoute(candidates, request);
}
