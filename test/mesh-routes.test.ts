// Mesh routes for waypoints: seed 004's VirtualService + DestinationRule samples, HTTPRoutes with a Service parent, precedence, and bad input named by field.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';

import { readDestinationRule } from '../src/controlplane/routes/destination-rule.js';
import { InvalidObjectError } from '../src/controlplane/routes/fields.js';
import { readGrpcRoute, readHttpRoute } from '../src/controlplane/routes/gateway-api.js';
import { readVirtualService } from '../src/controlplane/routes/istio.js';
import { translateRoutes } from '../src/controlplane/routes/translate.js';
import { destinationPolicyOf, meshRoutesOf, type MeshRouteInput } from '../src/controlplane/routes/mesh-routes.js';
import { LoadBalancer_Simple } from '../src/gen/ambit/waypoint/waypoint_pb.js';
import { AppProtocol, PortListSchema, PortSchema, WorkloadSchema } from '../src/gen/istio/workload/workload_pb.js';
import { routedServiceOf } from '../src/waypoint/target.js';
import { HttpRouteSchema } from '../src/gen/ambit/route/route_pb.js';
import { firstMatchingRoute, redirectLocation, rewrittenPath } from '../src/l7/route-match.js';
import { create } from '@bufbuild/protobuf';

const sample = (name: string) => (parseAllDocuments(readFileSync(new URL(`../../shared/samples/istio/${name}`, import.meta.url), 'utf8')) as Array<{ toJS(): unknown }>).map((d) => d.toJS() as KubernetesObject);
const inDefault = (o: KubernetesObject, created = '2026-12-01T00:00:00Z') => ({ ...o, metadata: { ...o.metadata, namespace: 'default', creationTimestamp: created as unknown as Date } });
const REVIEWS = 'default/reviews.default.svc.cluster.local';
const HOST = 'reviews.default.svc.cluster.local';

const pods = [
  { uid: 'cluster1//Pod/default/reviews-v1-a', labels: { app: 'reviews', version: 'v1' } },
  { uid: 'cluster2//Pod/default/reviews-v1-b', labels: { app: 'reviews', version: 'v1' } },
  { uid: 'cluster1//Pod/default/reviews-v2-a', labels: { app: 'reviews', version: 'v2' } },
  { uid: 'cluster1//Pod/default/reviews-v3-a', labels: { app: 'reviews', version: 'v3' } },
];

function input(partial: Partial<MeshRouteInput>): MeshRouteInput {
  return {
    virtualServices: [],
    destinationRules: [],
    httpRoutes: [],
    domainSuffix: 'cluster.local',
    serviceExists: (hostname) => hostname === HOST || hostname === 'ratings.default.svc.cluster.local',
    endpointsOf: (hostname) => (hostname === HOST ? pods : []),
    ...partial,
  };
}

function vs(spec: unknown, name = 'reviews', created?: string): KubernetesObject {
  return inDefault({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name }, spec } as KubernetesObject, created);
}

function rejects(read: () => unknown, field: RegExp): void {
  assert.throws(read, (error: unknown) => error instanceof InvalidObjectError && field.test(error.problem.field), `rejected naming ${field}`);
}

