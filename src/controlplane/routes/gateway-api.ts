/**
 * Gateway API `Gateway` (class istio) listeners and `HTTPRoute`s read into route rules; invalid fields
 * throw InvalidObjectError naming them.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { GATEWAY_API_GROUP } from '../../api/names.js';
import { Field, objectKey, specOf } from './fields.js';
import type { HttpRouteInit, RouteMatchInit, StringMatchInit } from './istio.js';

export interface K8sListener {
  name: string;
  port: number;
  protocol: 'HTTP' | 'HTTPS' | 'unsupported';
  protocolName: string;
  hostname?: string;
  /** Which namespaces' routes may attach: `Same` (default) or `All`. */
  from: 'Same' | 'All' | 'unsupported';
}

export interface K8sGateway {
  key: string;
  namespace: string;
  name: string;
  className: string;
  listeners: K8sListener[];
}

export interface ParentRef {
  /** A Gateway (the ingress) or a Service (mesh routing at its waypoint, Gateway API's GAMMA). */
  kind: 'Gateway' | 'Service';
  namespace: string;
  name: string;
  sectionName?: string;
  port?: number;
  /** The parentRef as written, echoed in status.parents. */
  raw: Record<string, unknown>;
}

export interface BackendRef {
  namespace: string;
  name: string;
  port: number;
  weight: number;
  kind: string;
  group: string;
  field: string;
}

export interface HttpRouteRule {
  source: string;
  matches: RouteMatchInit[];
  backends: BackendRef[];
  /** Filters and timeouts as the proxies take them (ambit.route.HttpRoute fields). */
  behaviour: Pick<HttpRouteInit, 'requestHeaders' | 'responseHeaders' | 'rewrite' | 'redirect' | 'timeoutMs'>;
  /** RequestMirror filters: Services that get a copy. */
  mirrors: Array<BackendRef & { percent: number }>;
}

export interface K8sHttpRoute {
  key: string;
  namespace: string;
  name: string;
  generation: number;
  parents: ParentRef[];
  hostnames: string[];
  rules: HttpRouteRule[];
  ignored: string[];
}

export function readK8sGateway(object: KubernetesObject): K8sGateway {
  const spec = specOf('Gateway', object);
  const listeners = spec.child('listeners').items().map((listener): K8sListener => {
    const protocolName = listener.child('protocol').nonEmptyString();
    const from = listener.child('allowedRoutes').child('namespaces').child('from').optionalString() ?? 'Same';
    return {
      name: listener.child('name').nonEmptyString(),
      port: listener.child('port').port(),
      protocol: protocolName === 'HTTP' ? 'HTTP' : protocolName === 'HTTPS' ? 'HTTPS' : 'unsupported',
      protocolName,
      hostname: listener.child('hostname').optionalString()?.toLowerCase(),
      from: from === 'Same' || from === 'All' ? from : 'unsupported',
    };
  });
  return {
    key: objectKey('Gateway', object),
    namespace: object.metadata?.namespace ?? 'default',
    name: object.metadata?.name ?? '',
    className: spec.child('gatewayClassName').optionalString() ?? '',
    listeners,
  };
}

const PATH_TYPES = new Set(['Exact', 'PathPrefix', 'RegularExpression']);

function pathMatch(field: Field): StringMatchInit {
  const type = field.child('type').optionalString() ?? 'PathPrefix';
  if (!PATH_TYPES.has(type)) field.child('type').fail(`expected one of Exact, PathPrefix, RegularExpression, got "${type}"`);
  const valueField = field.child('value');
  const value = valueField.present ? (type === 'RegularExpression' ? valueField.regex() : valueField.string()) : '/';
  if (type !== 'RegularExpression' && !value.startsWith('/')) valueField.fail('a path must start with "/"');
  if (type === 'Exact') return { match: { case: 'exact', value } };
  if (type === 'RegularExpression') return { match: { case: 'regex', value } };
  return { match: { case: 'pathPrefix', value } };
}

