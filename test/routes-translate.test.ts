// Route translation: Istio Gateway + VirtualService and Gateway API Gateway + HTTPRoute → ambit.route.RouteConfig per ingress.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toJson } from '@bufbuild/protobuf';
import { parseAllDocuments } from 'yaml';
import { readFileSync } from 'node:fs';
import type { KubernetesObject } from '@kubernetes/client-node';
import { RouteConfigSchema } from '../src/gen/ambit/route/route_pb.js';
import { InvalidObjectError } from '../src/controlplane/routes/fields.js';
import { readHttpRoute, readK8sGateway } from '../src/controlplane/routes/gateway-api.js';
import { readIstioGateway, readVirtualService } from '../src/controlplane/routes/istio.js';
import { readDestinationRule } from '../src/controlplane/routes/destination-rule.js';
import { intersectHost, translateRoutes, type IngressProxy, type TranslationInput } from '../src/controlplane/routes/translate.js';

const sample = (name: string) => (parseAllDocuments(readFileSync(new URL(`../../shared/samples/istio/${name}`, import.meta.url), 'utf8')) as Array<{ toJS(): unknown }>).map((d) => d.toJS() as KubernetesObject);
const withNs = (o: KubernetesObject, namespace = 'default') => ({ ...o, metadata: { ...o.metadata, namespace } });

const defaultIngress: IngressProxy = {
  namespace: 'istio-system',
  name: 'istio-ingressgateway',
  labels: { istio: 'ingressgateway', app: 'istio-ingressgateway' },
  targetPort: (p) => ({ 80: 8080, 443: 8443 })[p] ?? p,
};

function input(partial: Partial<TranslationInput>): TranslationInput {
  return { proxies: [defaultIngress], istioGateways: [], virtualServices: [], k8sGateways: [], httpRoutes: [], domainSuffix: 'cluster.local', serviceExists: () => true, ...partial };
}

