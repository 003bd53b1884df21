// The waypoint's endpoint pick under DestinationRule policies: round robin, least request, consistent hash, and outlier detection (ejection, its limits and its end).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';

import { DestinationPolicySchema, LoadBalancer_Simple, type DestinationPolicy } from '../src/gen/ambit/waypoint/waypoint_pb.js';
import { EndpointPicker, hashKey } from '../src/waypoint/endpoint-picker.js';

const endpoints = ['a', 'b', 'c', 'd'].map((uid) => ({ uid, capacity: 1 }));
const request = (headers: Record<string, string> = {}, target = '/', sourceIp = '10.0.0.9') => ({ headers, target, sourceIp });
const policy = (init: Parameters<typeof create<typeof DestinationPolicySchema>>[1]): DestinationPolicy => create(DestinationPolicySchema, { hostname: 'svc', ...init });

describe('endpoint picker', () => {
  it('round robin visits every endpoint in turn, per destination', () => {
    const picker = new EndpointPicker();
    const rr = policy({ loadBalancer: { simple: LoadBalancer_Simple.ROUND_ROBIN } });
    assert.deepEqual(Array.from({ length: 8 }, () => picker.pick('svc', endpoints, rr, request())!.uid), ['a', 'b', 'c', 'd', 'a', 'b', 'c', 'd']);
    assert.equal(picker.pick('other', endpoints, rr, request())!.uid, 'a', 'another destination has its own position');
  });

  it('least request prefers the endpoint with fewer requests in flight', () => {
    const picker = new EndpointPicker();
    const lr = policy({ loadBalancer: { simple: LoadBalancer_Simple.LEAST_REQUEST } });
    const two = endpoints.slice(0, 2);
    const busy = Array.from({ length: 5 }, () => picker.begin('a'));
    const picks = Array.from({ length: 200 }, () => picker.pick('svc', two, lr, request())!.uid);
    // Two random choices: b unless both choices were a (a quarter of the time).
    const a = picks.filter((p) => p === 'a').length;
    assert.ok(a < 90, `a (5 in flight) picked ${a} of 200`);
    for (const end of busy) end();
  });

  it('consistent hash: the same header value, cookie, source IP or query parameter → the same endpoint; different values spread', () => {
    const picker = new EndpointPicker();
    for (const [lb, make] of [
      [{ hashHeader: 'x-user' }, (v: string) => request({ 'x-user': v })],
      [{ hashCookie: 'user' }, (v: string) => request({ cookie: `a=1; user=${v}` })],
      [{ hashSourceIp: true }, (v: string) => request({}, '/', `10.1.0.${v.length}`)],
      [{ hashQueryParameter: 'u' }, (v: string) => request({}, `/x?u=${v}`)],
    ] as const) {
      const p = policy({ loadBalancer: lb });
      const first = picker.pick('svc', endpoints, p, make('alice'))!.uid;
      for (let i = 0; i < 10; i++) assert.equal(picker.pick('svc', endpoints, p, make('alice'))!.uid, first, JSON.stringify(lb));
    }
    const p = policy({ loadBalancer: { hashHeader: 'x-user' } });
    const spread = new Set(Array.from({ length: 40 }, (_, i) => picker.pick('svc', endpoints, p, request({ 'x-user': `user-${i}` }))!.uid));
    assert.equal(spread.size, 4, 'forty users land on all four endpoints');
    // Without the header: an ordinary pick.
    assert.equal(hashKey(p.loadBalancer, request()), undefined);
    // Removing an endpoint moves only the users that were on it.
    const before = new Map(Array.from({ length: 40 }, (_, i) => [i, picker.pick('svc', endpoints, p, request({ 'x-user': `user-${i}` }))!.uid]));
    const three = endpoints.filter((e) => e.uid !== 'd');
    for (const [i, uid] of before) if (uid !== 'd') assert.equal(picker.pick('svc', three, p, request({ 'x-user': `user-${i}` }))!.uid, uid);
  });

  it('outlier detection: consecutive 5xx eject an endpoint for base × ejections; it is skipped meanwhile; a success resets the count', () => {
    let now = 1_000_000;
    const picker = new EndpointPicker(() => now);
    const p = policy({ loadBalancer: { simple: LoadBalancer_Simple.ROUND_ROBIN }, outlierDetection: { consecutive5xxErrors: 3, baseEjectionTimeMs: 10_000, maxEjectionPercent: 50 } });
    const uids = endpoints.map((e) => e.uid);
    const report = (uid: string, status: number) => picker.report('svc', uid, status, p.outlierDetection, uids.length, uids);
    assert.equal(report('a', 500), undefined);
    assert.equal(report('a', 200), undefined, 'a success resets the count');
    assert.equal(report('a', 503), undefined);
    assert.equal(report('a', 500), undefined);
    assert.deepEqual(report('a', 0), { hostname: 'svc', uid: 'a', forMs: 10_000 }, 'a connection failure counts as a 5xx');
    assert.ok(picker.isEjected('a'));
    assert.ok(Array.from({ length: 12 }, () => picker.pick('svc', endpoints, p, request())!.uid).every((uid) => uid !== 'a'));
    now += 10_001;
    assert.equal(picker.isEjected('a'), false, 'back after the ejection time');
    for (let i = 0; i < 3; i++) report('a', 500);
    assert.ok(picker.isEjected('a'));
    now += 10_001;
    assert.ok(picker.isEjected('a'), 'the second ejection lasts twice as long');
    now += 10_000;
    assert.equal(picker.isEjected('a'), false);
  });

  it('outlier detection limits: max ejection percent (at least one), 0 turns it off, gateway errors, and every endpoint ejected means none is skipped', () => {
    const picker = new EndpointPicker(() => 0);
    const tenPercent = policy({ outlierDetection: { consecutive5xxErrors: 1, baseEjectionTimeMs: 60_000, maxEjectionPercent: 10 } });
    const uids = endpoints.map((e) => e.uid);
    assert.ok(picker.report('svc', 'a', 500, tenPercent.outlierDetection, 4, uids), 'one of four may go, though 10% of 4 is 0.4');
    assert.equal(picker.report('svc', 'b', 500, tenPercent.outlierDetection, 4, uids), undefined, 'a second would be over 10%');
    const off = policy({ outlierDetection: { consecutive5xxErrors: 1, baseEjectionTimeMs: 60_000, maxEjectionPercent: 0 } });
    assert.equal(new EndpointPicker(() => 0).report('svc', 'a', 500, off.outlierDetection, 4, uids), undefined);
    const gateway = policy({ outlierDetection: { consecutive5xxErrors: 0, consecutiveGatewayErrors: 2, baseEjectionTimeMs: 1000, maxEjectionPercent: 100 } });
    const g = new EndpointPicker(() => 0);
    assert.equal(g.report('svc', 'a', 500, gateway.outlierDetection, 4, uids), undefined);
    assert.equal(g.report('svc', 'a', 500, gateway.outlierDetection, 4, uids), undefined, '500 is no gateway error');
    assert.equal(g.report('svc', 'a', 502, gateway.outlierDetection, 4, uids), undefined);
    assert.ok(g.report('svc', 'a', 504, gateway.outlierDetection, 4, uids));
    const all = new EndpointPicker(() => 0);
    const everyone = policy({ outlierDetection: { consecutive5xxErrors: 1, baseEjectionTimeMs: 60_000, maxEjectionPercent: 100 } });
    for (const uid of uids) all.report('svc', uid, 500, everyone.outlierDetection, 4, uids);
    assert.ok(uids.every((uid) => all.isEjected(uid)));
    assert.ok(all.pick('svc', endpoints, everyone, request()), 'with every endpoint ejected the pick still answers');
  });
});
