// `ambit explain --http`: the rule an HTTP request matches among a waypoint's routes, in words and as facts; bad --http / --header input is named.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { explainHttpRoute, parseHttpRequest } from '../src/explain/http-route.js';
import { renderExplanation } from '../src/explain/render.js';
import { ExplainArgumentError } from '../src/explain/target.js';
import type { ServiceRoutesJson } from '../src/install/proxy-config/routes.js';

const SERVICE = 'default/reviews.default.svc.cluster.local';
const routes: ServiceRoutesJson[] = [
  {
    service: SERVICE,
    routes: [
      { source: 'VirtualService/default/reviews#0', matches: [{ headers: [{ name: 'end-user', value: { exact: 'jason' } }] }], destinations: [{ hostname: 'reviews.default.svc.cluster.local', weight: 1, subset: 'v2', workloads: ['a'] }] },
      { source: 'VirtualService/default/reviews#1', matches: [{ path: { prefix: '/reviews' } }], destinations: [{ hostname: 'reviews.default.svc.cluster.local', weight: 1, subset: 'v1', workloads: ['b'] }], timeoutMs: 500 },
    ],
  },
];

describe('explain --http', () => {
  it('names the rule that matches, why, where it sends the request and its policy', () => {
    const jason = explainHttpRoute(routes, 'default/waypoint-x', SERVICE, 'reviews', 9080, parseHttpRequest('GET /reviews/0', ['End-User: jason']));
    assert.equal(jason.rule, 'VirtualService/default/reviews#0');
    assert.equal(jason.match, 'end-user=jason');
    assert.deepEqual(jason.destinations, ['reviews.default.svc.cluster.local subset v2 (1 pods) 100%']);
    assert.match(jason.text, /^rule VirtualService\/default\/reviews#0 \(match end-user=jason\) sends GET \/reviews\/0 with end-user: jason to reviews\.default\.svc\.cluster\.local subset v2/);
    const other = explainHttpRoute(routes, 'default/waypoint-x', SERVICE, 'reviews', 9080, parseHttpRequest('GET /reviews/0', []));
    assert.equal(other.rule, 'VirtualService/default/reviews#1');
    assert.equal(other.policy, 'timeout 500ms');
    const none = explainHttpRoute(routes, 'default/waypoint-x', SERVICE, 'reviews', 9080, parseHttpRequest('POST /health', []));
    assert.equal(none.rule, undefined);
    assert.match(none.text, /no rule of default\/reviews\.default\.svc\.cluster\.local at waypoint default\/waypoint-x matches POST \/health: the request goes to the service as addressed/);
    const unrouted = explainHttpRoute(routes, 'default/waypoint-x', 'default/ratings.default.svc.cluster.local', 'ratings', 9080, parseHttpRequest('GET /', []));
    assert.match(unrouted.text, /has no mesh routes for default\/ratings/);
    const text = renderExplanation({ summary: 's', source: { pod: 'default/sleep', node: 'n', captured: true, capture: 'c' }, destination: { requested: 'reviews:9080', resolution: 'r', port: 9080, kind: 'service' }, paths: [], notes: [], http: jason });
    assert.match(text, /HTTP ROUTE at waypoint default\/waypoint-x\n {2}rule VirtualService\/default\/reviews#0/);
  });

  it('bad --http and --header input is named', () => {
    for (const bad of ['GET', 'get /x', 'GET x', 'GET /x extra']) assert.throws(() => parseHttpRequest(bad, []), (e: unknown) => e instanceof ExplainArgumentError && /--http: expected "<METHOD> <path>"/.test(e.message), bad);
    assert.throws(() => parseHttpRequest('GET /', ['no-colon']), /--header: expected "<name>: <value>", got "no-colon"/);
  });
});