const json = (config: Parameters<typeof toJson<typeof RouteConfigSchema>>[1]) => toJson(RouteConfigSchema, config) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('Istio Gateway + VirtualService', () => {
  it('translates bookinfo-gateway.yaml into routes on the ingress pod port', () => {
    const [gw, vs] = sample('bookinfo-gateway.yaml').map((o) => withNs(o));
    const result = translateRoutes(input({ istioGateways: [readIstioGateway(gw!)], virtualServices: [readVirtualService(vs!)] }));
    const config = json(result.configs[0]!);
    assert.equal(config.name, 'istio-system/istio-ingressgateway');
    assert.equal(config.listeners.length, 1);
    assert.equal(config.listeners[0].port, 8080, 'server port 8080 is the pod port');
    const vh = config.listeners[0].virtualHosts[0];
    assert.deepEqual(vh.domains, ['*']);
    assert.deepEqual(vh.routes[0].matches.map((m: { path: unknown }) => m.path), [{ exact: '/productpage' }, { prefix: '/static' }, { exact: '/login' }, { exact: '/logout' }, { prefix: '/api/v1/products' }]);
    assert.deepEqual(vh.routes[0].destinations, [{ hostname: 'productpage.default.svc.cluster.local', port: 9080, weight: 1 }]);
  });

  it('maps the service port 80 to 8080, binds by <ns>/<name>, limits by match port, and keeps rule order and weights', () => {
    const gw = readIstioGateway({ apiVersion: 'networking.istio.io/v1beta1', kind: 'Gateway', metadata: { name: 'gw', namespace: 'web' }, spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['web/*.example.com'] }] } } as KubernetesObject);
    const vs = readVirtualService({
      apiVersion: 'networking.istio.io/v1alpha3',
      kind: 'VirtualService',
      metadata: { name: 'shop', namespace: 'web' },
      spec: {
        hosts: ['shop.example.com', 'other.org'],
        gateways: ['web/gw', 'mesh'],
        http: [
          { match: [{ uri: { regex: '/v[0-9]+/.*' }, headers: { 'X-User': { exact: 'jason' } }, method: { exact: 'GET' } }], route: [{ destination: { host: 'reviews', port: { number: 9080 } }, weight: 90 }, { destination: { host: 'ratings.web.svc.cluster.local' }, weight: 10 }] },
          { match: [{ port: 8443, uri: { prefix: '/' } }], route: [{ destination: { host: 'never' } }] },
          { route: [{ destination: { host: 'fallback' } }] },
        ],
      },
    } as KubernetesObject);
    const other = readVirtualService({ kind: 'VirtualService', metadata: { name: 'elsewhere', namespace: 'other' }, spec: { hosts: ['*'], gateways: ['web/gw'], http: [{ route: [{ destination: { host: 'x' } }] }] } } as KubernetesObject);
    const config = json(translateRoutes(input({ istioGateways: [gw], virtualServices: [vs, other] })).configs[0]!);
    assert.equal(config.listeners[0].port, 8080);
    assert.equal(config.listeners[0].virtualHosts.length, 1, 'the VirtualService of namespace other is not allowed by web/*.example.com');
    const vh = config.listeners[0].virtualHosts[0];
    assert.deepEqual(vh.domains, ['shop.example.com']);
    assert.deepEqual(vh.routes.map((r: { source: string }) => r.source), ['VirtualService/web/shop#0', 'VirtualService/web/shop#2'], 'the port-8443 rule is dropped on port 80');
    assert.deepEqual(vh.routes[0].matches[0], { path: { regex: '/v[0-9]+/.*' }, headers: [{ name: 'x-user', value: { exact: 'jason' } }], method: { exact: 'GET' } });
    assert.deepEqual(vh.routes[0].destinations, [
      { hostname: 'reviews.web.svc.cluster.local', port: 9080, weight: 90 },
      { hostname: 'ratings.web.svc.cluster.local', weight: 10 },
    ]);
  });

  it('serves only the proxies the selector matches', () => {
    const gw = readIstioGateway({ kind: 'Gateway', metadata: { name: 'gw', namespace: 'a' }, spec: { selector: { istio: 'ingress' }, servers: [{ port: { number: 80, protocol: 'HTTP' }, hosts: ['*'] }] } } as KubernetesObject);
    assert.deepEqual(json(translateRoutes(input({ istioGateways: [gw] })).configs[0]!).listeners, undefined);
  });

  it('rejects invalid objects naming the field', () => {
    const bad = (spec: unknown) => () => readVirtualService({ kind: 'VirtualService', metadata: { name: 'v', namespace: 'n' }, spec } as KubernetesObject);
    assert.throws(bad({ hosts: ['*'], http: [{ route: [{ destination: {} }] }] }), (e: unknown) => e instanceof InvalidObjectError && e.message === 'VirtualService/n/v: spec.http[0].route[0].destination.host: expected a string, got nothing');
    assert.throws(bad({ hosts: ['*'], http: [{ match: [{ uri: { regex: '(' } }], route: [{ destination: { host: 'a' } }] }] }), /spec\.http\[0\]\.match\[0\]\.uri\.regex: not a valid regular expression/);
    assert.throws(bad({ hosts: ['*'], http: [{ match: [{ uri: { exact: '/', prefix: '/' } }], route: [{ destination: { host: 'a' } }] }] }), /spec\.http\[0\]\.match\[0\]\.uri: expected exactly one of exact, prefix, regex/);
    assert.throws(() => readIstioGateway({ kind: 'Gateway', metadata: { name: 'g', namespace: 'n' }, spec: { servers: [{ port: { number: 70000 }, hosts: ['*'] }] } } as KubernetesObject), /Gateway\/n\/g: spec\.servers\[0\]\.port\.number: must be between 1 and 65535/);
  });

  it('intersects hosts as the more specific side', () => {
    assert.equal(intersectHost('*', 'a.example.com'), 'a.example.com');
    assert.equal(intersectHost('*.example.com', 'a.example.com'), 'a.example.com');
    assert.equal(intersectHost('*.example.com', '*.b.example.com'), '*.b.example.com');
    assert.equal(intersectHost('a.example.com', 'b.example.com'), undefined);
    assert.equal(intersectHost('*.example.com', 'example.com'), undefined);
  });
});