describe('mesh routes (waypoint)', () => {
  it('seed 004: virtual-service-reviews-90-10.yaml + destination-rule-reviews.yaml → 90/10 between the pods of v1 and v2, every cluster', () => {
    const [vsObject] = sample('virtual-service-reviews-90-10.yaml');
    const [drObject] = sample('destination-rule-reviews.yaml');
    const result = meshRoutesOf(REVIEWS, input({ virtualServices: [readVirtualService(inDefault(vsObject!))], destinationRules: [readDestinationRule(inDefault(drObject!))] }));
    assert.ok(result);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.sources, ['VirtualService/default/reviews']);
    const [route] = result.routes.routes!;
    assert.deepEqual(
      route!.destinations!.map((d) => ({ hostname: d.hostname, weight: d.weight, subset: d.subset, workloads: d.workloads })),
      [
        { hostname: HOST, weight: 90, subset: 'v1', workloads: ['cluster1//Pod/default/reviews-v1-a', 'cluster2//Pod/default/reviews-v1-b'] },
        { hostname: HOST, weight: 10, subset: 'v2', workloads: ['cluster1//Pod/default/reviews-v2-a'] },
      ],
    );
  });

  it('a subset no DestinationRule defines: named as a problem, and the destination has no endpoint', () => {
    const result = meshRoutesOf(REVIEWS, input({ virtualServices: [readVirtualService(vs({ hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v9' } }] }] }))] }));
    assert.match(result!.problems.join('\n'), /spec\.http\[0\]\.route\[0\]\.destination\.subset: no DestinationRule of reviews\.default\.svc\.cluster\.local has a subset "v9"/);
    assert.deepEqual(result!.routes.routes![0]!.destinations![0]!.workloads, []);
  });

  it('a VirtualService bound to gateways only is not a mesh route; with `mesh` among them it is', () => {
    const gatewayOnly = readVirtualService(vs({ hosts: ['reviews'], gateways: ['bookinfo-gateway'], http: [{ route: [{ destination: { host: 'reviews' } }] }] }));
    assert.equal(meshRoutesOf(REVIEWS, input({ virtualServices: [gatewayOnly] })), undefined);
    const both = readVirtualService(vs({ hosts: ['reviews'], gateways: ['bookinfo-gateway', 'mesh'], http: [{ route: [{ destination: { host: 'reviews' } }] }] }));
    assert.ok(meshRoutesOf(REVIEWS, input({ virtualServices: [both] })));
  });

  it('several VirtualServices for one host: an exact host beats a wildcard, then the oldest wins (Istio)', () => {
    const route = (host: string) => ({ hosts: [host], http: [{ route: [{ destination: { host: 'reviews' } }] }] });
    const newer = readVirtualService(vs(route('reviews'), 'newer', '2026-12-03T00:00:00Z'));
    const older = readVirtualService(vs(route('reviews.default.svc.cluster.local'), 'older', '2026-12-02T00:00:00Z'));
    const wildcard = readVirtualService(vs(route('*.default.svc.cluster.local'), 'wildcard', '2026-11-01T00:00:00Z'));
    assert.deepEqual(meshRoutesOf(REVIEWS, input({ virtualServices: [newer, wildcard, older] }))!.sources, ['VirtualService/default/older']);
    assert.deepEqual(meshRoutesOf(REVIEWS, input({ virtualServices: [wildcard] }))!.sources, ['VirtualService/default/wildcard']);
  });

  it('reads header matches, fault, timeout, retries and header changes into the route', () => {
    const object = vs({
      hosts: ['reviews'],
      http: [
        { match: [{ headers: { 'end-user': { exact: 'jason' } }, port: 9080 }], route: [{ destination: { host: 'reviews', subset: 'v2' } }], timeout: '0.5s', retries: { attempts: 3, perTryTimeout: '100ms', retryOn: '5xx,reset' } },
        { route: [{ destination: { host: 'reviews' } }], fault: { abort: { httpStatus: 500, percentage: { value: 100 } }, delay: { fixedDelay: '2s', percentage: { value: 50 } } }, headers: { request: { set: { 'X-Canary': 'no' } }, response: { remove: ['Server'] } } },
      ],
    });
    const [jason, rest] = meshRoutesOf(REVIEWS, input({ virtualServices: [readVirtualService(object)] }))!.routes.routes!;
    assert.equal(jason!.matches![0]!.port, 9080);
    assert.deepEqual(jason!.matches![0]!.headers, [{ name: 'end-user', value: { match: { case: 'exact', value: 'jason' } }, invert: false }]);
    assert.equal(jason!.timeoutMs, 500);
    assert.deepEqual(jason!.retry, { attempts: 3, perTryTimeoutMs: 100, retryOn: ['5xx', 'reset'] });
    assert.deepEqual(rest!.fault, { delayMs: 2000, delayPercent: 50, abortStatus: 500, abortPercent: 100 });
    assert.deepEqual(rest!.requestHeaders, { set: { 'x-canary': 'no' }, add: {}, remove: [] });
    assert.deepEqual(rest!.responseHeaders, { set: {}, add: {}, remove: ['server'] });
  });

  it('Istio\'s default retry conditions when retryOn is not given', () => {
    const object = vs({ hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' } }], retries: { attempts: 2 } }] });
    assert.deepEqual(readVirtualService(object).rules[0]!.behaviour.retry!.retryOn, ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', '503']);
  });

  it('bad input is rejected naming the field: weights adding up to 0, a bad duration, a percentage over 100, an unknown retry condition, a bad regex, a bad subset name', () => {
    const base = { hosts: ['reviews'] };
    rejects(() => readVirtualService(vs({ ...base, http: [{ route: [{ destination: { host: 'reviews' }, weight: 0 }] }] })), /^spec\.http\[0\]\.route$/);
    rejects(() => readVirtualService(vs({ ...base, http: [{ route: [{ destination: { host: 'reviews' } }], timeout: 'soon' }] })), /^spec\.http\[0\]\.timeout$/);
    rejects(() => readVirtualService(vs({ ...base, http: [{ route: [{ destination: { host: 'reviews' } }], fault: { abort: { httpStatus: 500, percentage: { value: 120 } } } }] })), /^spec\.http\[0\]\.fault\.abort\.percentage$/);
    rejects(() => readVirtualService(vs({ ...base, http: [{ route: [{ destination: { host: 'reviews' } }], retries: { attempts: 2, retryOn: '5xx,sometimes' } }] })), /^spec\.http\[0\]\.retries\.retryOn$/);
    rejects(() => readVirtualService(vs({ ...base, http: [{ match: [{ uri: { regex: '(' } }], route: [{ destination: { host: 'reviews' } }] }] })), /^spec\.http\[0\]\.match\[0\]\.uri\.regex$/);
    rejects(() => readDestinationRule(inDefault({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'r' }, spec: { host: 'reviews', subsets: [{ name: 'v 1' }] } } as KubernetesObject)), /^spec\.subsets\[0\]\.name$/);
  });

  it('an HTTPRoute with the Service as parent (Gateway API mesh routing) wins over a VirtualService', () => {
    const httpRoute = readHttpRoute(
      inDefault({
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'reviews' },
        spec: { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }], rules: [{ backendRefs: [{ name: 'reviews', port: 9080, weight: 90 }, { name: 'ratings', port: 9080, weight: 10 }] }] },
      } as KubernetesObject),
    );
    const virtualService = readVirtualService(vs({ hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews' } }] }] }));
    const result = meshRoutesOf(REVIEWS, input({ httpRoutes: [httpRoute], virtualServices: [virtualService] }))!;
    assert.deepEqual(result.sources, ['HTTPRoute/default/reviews']);
    const [route] = result.routes.routes!;
    assert.equal(route!.matches![0]!.port, 9080);
    assert.deepEqual(route!.destinations!.map((d) => [d.hostname, d.weight]), [[HOST, 90], ['ratings.default.svc.cluster.local', 10]]);
  });
});

describe('which service\'s routes a request follows at a waypoint', () => {
  const workloadTarget = (port: number) => ({
    kind: 'workload' as const,
    ip: '10.20.0.5',
    port,
    appProtocol: AppProtocol.UNKNOWN,
    workload: create(WorkloadSchema, { uid: 'cluster1//Pod/default/reviews-v1-a', services: { [REVIEWS]: create(PortListSchema, { ports: [create(PortSchema, { servicePort: 9080, targetPort: 9081 })] }) } }),
  });

  it('a pod addressed directly (service-account waypoint): the service of the pod the Host header names, at the service port of the target port', () => {
    for (const host of ['reviews:9080', 'reviews', 'reviews.default', 'reviews.default.svc', 'REVIEWS.default.svc.cluster.local:9080']) {
      assert.deepEqual(routedServiceOf(workloadTarget(9081), host), { name: REVIEWS, port: 9080 }, host);
    }
    assert.equal(routedServiceOf(workloadTarget(9081), 'ratings:9080'), undefined, 'another service');
    assert.equal(routedServiceOf(workloadTarget(7000), 'reviews'), undefined, 'a port the service does not map');
  });
});

describe('DestinationRule traffic policy (waypoint load balancing and outlier detection)', () => {
  const dr = (trafficPolicy: unknown) => readDestinationRule(inDefault({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'reviews' }, spec: { host: 'reviews', trafficPolicy } } as KubernetesObject));

  it('reads simple and consistent-hash load balancing, and outlier detection with Istio\'s defaults', () => {
    const [reviewsRule] = sample('destination-rule-reviews.yaml');
    assert.deepEqual(readDestinationRule(inDefault(reviewsRule!)).loadBalancer, { simple: LoadBalancer_Simple.RANDOM });
    assert.deepEqual(dr({ loadBalancer: { simple: 'LEAST_REQUEST' } }).loadBalancer, { simple: LoadBalancer_Simple.LEAST_REQUEST });
    assert.deepEqual(dr({ loadBalancer: { consistentHash: { httpHeaderName: 'X-User' } } }).loadBalancer, { hashHeader: 'x-user' });
    assert.deepEqual(dr({ loadBalancer: { consistentHash: { httpCookie: { name: 'user', ttl: '0s' } } } }).loadBalancer, { hashCookie: 'user' });
    assert.deepEqual(dr({ loadBalancer: { consistentHash: { useSourceIp: true } } }).loadBalancer, { hashSourceIp: true });
    assert.deepEqual(dr({ outlierDetection: { consecutive5xxErrors: 3, interval: '1s', baseEjectionTime: '15s', maxEjectionPercent: 50 } }).outlierDetection, { consecutive5xxErrors: 3, consecutiveGatewayErrors: 0, baseEjectionTimeMs: 15_000, maxEjectionPercent: 50 });
    assert.deepEqual(dr({ outlierDetection: {} }).outlierDetection, { consecutive5xxErrors: 5, consecutiveGatewayErrors: 0, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10 });
    assert.deepEqual(dr({ connectionPool: { tcp: { maxConnections: 10, connectTimeout: '1s' }, http: { http1MaxPendingRequests: 1, http2MaxRequests: 100, maxRequestsPerConnection: 5 } } }).connectionPool, { maxConnections: 10, maxPendingRequests: 1, maxRequests: 100 });
    assert.deepEqual(dr({ connectionPool: { tcp: { connectTimeout: '1s' }, http: { maxRequestsPerConnection: 5 } } }).ignored, ['spec.trafficPolicy.connectionPool.tcp.connectTimeout', 'spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection'], 'what is not applied is said');
  });

  it('bad input is rejected naming the field', () => {
    rejects(() => dr({ loadBalancer: { simple: 'FASTEST' } }), /^spec\.trafficPolicy\.loadBalancer\.simple$/);
    rejects(() => dr({ loadBalancer: { simple: 'RANDOM', consistentHash: { useSourceIp: true } } }), /^spec\.trafficPolicy\.loadBalancer$/);
    rejects(() => dr({ loadBalancer: { consistentHash: {} } }), /^spec\.trafficPolicy\.loadBalancer\.consistentHash$/);
    rejects(() => dr({ outlierDetection: { baseEjectionTime: 'long' } }), /^spec\.trafficPolicy\.outlierDetection\.baseEjectionTime$/);
    rejects(() => dr({ outlierDetection: { maxEjectionPercent: 150 } }), /^spec\.trafficPolicy\.outlierDetection\.maxEjectionPercent$/);
  });

  it('the policy of a destination comes from its oldest DestinationRule; none without load balancer or outlier detection', () => {
    const withPolicy = dr({ loadBalancer: { simple: 'ROUND_ROBIN' } });
    const plain = readDestinationRule(inDefault({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'plain' }, spec: { host: 'ratings' } } as KubernetesObject));
    const base = { domainSuffix: 'cluster.local', serviceExists: () => true };
    assert.deepEqual(destinationPolicyOf(HOST, { ...base, destinationRules: [withPolicy, plain] }), { hostname: HOST, source: 'default/reviews', loadBalancer: { simple: LoadBalancer_Simple.ROUND_ROBIN }, outlierDetection: undefined, connectionPool: undefined });
    assert.equal(destinationPolicyOf('ratings.default.svc.cluster.local', { ...base, destinationRules: [withPolicy, plain] }), undefined);
  });
});

describe('subsets across networks', () => {
  it('a workload standing for another network\'s pods is in a subset when any of them is, and a partial match is named', () => {
    const synthetic = 'network2/SyntheticGateway/default/reviews.default.svc.cluster.local';
    const endpointsOf = () => [
      { uid: 'cluster1//Pod/default/reviews-v1-a', labels: { version: 'v1' } },
      { uid: synthetic, labels: { version: 'v2' } },
      { uid: synthetic, labels: { version: 'v3' } },
    ];
    const [drObject] = sample('destination-rule-reviews.yaml');
    const virtualService = readVirtualService(vs({ hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 50 }, { destination: { host: 'reviews', subset: 'v2' }, weight: 50 }] }] }));
    const result = meshRoutesOf(REVIEWS, input({ virtualServices: [virtualService], destinationRules: [readDestinationRule(inDefault(drObject!))], endpointsOf }))!;
    assert.deepEqual(result.routes.routes![0]!.destinations!.map((d) => d.workloads), [['cluster1//Pod/default/reviews-v1-a'], [synthetic]]);
    assert.match(result.problems.join('\n'), /subset "v2" has 1 of the 2 endpoints that network2\/SyntheticGateway\/default\/reviews\.default\.svc\.cluster\.local stands for/);
  });
});

describe('rewrite, redirect and mirror', () => {
  it('reads them into the route, the mirror\'s subset resolved like a destination\'s', () => {
    const [drObject] = sample('destination-rule-reviews.yaml');
    const object = vs({
      hosts: ['reviews'],
      http: [
        { match: [{ uri: { prefix: '/old' } }], rewrite: { uri: '/new', authority: 'reviews.example' }, route: [{ destination: { host: 'reviews', subset: 'v1' } }], mirror: { host: 'reviews', subset: 'v2' }, mirrorPercentage: { value: 25 } },
        { match: [{ uri: { exact: '/moved' } }], redirect: { uri: '/here', authority: 'ratings', redirectCode: 308 } },
        { rewrite: { uriRegexRewrite: { match: '^/v(\\d)/(.*)', rewrite: '/\\2?version=\\1' } }, route: [{ destination: { host: 'reviews' } }], mirrors: [{ destination: { host: 'ratings' }, percentage: { value: 5 } }] },
      ],
    });
    const [first, second, third] = meshRoutesOf(REVIEWS, input({ virtualServices: [readVirtualService(object)], destinationRules: [readDestinationRule(inDefault(drObject!))] }))!.routes.routes!;
    assert.deepEqual(first!.rewrite, { uri: '/new', authority: 'reviews.example' });
    assert.deepEqual(first!.mirrors!.map((m) => [m.destination!.subset, m.destination!.workloads, m.percent]), [['v2', ['cluster1//Pod/default/reviews-v2-a'], 25]]);
    assert.deepEqual(second!.redirect, { uri: '/here', authority: 'ratings', code: 308, scheme: '', port: 0 });
    assert.deepEqual(second!.destinations, []);
    assert.deepEqual(third!.rewrite, { uri: '', authority: '', uriRegex: '^/v(\\d)/(.*)', uriRegexSubstitution: '/\\2?version=\\1' });
    assert.deepEqual(third!.mirrors!.map((m) => [m.destination!.hostname, m.percent]), [['ratings.default.svc.cluster.local', 5]]);
  });

  it('the path rewrite and the redirect Location as the waypoint computes them', () => {
    const route = (init: Parameters<typeof create<typeof HttpRouteSchema>>[1]) => create(HttpRouteSchema, init);
    const request = (url: string, host = 'reviews:9080') => ({ method: 'GET', url, host, headers: {} });
    const prefix = route({ matches: [{ path: { match: { case: 'prefix', value: '/old' } } }], rewrite: { uri: '/new' } });
    assert.equal(rewrittenPath(prefix, request('/old/page?x=1')), '/new/page?x=1');
    const gatewayPrefix = route({ matches: [{ path: { match: { case: 'pathPrefix', value: '/old' } } }], rewrite: { uri: '/' } });
    assert.equal(rewrittenPath(gatewayPrefix, request('/old/page')), '/page');
    const regex = route({ rewrite: { uriRegex: '^/v(\\d)/(.*)', uriRegexSubstitution: '/\\2?version=\\1' } });
    assert.equal(rewrittenPath(regex, request('/v2/reviews')), '/reviews?version=2');
    const whole = route({ matches: [{ headers: [{ name: 'x', value: { match: { case: 'exact', value: '1' } } }] }], rewrite: { uri: '/all' } });
    assert.equal(rewrittenPath(whole, { ...request('/any?q'), headers: { x: '1' } }), '/all?q', 'no path in the match: the whole path is replaced');
    assert.equal(redirectLocation(route({ redirect: { uri: '/here' } }), request('/moved?q=1')), 'http://reviews:9080/here');
    assert.equal(redirectLocation(route({ redirect: { authority: 'ratings', scheme: 'https', port: 8443 } }), request('/x')), 'https://ratings:8443/x');
  });

  it('bad input is named: route and redirect together, a redirect code that is no redirect, uri and uriRegexRewrite together', () => {
    rejects(() => readVirtualService(vs({ hosts: ['reviews'], http: [{ redirect: { uri: '/x' }, route: [{ destination: { host: 'reviews' } }] }] })), /^spec\.http\[0\]$/);
    rejects(() => readVirtualService(vs({ hosts: ['reviews'], http: [{ redirect: { uri: '/x', redirectCode: 305 } }] })), /^spec\.http\[0\]\.redirect\.redirectCode$/);
    rejects(() => readVirtualService(vs({ hosts: ['reviews'], http: [{ rewrite: { uri: '/x', uriRegexRewrite: { match: 'a', rewrite: 'b' } }, route: [{ destination: { host: 'reviews' } }] }] })), /^spec\.http\[0\]\.rewrite$/);
    rejects(() => readVirtualService(vs({ hosts: ['reviews'], http: [{ rewrite: { uriRegexRewrite: { match: '(', rewrite: 'b' } }, route: [{ destination: { host: 'reviews' } }] }] })), /^spec\.http\[0\]\.rewrite\.uriRegexRewrite\.match$/);
  });
});

describe('HTTPRoute filters and timeouts (mesh routing)', () => {
  const httpRoute = (rules: unknown[]) =>
    readHttpRoute(inDefault({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'reviews' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }], rules } } as KubernetesObject));

  it('header modifiers, URL rewrite, a mirror and the request timeout go into the route; a redirect rule has no backend', () => {
    const route = httpRoute([
      {
        matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Canary', value: 'yes' }], remove: ['X-Debug'] } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'X-Served-By', value: 'waypoint' }] } },
          { type: 'URLRewrite', urlRewrite: { hostname: 'reviews.example', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } },
          { type: 'RequestMirror', requestMirror: { backendRef: { name: 'ratings', port: 9080 }, percent: 10 } },
        ],
        backendRefs: [{ name: 'reviews', port: 9080 }],
        timeouts: { request: '1m30s' },
      },
      { matches: [{ path: { type: 'Exact', value: '/moved' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/here' }, statusCode: 301 } }] },
    ]);
    const [rewritten, redirected] = meshRoutesOf(REVIEWS, input({ httpRoutes: [route] }))!.routes.routes!;
    assert.deepEqual(rewritten!.requestHeaders, { set: { 'x-canary': 'yes' }, add: {}, remove: ['x-debug'] });
    assert.deepEqual(rewritten!.responseHeaders, { set: {}, add: { 'x-served-by': 'waypoint' }, remove: [] });
    assert.deepEqual(rewritten!.rewrite, { uri: '/new', fullPath: false, authority: 'reviews.example' });
    assert.deepEqual(rewritten!.mirrors, [{ destination: { hostname: 'ratings.default.svc.cluster.local', port: 9080, weight: 1 }, percent: 10 }]);
    assert.equal(rewritten!.timeoutMs, 90_000);
    assert.deepEqual(redirected!.redirect, { uri: '/here', authority: '', code: 301, scheme: '', port: 0 });
    assert.equal(redirected!.directStatus, 0, 'a redirect is no 500');
  });

  it('bad filters are named: an unknown type, a redirect with backends, a status code that is not 301/302', () => {
    rejects(() => httpRoute([{ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x', kind: 'y', name: 'z' } }], backendRefs: [{ name: 'reviews', port: 9080 }] }]), /^spec\.rules\[0\]\.filters\[0\]\.type$/);
    rejects(() => httpRoute([{ filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'x' } }], backendRefs: [{ name: 'reviews', port: 9080 }] }]), /^spec\.rules\[0\]$/);
    rejects(() => httpRoute([{ filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 307 } }] }]), /^spec\.rules\[0\]\.filters\[0\]\.requestRedirect\.statusCode$/);
    rejects(() => httpRoute([{ filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'Sideways' } } }], backendRefs: [{ name: 'reviews', port: 9080 }] }]), /^spec\.rules\[0\]\.filters\[0\]\.urlRewrite\.path\.type$/);
  });

  it('a Service parent gets status from the mesh controller: Accepted, or NoMatchingParent when the Service is missing', () => {
    const route = httpRoute([{ backendRefs: [{ name: 'reviews', port: 9080 }] }]);
    const result = translateRoutes({ proxies: [], istioGateways: [], virtualServices: [], k8sGateways: [], httpRoutes: [route], domainSuffix: 'cluster.local', serviceExists: (h) => h === HOST });
    const [parent] = result.routeParents.get('HTTPRoute/default/reviews')!;
    assert.equal(parent!.mesh, true);
    assert.deepEqual(parent!.conditions.map((c) => [c.type, c.status, c.reason]), [['Accepted', 'True', 'Accepted'], ['ResolvedRefs', 'True', 'ResolvedRefs']]);
    const missing = translateRoutes({ proxies: [], istioGateways: [], virtualServices: [], k8sGateways: [], httpRoutes: [route], domainSuffix: 'cluster.local', serviceExists: () => false });
    assert.deepEqual(missing.routeParents.get('HTTPRoute/default/reviews')![0]!.conditions.map((c) => [c.type, c.status, c.reason]), [['Accepted', 'False', 'NoMatchingParent'], ['ResolvedRefs', 'False', 'BackendNotFound']]);
  });
});

