/**
 * Gateway API `Gateway` (class istio) listeners and `HTTPRoute`s read into route rules; invalid fields
 * throw InvalidObjectError naming them.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { GATEWAY_API_GROUP } from '../../api/names.js';
import { Field, objectKey, specOf } from './fields.js';
import type { RouteMatchInit, StringMatchInit } from './istio.js';

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

export function readHttpRoute(object: KubernetesObject): K8sHttpRoute {
  const spec = specOf('HTTPRoute', object);
  const namespace = object.metadata?.namespace ?? 'default';
  const name = object.metadata?.name ?? '';
  const parents = spec.child('parentRefs').items().map((ref): ParentRef => {
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
  const ignored: string[] = [];
  const rules = spec.child('rules').items().map((rule, index): HttpRouteRule => {
    if (rule.child('filters').present) ignored.push(`${rule.path}.filters`);
    const matches = rule.child('matches').items().map(readMatch);
    const backends = rule.child('backendRefs').items().map((backend): BackendRef => {
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
    });
    return { source: `HTTPRoute/${namespace}/${name}#${index}`, matches: matches.length ? matches : [{ path: { match: { case: 'pathPrefix', value: '/' } } }], backends };
  });
  return {
    key: objectKey('HTTPRoute', object),
    namespace,
    name,
    generation: object.metadata?.generation ?? 0,
    parents,
    hostnames: spec.child('hostnames').items().map((h) => h.nonEmptyString().toLowerCase()),
    rules: rules.length ? rules : [{ source: `HTTPRoute/${namespace}/${name}#0`, matches: [{ path: { match: { case: 'pathPrefix', value: '/' } } }], backends: [] }],
    ignored,
  };
}