function valueMatch(field: Field): StringMatchInit {
  const type = field.child('type').optionalString() ?? 'Exact';
  if (type !== 'Exact' && type !== 'RegularExpression') field.child('type').fail(`expected Exact or RegularExpression, got "${type}"`);
  return type === 'Exact' ? { match: { case: 'exact', value: field.child('value').string() } } : { match: { case: 'regex', value: field.child('value').regex() } };
}

function readMatch(field: Field): RouteMatchInit {
  const match: RouteMatchInit = { path: pathMatch(field.child('path')) };
  match.headers = field.child('headers').items().map((h) => ({ name: h.child('name').nonEmptyString().toLowerCase(), value: valueMatch(h) }));
  match.queryParams = field.child('queryParams').items().map((q) => ({ name: q.child('name').nonEmptyString(), value: valueMatch(q) }));
  if (field.child('method').present) match.method = { match: { case: 'exact', value: field.child('method').nonEmptyString() } };
  return match;
}

function readBackendRef(backend: Field, namespace: string): BackendRef {
  const kind = backend.child('kind').optionalString() ?? 'Service';
  const group = backend.child('group').optionalString() ?? '';
  const port = kind === 'Service' && group === '' ? backend.child('port').port() : 0;
  return {
    namespace: backend.child('namespace').optionalString() ?? namespace,
    name: backend.child('name').nonEmptyString(),
    port,
    weight: backend.child('weight').present ? backend.child('weight').integer(0, 1_000_000) : 1,
    kind,
    group,
    field: backend.path,
  };
}

type HeaderOperationsInit = NonNullable<HttpRouteInit['requestHeaders']>;

function readHeaderModifier(field: Field): HeaderOperationsInit {
  const pairs = (key: string) => Object.fromEntries(field.child(key).items().map((h) => [h.child('name').nonEmptyString().toLowerCase(), h.child('value').string()]));
  return { set: pairs('set'), add: pairs('add'), remove: field.child('remove').items().map((h) => h.nonEmptyString().toLowerCase()) };
}

/** The path part of URLRewrite / RequestRedirect: ReplaceFullPath or ReplacePrefixMatch. */
function readPathModifier(field: Field): { uri: string; fullPath: boolean } | undefined {
  if (!field.present) return undefined;
  const type = field.child('type').string();
  if (type === 'ReplaceFullPath') return { uri: field.child('replaceFullPath').string(), fullPath: true };
  if (type === 'ReplacePrefixMatch') return { uri: field.child('replacePrefixMatch').string(), fullPath: false };
  return field.child('type').fail(`expected ReplaceFullPath or ReplacePrefixMatch, got "${type.slice(0, 40)}"`);
}

