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

export interface VsDestination {
  host: string;
  port: number;
  weight: number;
  /** A DestinationRule subset of the host, by name. */
  subset?: string;
}

export interface VsRule {
  source: string;
  matches: VsMatch[];
  destinations: VsDestination[];
  /** Fault, timeout, retries, header changes, rewrite and redirect, as the proxies take them (ambit.route.HttpRoute fields). */
  behaviour: Pick<HttpRouteInit, 'fault' | 'timeoutMs' | 'retry' | 'requestHeaders' | 'responseHeaders' | 'rewrite' | 'redirect'>;
  /** Where copies of the requests go (`mirror` + `mirrorPercentage`, or `mirrors`). */
  mirrors: Array<VsDestination & { percent: number }>;
}

export interface VirtualService {
  key: string;
  namespace: string;
  name: string;
  hosts: string[];
  /** `ns/name` of the gateways it binds to (`mesh` dropped). */
  gateways: string[];
  /** Whether it applies to mesh traffic (no `gateways`, or `mesh` among them): the waypoints'. */
  mesh: boolean;
  /** Creation time (ms): among VirtualServices for one host, the oldest wins, as in Istio. */
  created: number;
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
  return text === 'mesh' || text.includes('/') ? text : `${namespace}/${text}`;
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

const IGNORED_RULE_FIELDS = ['corsPolicy', 'directResponse', 'delegate'];

const REDIRECT_CODES = new Set([301, 302, 303, 307, 308]);

function readDestinationRef(field: Field): VsDestination {
  const host = field.child('host').nonEmptyString().toLowerCase();
  const port = field.child('port').child('number').present ? field.child('port').child('number').port() : 0;
  const subset = field.child('subset').present ? field.child('subset').nonEmptyString() : undefined;
  return { host, port, weight: 1, ...(subset ? { subset } : {}) };
}

function readMirrors(rule: Field): VsRule['mirrors'] {
  const mirrors: VsRule['mirrors'] = [];
  if (rule.child('mirror').present) {
    mirrors.push({ ...readDestinationRef(rule.child('mirror')), percent: rule.child('mirrorPercentage').present ? rule.child('mirrorPercentage').percent() : rule.child('mirrorPercent').present ? rule.child('mirrorPercent').integer(0, 100) : 100 });
  }
  for (const entry of rule.child('mirrors').items()) {
    mirrors.push({ ...readDestinationRef(entry.child('destination')), percent: entry.child('percentage').present ? entry.child('percentage').percent() : 100 });
  }
  return mirrors;
}

/** Envoy's retry_on words Istio passes through, plus status codes. */
const RETRY_ON = new Set(['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-4xx', 'refused-stream', 'retriable-status-codes', 'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable']);

type HeaderOperationsInit = NonNullable<HttpRouteInit['requestHeaders']>;

function readHeaderOperations(field: Field): HeaderOperationsInit | undefined {
  if (!field.present) return undefined;
  const lower = (map: Record<string, string>) => Object.fromEntries(Object.entries(map).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    set: lower(field.child('set').stringMap()),
    add: lower(field.child('add').stringMap()),
    remove: field.child('remove').items().map((item) => item.nonEmptyString().toLowerCase()),
  };
}

function readBehaviour(rule: Field): VsRule['behaviour'] {
  const behaviour: VsRule['behaviour'] = {};
  const fault = rule.child('fault');
  if (fault.present) {
    const delay = fault.child('delay');
    const abort = fault.child('abort');
    if (!delay.present && !abort.present) fault.fail('expected delay or abort');
    behaviour.fault = {};
    if (delay.present) {
      if (delay.child('exponentialDelay').present) delay.child('exponentialDelay').fail('exponentialDelay is not supported (Istio does not support it either)');
      behaviour.fault.delayMs = delay.child('fixedDelay').durationMs(1);
      behaviour.fault.delayPercent = delay.child('percentage').present ? delay.child('percentage').percent() : delay.child('percent').present ? delay.child('percent').integer(0, 100) : 100;
    }
    if (abort.present) {
      if (abort.child('grpcStatus').present || abort.child('http2Error').present) abort.fail('only httpStatus aborts are supported');
      behaviour.fault.abortStatus = abort.child('httpStatus').integer(200, 599);
      behaviour.fault.abortPercent = abort.child('percentage').present ? abort.child('percentage').percent() : 100;
    }
  }
  if (rule.child('timeout').present) behaviour.timeoutMs = rule.child('timeout').durationMs(0);
  const retries = rule.child('retries');
  if (retries.present) {
    const retryOn = (retries.child('retryOn').optionalString() ?? '')
      .split(',')
      .map((word) => word.trim())
      .filter((word) => word !== '');
    for (const word of retryOn) if (!RETRY_ON.has(word) && !/^[1-5]\d\d$/.test(word)) retries.child('retryOn').fail(`unknown retry condition "${word.slice(0, 40)}"`);
    behaviour.retry = {
      attempts: retries.child('attempts').present ? retries.child('attempts').integer(0, 100) : 0,
      perTryTimeoutMs: retries.child('perTryTimeout').present ? retries.child('perTryTimeout').durationMs(1) : 0,
      // Istio's default conditions when retryOn is not given.
      retryOn: retryOn.length ? retryOn : ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', '503'],
    };
  }
  const rewrite = rule.child('rewrite');
  if (rewrite.present) {
    const regex = rewrite.child('uriRegexRewrite');
    if (regex.present && rewrite.child('uri').present) rewrite.fail('expected uri or uriRegexRewrite, not both');
    behaviour.rewrite = {
      uri: rewrite.child('uri').optionalString() ?? '',
      authority: rewrite.child('authority').optionalString() ?? '',
      ...(regex.present ? { uriRegex: regex.child('match').regex(), uriRegexSubstitution: regex.child('rewrite').string() } : {}),
    };
  }
  const redirect = rule.child('redirect');
  if (redirect.present) {
    if (rule.child('route').present) rule.fail('a rule has route or redirect, not both');
    const code = redirect.child('redirectCode').present ? redirect.child('redirectCode').integer(300, 399) : 301;
    if (!REDIRECT_CODES.has(code)) redirect.child('redirectCode').fail(`expected 301, 302, 303, 307 or 308, got ${code}`);
    const scheme = redirect.child('scheme').optionalString() ?? '';
    if (scheme && scheme !== 'http' && scheme !== 'https') redirect.child('scheme').fail(`expected http or https, got "${scheme.slice(0, 20)}"`);
    behaviour.redirect = { uri: redirect.child('uri').optionalString() ?? '', authority: redirect.child('authority').optionalString() ?? '', code, scheme, port: redirect.child('port').present ? redirect.child('port').port() : 0 };
  }
  const headers = rule.child('headers');
  if (headers.present) {
    behaviour.requestHeaders = readHeaderOperations(headers.child('request'));
    behaviour.responseHeaders = readHeaderOperations(headers.child('response'));
  }
  return behaviour;
}

export function readVirtualService(object: KubernetesObject): VirtualService {
  const spec = specOf('VirtualService', object);
  const namespace = object.metadata?.namespace ?? 'default';
  const name = object.metadata?.name ?? '';
  const hosts = spec.child('hosts').items().map((h) => h.nonEmptyString().toLowerCase());
  const written = spec.child('gateways').items().map((g) => g.nonEmptyString());
  const gateways = written.filter((g) => g !== 'mesh').map((g) => gatewayRef(g, namespace));
  const mesh = written.length === 0 || written.includes('mesh');
  const ignored: string[] = [];
  const rules = spec.child('http').items().map((rule, index): VsRule => {
    for (const key of IGNORED_RULE_FIELDS) if (rule.child(key).present) ignored.push(`${rule.path}.${key}`);
    const matches = rule.child('match').items().map((m) => readMatch(m, namespace));
    const routes = rule.child('route').items();
    if (!routes.length && !rule.child('redirect').present) rule.child('route').fail('at least one route destination is required');
    const destinations = routes.map((route) => {
      const destination = route.child('destination');
      const host = destination.child('host').nonEmptyString().toLowerCase();
      const port = destination.child('port').child('number').present ? destination.child('port').child('number').port() : 0;
      const subset = destination.child('subset').present ? destination.child('subset').nonEmptyString() : undefined;
      // No weights at all: an equal split; some weights: the unweighted get none (Istio's reading of a missing weight).
      const weight = route.child('weight').present ? route.child('weight').integer(0, 1_000_000) : routes.some((r) => r.child('weight').present) ? 0 : 1;
      return { host, port, weight, ...(subset ? { subset } : {}) };
    });
    if (destinations.length && destinations.every((d) => d.weight === 0)) rule.child('route').fail('the weights add up to 0: no destination would get a request');
    return { source: `VirtualService/${namespace}/${name}#${index}`, matches, destinations, behaviour: readBehaviour(rule), mirrors: readMirrors(rule) };
  });
  if (spec.child('tcp').present || spec.child('tls').present) ignored.push('spec.tcp/spec.tls');
  const created = Date.parse(object.metadata?.creationTimestamp ? String(object.metadata.creationTimestamp) : '') || 0;
  return { key: objectKey('VirtualService', object), namespace, name, hosts, gateways, mesh, created, rules, ignored };
}