describe('Gateway API Gateway (class istio) + HTTPRoute', () => {
  const proxy: IngressProxy = { namespace: 'default', name: 'web-istio', labels: { 'gateway.networking.k8s.io/gateway-name': 'web' }, targetPort: (p) => (p < 1024 ? p + 8000 : p), gateway: { namespace: 'default', name: 'web' } };
  const gateway = readK8sGateway({ kind: 'Gateway', metadata: { name: 'web', namespace: 'default' }, spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } } as KubernetesObject);
  const route = (spec: unknown, namespace = 'default') => readHttpRoute({ kind: 'HTTPRoute', metadata: { name: 'r', namespace, generation: 3 }, spec } as KubernetesObject);

  it('attaches a route: listener on the pod port, matches, weighted backends, Accepted and ResolvedRefs', () => {
    const r = route({
      parentRefs: [{ name: 'web' }],
      rules: [
        { matches: [{ path: { type: 'Exact', value: '/productpage' } }, { path: { type: 'PathPrefix', value: '/static' }, headers: [{ name: 'X-A', value: 'b' }], method: 'GET' }], backendRefs: [{ name: 'productpage', port: 9080, weight: 3 }, { name: 'productpage-v2', port: 9080 }] },
      ],
    });
    const result = translateRoutes(input({ proxies: [defaultIngress, proxy], k8sGateways: [gateway], httpRoutes: [r] }));
    assert.equal(json(result.configs[0]!).listeners, undefined, 'not on the default ingress');
    const config = json(result.configs[1]!);
    assert.equal(config.name, 'default/web-istio');
    assert.equal(config.listeners[0].port, 8080);
    const rt = config.listeners[0].virtualHosts[0].routes[0];
    assert.deepEqual(rt.matches, [{ path: { exact: '/productpage' } }, { path: { pathPrefix: '/static' }, headers: [{ name: 'x-a', value: { exact: 'b' } }], method: { exact: 'GET' } }]);
    assert.deepEqual(rt.destinations, [{ hostname: 'productpage.default.svc.cluster.local', port: 9080, weight: 3 }, { hostname: 'productpage-v2.default.svc.cluster.local', port: 9080, weight: 1 }]);
    const status = result.routeParents.get('HTTPRoute/default/r')!;
    assert.deepEqual(status[0]!.conditions.map((c) => [c.type, c.status, c.reason]), [['Accepted', 'True', 'Accepted'], ['ResolvedRefs', 'True', 'ResolvedRefs']]);
    assert.equal(result.attachedRoutes.get('Gateway/default/web')!.get('http'), 1);
  });

  it('reports a missing backend (ResolvedRefs False, 500) and a route from another namespace (NotAllowedByListeners)', () => {
    const missing = route({ parentRefs: [{ name: 'web' }], rules: [{ backendRefs: [{ name: 'gone', port: 80 }] }] });
    const result = translateRoutes(input({ proxies: [proxy], k8sGateways: [gateway], httpRoutes: [missing], serviceExists: (h) => !h.startsWith('gone.') }));
    const [accepted, resolved] = result.routeParents.get('HTTPRoute/default/r')![0]!.conditions;
    assert.equal(accepted!.status, 'True');
    assert.deepEqual([resolved!.status, resolved!.reason], ['False', 'BackendNotFound']);
    assert.match(resolved!.message, /spec\.rules\[0\]\.backendRefs\[0\]: Service default\/gone not found/);
    assert.equal(json(result.configs[0]!).listeners[0].virtualHosts[0].routes[0].directStatus, 500);
    const foreign = route({ parentRefs: [{ name: 'web', namespace: 'default' }], rules: [{ backendRefs: [{ name: 'a', port: 80 }] }] }, 'other');
    const denied = translateRoutes(input({ proxies: [proxy], k8sGateways: [gateway], httpRoutes: [foreign] }));
    assert.equal(denied.routeParents.get('HTTPRoute/other/r')![0]!.conditions[0]!.reason, 'NotAllowedByListeners');
    assert.equal(json(denied.configs[0]!).listeners[0].virtualHosts, undefined, 'the listener is open, with no routes');
  });

  it('rejects a bad path type naming the field', () => {
    assert.throws(() => route({ parentRefs: [{ name: 'web' }], rules: [{ matches: [{ path: { type: 'Glob', value: '/' } }] }] }), /HTTPRoute\/default\/r: spec\.rules\[0\]\.matches\[0\]\.path\.type: expected one of Exact, PathPrefix, RegularExpression/);
  });
});

describe('gateway VirtualServices with subsets and route behaviour at the ingress', () => {
  it('a subset is resolved to its pods, and fault, timeout and rewrite go into the ingress route', () => {
    const [gw] = sample('bookinfo-gateway.yaml').map((o) => withNs(o));
    const vs = withNs({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'canary' },
      spec: { hosts: ['*'], gateways: ['bookinfo-gateway'], http: [{ match: [{ uri: { prefix: '/api' } }], rewrite: { uri: '/v2/api' }, timeout: '3s', fault: { delay: { fixedDelay: '1s', percentage: { value: 10 } } }, route: [{ destination: { host: 'productpage', subset: 'v2' } }] }] },
    } as KubernetesObject);
    const dr = readDestinationRule(withNs({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'productpage' }, spec: { host: 'productpage', subsets: [{ name: 'v2', labels: { version: 'v2' } }] } } as KubernetesObject));
    const endpointsOf = () => [
      { uid: 'c1//Pod/default/pp-v1', labels: { version: 'v1' } },
      { uid: 'c1//Pod/default/pp-v2', labels: { version: 'v2' } },
    ];
    const result = translateRoutes(input({ istioGateways: [readIstioGateway(gw!)], virtualServices: [readVirtualService(vs)], destinationRules: [dr], endpointsOf }));
    const route = json(result.configs[0]!).listeners[0].virtualHosts[0].routes[0];
    assert.deepEqual(route.destinations, [{ hostname: 'productpage.default.svc.cluster.local', weight: 1, subset: 'v2', workloads: ['c1//Pod/default/pp-v2'] }]);
    assert.equal(route.timeoutMs, 3000);
    assert.deepEqual(route.rewrite, { uri: '/v2/api' });
    assert.deepEqual(route.fault, { delayMs: 1000, delayPercent: 10 });
  });
});