/** A rule's filters and timeouts (Gateway API v1): header modifiers, URL rewrite, redirect, mirrors. */
function readFilters(rule: Field, namespace: string): Pick<HttpRouteRule, 'behaviour' | 'mirrors'> {
  const behaviour: HttpRouteRule['behaviour'] = {};
  const mirrors: HttpRouteRule['mirrors'] = [];
  for (const filter of rule.child('filters').items()) {
    const type = filter.child('type').string();
    switch (type) {
      case 'RequestHeaderModifier':
        behaviour.requestHeaders = readHeaderModifier(filter.child('requestHeaderModifier'));
        break;
      case 'ResponseHeaderModifier':
        behaviour.responseHeaders = readHeaderModifier(filter.child('responseHeaderModifier'));
        break;
      case 'URLRewrite': {
        const path = readPathModifier(filter.child('urlRewrite').child('path'));
        behaviour.rewrite = { uri: path?.uri ?? '', fullPath: path?.fullPath ?? false, authority: filter.child('urlRewrite').child('hostname').optionalString() ?? '' };
        break;
      }
      case 'RequestRedirect': {
        const redirect = filter.child('requestRedirect');
        const path = readPathModifier(redirect.child('path'));
        if (path && !path.fullPath) redirect.child('path').fail('ReplacePrefixMatch redirects are not served yet; use ReplaceFullPath');
        const code = redirect.child('statusCode').present ? redirect.child('statusCode').integer(300, 399) : 302;
        if (code !== 301 && code !== 302) redirect.child('statusCode').fail(`expected 301 or 302, got ${code}`);
        const scheme = redirect.child('scheme').optionalString() ?? '';
        if (scheme && scheme !== 'http' && scheme !== 'https') redirect.child('scheme').fail(`expected http or https, got "${scheme.slice(0, 20)}"`);
        behaviour.redirect = { uri: path?.uri ?? '', authority: redirect.child('hostname').optionalString() ?? '', code, scheme, port: redirect.child('port').present ? redirect.child('port').port() : 0 };
        break;
      }
      case 'RequestMirror': {
        const mirror = filter.child('requestMirror');
        const fraction = mirror.child('fraction');
        const percent = mirror.child('percent').present
          ? mirror.child('percent').integer(0, 100)
          : fraction.present
            ? (fraction.child('numerator').integer(0, 1_000_000) / (fraction.child('denominator').present ? fraction.child('denominator').integer(1, 1_000_000) : 100)) * 100
            : 100;
        mirrors.push({ ...readBackendRef(mirror.child('backendRef'), namespace), percent: Math.min(100, percent) });
        break;
      }
      default:
        filter.child('type').fail(`filter type "${type.slice(0, 40)}" is not served (RequestHeaderModifier, ResponseHeaderModifier, URLRewrite, RequestRedirect, RequestMirror are)`);
    }
  }
  if (behaviour.redirect && rule.child('backendRefs').items().length) rule.fail('a rule with a RequestRedirect filter has no backendRefs');
  const timeouts = rule.child('timeouts');
  if (timeouts.child('request').present) behaviour.timeoutMs = timeouts.child('request').durationMs(0);
  return { behaviour, mirrors };
}

function readParents(spec: Field, namespace: string): ParentRef[] {
  return spec.child('parentRefs').items().map((ref): ParentRef => {
    const group = ref.child('group').optionalString() ?? GATEWAY_API_GROUP;
    const kind = ref.child('kind').optionalString() ?? 'Gateway';
    const isGateway = group === GATEWAY_API_GROUP && kind === 'Gateway';
    const isService = (group === '' || group === 'core') && kind === 'Service';
    if (!isGateway && !isService) ref.fail(`a parent is a Gateway (${GATEWAY_API_GROUP}) or a Service (core); got ${group || 'core'}/${kind}`);
    return {
      kind: isGateway ? 'Gateway' : 'Service',
      namespace: ref.child('namespace').optionalString() ?? namespace,
      name: ref.child('name').nonEmptyString(),
      sectionName: ref.child('sectionName').optionalString(),
      port: ref.child('port').present ? ref.child('port').port() : undefined,
      raw: ref.mapping(),
    };
  });
}

export function readHttpRoute(object: KubernetesObject): K8sHttpRoute {
  const spec = specOf('HTTPRoute', object);
  const namespace = object.metadata?.namespace ?? 'default';
  const name = object.metadata?.name ?? '';
  const parents = readParents(spec, namespace);
  const ignored: string[] = [];
  const rules = spec.child('rules').items().map((rule, index): HttpRouteRule => {
    const matches = rule.child('matches').items().map(readMatch);
    const backends = rule.child('backendRefs').items().map((backend) => readBackendRef(backend, namespace));
    for (const backend of rule.child('backendRefs').items()) if (backend.child('filters').present) ignored.push(`${backend.path}.filters`);
    const { behaviour, mirrors } = readFilters(rule, namespace);
    return { source: `HTTPRoute/${namespace}/${name}#${index}`, matches: matches.length ? matches : [{ path: { match: { case: 'pathPrefix', value: '/' } } }], backends, behaviour, mirrors };
  });
  return {
    key: objectKey('HTTPRoute', object),
    namespace,
    name,
    generation: object.metadata?.generation ?? 0,
    parents,
    hostnames: spec.child('hostnames').items().map((h) => h.nonEmptyString().toLowerCase()),
    rules: rules.length ? rules : [{ source: `HTTPRoute/${namespace}/${name}#0`, matches: [{ path: { match: { case: 'pathPrefix', value: '/' } } }], backends: [], behaviour: {}, mirrors: [] }],
    ignored,
  };
}

