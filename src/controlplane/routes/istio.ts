/**
 * Istio `Gateway` and `VirtualService` (networking.istio.io v1/v1beta1/v1alpha3, one shape) read
 * into route rules. Unsupported fields are noted, invalid ones throw InvalidObjectError naming the field.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { HttpRouteSchema, RouteMatchSchema, StringMatchSchema } from '../../gen/ambit/route/route_pb.js';
import { Field, objectKey, specOf } from './fields.js';

export type StringMatchInit = MessageInitShape<typeof StringMatchSchema>;
export type RouteMatchInit = MessageInitShape<typeof RouteMatchSchema>;
export type HttpRouteInit = MessageInitShape<typeof HttpRouteSchema>;

export interface IstioServer {
  index: number;
  port: number;
  protocol: 'HTTP' | 'HTTPS' | 'unsupported';
  protocolName: string;
  /** `[namespace/]host` as written; namespace `*` (any) when omitted. */
  hosts: Array<{ namespace: string; host: string }>;
}

export interface IstioGateway {
  key: string;
  namespace: string;
  name: string;
  selector: Record<string, string>;
  servers: IstioServer[];
}

export interface VsMatch {
  match: RouteMatchInit;
  /** Gateway server port the match is limited to. */
  port?: number;
  /** Gateways (`ns/name`) the match is limited to. */
  gateways?: string[];
}

export interface VsRule {
  source: string;
  matches: VsMatch[];
  destinations: Array<{ host: string; port: number; weight: number }>;
}

export interface VirtualService {
  key: string;
  namespace: string;
  name: string;
  hosts: string[];
  /** `ns/name` of the gateways it binds to (`mesh` dropped). */
  gateways: string[];
  rules: VsRule[];
  /** Fields accepted but not applied (for a log line). */
  ignored: string[];
}

const HTTP_PROTOCOLS = new Set(['HTTP', 'HTTP2', 'GRPC', 'GRPC-WEB']);

export function readIstioGateway(object: KubernetesObject): IstioGateway {
  const spec = specOf('Gateway', object);
  const namespace = object.metadata?.namespace ?? 'default';
  const servers = spec.child('servers').items().map((server, index): IstioServer => {
    const port = server.child('port');
    const number = port.child('number').port();
    const protocolName = (port.child('protocol').optionalString() ?? 'HTTP').toUpperCase();
    const protocol = HTTP_PROTOCOLS.has(protocolName) ? 'HTTP' : protocolName === 'HTTPS' ? 'HTTPS' : 'unsupported';
    const hosts = server.child('hosts').items().map((host) => {
      const text = host.nonEmptyString();
      const slash = text.indexOf('/');
      if (slash < 0) return { namespace: '*', host: text.toLowerCase() };
      const ns = text.slice(0, slash);
      return { namespace: ns === '.' ? namespace : ns, host: text.slice(slash + 1).toLowerCase() };
    });
    if (!hosts.length) server.child('hosts').fail('at least one host is required');
    return { index, port: number, protocol, protocolName, hosts };
  });
  return { key: objectKey('Gateway', object), namespace, name: object.metadata?.name ?? '', selector: spec.child('selector').stringMap(), servers };
}

export function readStringMatch(field: Field): StringMatchInit {
  const keys = Object.keys(field.mapping()).filter((k) => field.child(k).present);
  if (keys.length !== 1 || !['exact', 'prefix', 'regex'].includes(keys[0]!)) field.fail('expected exactly one of exact, prefix, regex');
  const key = keys[0] as 'exact' | 'prefix' | 'regex';
  const value = key === 'regex' ? field.child('regex').regex() : field.child(key).string();
  return { match: { case: key, value } };
}

/** `ns/name` of a gateway reference as a VirtualService writes it. */
function gatewayRef(text: string, namespace: string): string {
  return text.includes('/') ? text : `${namespace}/${text}`;
}

function readMatch(field: Field, namespace: string): VsMatch {
  const match: RouteMatchInit = {};
  if (field.child('uri').present) match.path = readStringMatch(field.child('uri'));
  if (field.child('method').present) match.method = readStringMatch(field.child('method'));
  const headers = (name: 'headers' | 'withoutHeaders', invert: boolean) =>
    Object.keys(field.child(name).present ? field.child(name).mapping() : {}).map((header) => ({ name: header.toLowerCase(), value: readStringMatch(field.child(name).child(header)), invert }));
  match.headers = [...headers('headers', false), ...headers('withoutHeaders', true)];
  const query = field.child('queryParams');
  match.queryParams = Object.keys(query.present ? query.mapping() : {}).map((name) => ({ name, value: readStringMatch(query.child(name)) }));
  const result: VsMatch = { match };
  if (field.child('port').present) result.port = field.child('port').port();
  if (field.child('gateways').present) result.gateways = field.child('gateways').items().map((g) => gatewayRef(g.nonEmptyString(), namespace));
  return result;
}

const IGNORED_RULE_FIELDS = ['rewrite', 'redirect', 'retries', 'timeout', 'fault', 'mirror', 'mirrorPercentage', 'mirrors', 'corsPolicy', 'headers', 'directResponse', 'delegate'];

export function readVirtualService(object: KubernetesObject): VirtualService {
  const spec = specOf('VirtualService', object);
  const namespace = object.metadata?.namespace ?? 'default';
  const name = object.metadata?.name ?? '';
  const hosts = spec.child('hosts').items().map((h) => h.nonEmptyString().toLowerCase());
  const gateways = spec.child('gateways').items().map((g) => g.nonEmptyString()).filter((g) => g !== 'mesh').map((g) => gatewayRef(g, namespace));
  const ignored: string[] = [];
  const rules = spec.child('http').items().map((rule, index): VsRule => {
    for (const key of IGNORED_RULE_FIELDS) if (rule.child(key).present) ignored.push(`${rule.path}.${key}`);
    const matches = rule.child('match').items().map((m) => readMatch(m, namespace));
    const routes = rule.child('route').items();
    if (!routes.length) rule.child('route').fail('at least one route destination is required');
    const destinations = routes.map((route) => {
      const destination = route.child('destination');
      const host = destination.child('host').nonEmptyString().toLowerCase();
      const port = destination.child('port').child('number').present ? destination.child('port').child('number').port() : 0;
      if (destination.child('subset').present) ignored.push(`${destination.path}.subset`);
      // No weights at all: an equal split; some weights: the unweighted get none (Istio's reading of a missing weight).
      const weight = route.child('weight').present ? route.child('weight').integer(0, 1_000_000) : routes.some((r) => r.child('weight').present) ? 0 : 1;
      return { host, port, weight };
    });
    return { source: `VirtualService/${namespace}/${name}#${index}`, matches, destinations };
  });
  if (spec.child('tcp').present || spec.child('tls').present) ignored.push('spec.tcp/spec.tls');
  return { key: objectKey('VirtualService', object), namespace, name, hosts, gateways, rules, ignored };
}
