// `ambit proxy-config routes`: a waypoint's routes from its config dump, one line per rule and destination; a dump that is not a waypoint's is an error naming the pod.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { routesTable, waypointRoutes } from '../src/install/proxy-config/routes.js';

const dump = JSON.stringify({
  waypoint: {
    name: 'reviews',
    routes: [
      {
        service: 'default/reviews.default.svc.cluster.local',
        routes: [
          { source: 'VirtualService/default/reviews#0', matches: [{ headers: [{ name: 'end-user', value: { exact: 'jason' } }], port: 9080 }], destinations: [{ hostname: 'reviews.default.svc.cluster.local', weight: 1, subset: 'v2', workloads: ['a'] }], timeoutMs: 500, retry: { attempts: 3, retryOn: ['5xx'] } },
          { source: 'VirtualService/default/reviews#1', destinations: [{ hostname: 'reviews.default.svc.cluster.local', weight: 90, subset: 'v1', workloads: ['b', 'c'] }, { hostname: 'reviews.default.svc.cluster.local', weight: 10, subset: 'v2', workloads: ['a'] }], fault: { abortStatus: 500, abortPercent: 5 } },
        ],
      },
    ],
  },
});

describe('proxy-config routes', () => {
  it('shows each rule: match, destinations with subset, pod count and share, and its policy', () => {
    const text = routesTable(waypointRoutes(dump, 'pod default/w'));
    const lines = text.split('\n');
    assert.match(lines[0]!, /^SERVICE +RULE +MATCH +DESTINATION +POLICY/);
    assert.match(text, /VirtualService\/default\/reviews#0 +end-user=jason port 9080 +reviews\.default\.svc\.cluster\.local subset v2 \(1 pods\) 100% +timeout 500ms, retries 3 on 5xx/);
    assert.match(text, /VirtualService\/default\/reviews#1 +\* +reviews\.default\.svc\.cluster\.local subset v1 \(2 pods\) 90% +abort 500 5%/);
    assert.match(text, /^ +reviews\.default\.svc\.cluster\.local subset v2 \(1 pods\) 10%/m);
  });

  it('a waypoint without routes says so; a pod that is no waypoint, or garbage, is an error naming the pod', () => {
    assert.equal(routesTable(waypointRoutes(JSON.stringify({ waypoint: { name: 'w' } }), 'pod default/w')), 'no mesh routes (requests go to the service they address)');
    assert.throws(() => waypointRoutes(JSON.stringify({ workloads: [] }), 'pod istio-system/ztunnel-x'), /pod istio-system\/ztunnel-x is not a waypoint/);
    assert.throws(() => waypointRoutes('<html>', 'pod default/w'), /pod default\/w: the admin endpoint did not return JSON/);
  });
});