/** A gRPC service/method match as the HTTP/2 path it is: `/<service>/<method>`. */
function grpcMethodMatch(field: Field): StringMatchInit | undefined {
  if (!field.present) return undefined;
  const type = field.child('type').optionalString() ?? 'Exact';
  const service = field.child('service').optionalString();
  const method = field.child('method').optionalString();
  if (!service && !method) field.fail('expected service, method or both');
  if (type === 'Exact') {
    for (const [key, value] of [['service', service], ['method', method]] as const) if (value !== undefined && !/^[A-Za-z0-9_.]+$/.test(value)) field.child(key).fail(`"${value.slice(0, 60)}" is not a gRPC ${key} name`);
    if (service && method) return { match: { case: 'exact', value: `/${service}/${method}` } };
    if (service) return { match: { case: 'prefix', value: `/${service}/` } };
    return { match: { case: 'regex', value: `/[^/]+/${method!.replace(/\./g, '\\.')}` } };
  }
  if (type !== 'RegularExpression') field.child('type').fail(`expected Exact or RegularExpression, got "${type.slice(0, 40)}"`);
  if (service) field.child('service').regex();
  if (method) field.child('method').regex();
  return { match: { case: 'regex', value: `/(?:${service ?? '[^/]+'})/(?:${method ?? '[^/]+'})` } };
}

const GRPC_FILTERS = new Set(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror']);

/**
 * Gateway API `GRPCRoute` read into the same rules as an HTTPRoute (a gRPC call is an HTTP/2 POST to
 * `/<service>/<method>`). Only Service parents are served (mesh routing at the waypoint).
 */
export function readGrpcRoute(object: KubernetesObject): K8sHttpRoute {
  const spec = specOf('GRPCRoute', object);
  const namespace = object.metadata?.namespace ?? 'default';
  const name = object.metadata?.name ?? '';
  const parents = readParents(spec, namespace);
  const ignored: string[] = [];
  for (const parent of parents) if (parent.kind === 'Gateway') ignored.push(`parentRefs ${parent.namespace}/${parent.name}: GRPCRoutes on Gateways (the ingress) are not served yet`);
  const rules = spec.child('rules').items().map((rule, index): HttpRouteRule => {
    for (const filter of rule.child('filters').items()) {
      const type = filter.child('type').string();
      if (!GRPC_FILTERS.has(type)) filter.child('type').fail(`filter type "${type.slice(0, 40)}" is not served for GRPCRoutes (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror are)`);
    }
    const matches = rule.child('matches').items().map((match): RouteMatchInit => {
      const path = grpcMethodMatch(match.child('method'));
      return { ...(path ? { path } : {}), headers: match.child('headers').items().map((h) => ({ name: h.child('name').nonEmptyString().toLowerCase(), value: valueMatch(h) })) };
    });
    const backends = rule.child('backendRefs').items().map((backend) => readBackendRef(backend, namespace));
    const { behaviour, mirrors } = readFilters(rule, namespace);
    return { source: `GRPCRoute/${namespace}/${name}#${index}`, matches, backends, behaviour, mirrors };
  });
  return {
    key: objectKey('GRPCRoute', object),
    namespace,
    name,
    generation: object.metadata?.generation ?? 0,
    parents,
    hostnames: spec.child('hostnames').items().map((h) => h.nonEmptyString().toLowerCase()),
    rules: rules.length ? rules : [{ source: `GRPCRoute/${namespace}/${name}#0`, matches: [], backends: [], behaviour: {}, mirrors: [] }],
    ignored,
  };
}
