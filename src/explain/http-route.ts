// `ambit explain --http`: which mesh route of the waypoint on the path an HTTP request follows, and why (the rule, its match, its destinations and policy). Pure: the waypoint's routes and the request in, facts out.
import { fromJson, type JsonValue } from '@bufbuild/protobuf';

import { ServiceRoutesSchema } from '../gen/ambit/waypoint/waypoint_pb.js';
import { describeBehaviour, describeDestinations, describeMatch, type RouteJson, type ServiceRoutesJson } from '../install/proxy-config/routes.js';
import { firstMatchingRoute } from '../l7/route-match.js';
import { ExplainArgumentError } from './target.js';

export interface HttpRequestSpec {
  method: string;
  /** Path and query. */
  path: string;
  /** Lower-cased names. */
  headers: Record<string, string>;
}

export interface HttpRouteFacts {
  /** The waypoint whose routes were read (`<ns>/<pod>`). */
  waypoint: string;
  request: string;
  /** `<ns>/<hostname>` of the service whose routes apply. */
  service: string;
  /** The rule that matched (`VirtualService/<ns>/<name>#<i>`), absent when none did. */
  rule?: string;
  match?: string;
  destinations: string[];
  policy?: string;
  /** In words. */
  text: string;
}

const METHOD = /^[A-Z]+$/;

/** `--http "GET /path?q"` and `--header "name: value"` options → the request to explain. */
export function parseHttpRequest(text: string, headers: readonly string[]): HttpRequestSpec {
  const [method, path, ...rest] = text.trim().split(/\s+/);
  if (!method || !METHOD.test(method) || !path?.startsWith('/') || rest.length) throw new ExplainArgumentError(`--http: expected "<METHOD> <path>" such as "GET /reviews/0", got "${text.slice(0, 80)}"`);
  const parsed: Record<string, string> = {};
  for (const header of headers) {
    const colon = header.indexOf(':');
    if (colon <= 0) throw new ExplainArgumentError(`--header: expected "<name>: <value>", got "${header.slice(0, 80)}"`);
    parsed[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim();
  }
  return { method, path, headers: parsed };
}

/** The route a request to `service` (port `port`, Host `host`) follows among a waypoint's routes. */
export function explainHttpRoute(routes: readonly ServiceRoutesJson[], waypoint: string, service: string, host: string, port: number, request: HttpRequestSpec): HttpRouteFacts {
  const asked = `${request.method} ${request.path}${Object.keys(request.headers).length ? ` with ${Object.entries(request.headers).map(([k, v]) => `${k}: ${v}`).join(', ')}` : ''}`;
  const entry = routes.find((r) => r.service === service);
  const base = { waypoint, request: asked, service, destinations: [] as string[] };
  if (!entry || !entry.routes?.length) return { ...base, text: `waypoint ${waypoint} has no mesh routes for ${service}: the request goes to the service as addressed` };
  const compiled = fromJson(ServiceRoutesSchema, entry as unknown as JsonValue);
  const matched = firstMatchingRoute(compiled.routes, { method: request.method, url: request.path, host, headers: request.headers, port });
  if (!matched) return { ...base, text: `no rule of ${service} at waypoint ${waypoint} matches ${asked}: the request goes to the service as addressed` };
  const json = entry.routes[compiled.routes.indexOf(matched)] as RouteJson;
  const destinations = describeDestinations(json);
  const policy = describeBehaviour(json);
  return {
    ...base,
    rule: matched.source,
    match: describeMatch(json),
    destinations,
    ...(policy !== '-' ? { policy } : {}),
    text: `rule ${matched.source} (match ${describeMatch(json)}) sends ${asked} to ${destinations.join(', ')}${policy !== '-' ? `; ${policy}` : ''}`,
  };
}