/** Route inits as the waypoint holds them (protobuf messages). */
const compileRoutes = (routes: NonNullable<ReturnType<typeof meshRoutesOf>>['routes']['routes']) => (routes ?? []).map((r) => create(HttpRouteSchema, r));

describe('GRPCRoute (mesh routing)', () => {
  const grpcRoute = (rules: unknown[], parentRefs: unknown[] = [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }]) =>
    readGrpcRoute(inDefault({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'reviews-grpc' }, spec: { parentRefs, rules } } as KubernetesObject));

  it('method matches become HTTP/2 paths; header matches, weights and filters as for HTTPRoutes', () => {
    const route = grpcRoute([
      { matches: [{ method: { service: 'bookinfo.Reviews', method: 'Get' } }, { method: { service: 'bookinfo.Admin' } }, { method: { method: 'Health' } }], backendRefs: [{ name: 'reviews', port: 9080, weight: 90 }, { name: 'ratings', port: 9080, weight: 10 }] },
      { matches: [{ method: { type: 'RegularExpression', service: 'bookinfo\\..*', method: 'List.*' }, headers: [{ name: 'X-Tenant', value: 'a' }] }], filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-canary', value: '1' }] } }], backendRefs: [{ name: 'reviews', port: 9080 }] },
    ]);
    const result = meshRoutesOf(REVIEWS, input({ httpRoutes: [route] }))!;
    assert.deepEqual(result.sources, ['GRPCRoute/default/reviews-grpc']);
    const [first, second] = result.routes.routes!;
    assert.deepEqual(first!.matches!.map((m) => m.path), [{ match: { case: 'exact', value: '/bookinfo.Reviews/Get' } }, { match: { case: 'prefix', value: '/bookinfo.Admin/' } }, { match: { case: 'regex', value: '/[^/]+/Health' } }]);
    assert.deepEqual(first!.destinations!.map((d) => [d.hostname, d.weight]), [[HOST, 90], ['ratings.default.svc.cluster.local', 10]]);
    assert.deepEqual(second!.matches![0]!.path, { match: { case: 'regex', value: '/(?:bookinfo\\..*)/(?:List.*)' } });
    assert.deepEqual(second!.matches![0]!.headers, [{ name: 'x-tenant', value: { match: { case: 'exact', value: 'a' } } }]);
    assert.deepEqual(second!.requestHeaders, { set: { 'x-canary': '1' }, add: {}, remove: [] });
    const routes = compileRoutes(result.routes.routes!);
    const call = (path: string, headers: Record<string, string> = {}) => firstMatchingRoute(routes, { method: 'POST', url: path, host: 'reviews:9080', headers, port: 9080 })?.source;
    assert.equal(call('/bookinfo.Reviews/Get'), 'GRPCRoute/default/reviews-grpc#0');
    assert.equal(call('/bookinfo.Admin/Anything'), 'GRPCRoute/default/reviews-grpc#0');
    assert.equal(call('/other.Svc/Health'), 'GRPCRoute/default/reviews-grpc#0');
    assert.equal(call('/bookinfo.Reviews/ListAll', { 'x-tenant': 'a' }), 'GRPCRoute/default/reviews-grpc#1');
    assert.equal(call('/bookinfo.Reviews/ListAll'), undefined, 'the header is required');
  });

  it('bad input is named: a method match without service or method, a bad Exact name, a filter GRPCRoutes do not have; a Gateway parent gets NotAllowedByListeners', () => {
    rejects(() => grpcRoute([{ matches: [{ method: { type: 'Exact' } }], backendRefs: [{ name: 'reviews', port: 9080 }] }]), /^spec\.rules\[0\]\.matches\[0\]\.method$/);
    rejects(() => grpcRoute([{ matches: [{ method: { service: 'bad/name' } }], backendRefs: [{ name: 'reviews', port: 9080 }] }]), /^spec\.rules\[0\]\.matches\[0\]\.method\.service$/);
    rejects(() => grpcRoute([{ filters: [{ type: 'URLRewrite', urlRewrite: {} }], backendRefs: [{ name: 'reviews', port: 9080 }] }]), /^spec\.rules\[0\]\.filters\[0\]\.type$/);
    const onGateway = grpcRoute([{ backendRefs: [{ name: 'reviews', port: 9080 }] }], [{ name: 'bookinfo-gateway' }]);
    const result = translateRoutes({ proxies: [], istioGateways: [], virtualServices: [], k8sGateways: [], httpRoutes: [], grpcRoutes: [onGateway], domainSuffix: 'cluster.local', serviceExists: () => true });
    assert.deepEqual(result.routeParents.get('GRPCRoute/default/reviews-grpc')![0]!.conditions.map((c) => [c.type, c.status, c.reason]), [['Accepted', 'False', 'NotAllowedByListeners'], ['ResolvedRefs', 'True', 'ResolvedRefs']]);
  });
});
