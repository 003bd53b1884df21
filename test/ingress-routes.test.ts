// The ingress route table: virtual host choice, matches in order, weighted picks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { ListenerSchema } from '../src/gen/ambit/route/route_pb.js';
import { findRoute, pickDestination, requestHost, stringMatches } from '../src/ingress/routes.js';

const listener = create(ListenerSchema, {
  port: 8080,
  virtualHosts: [
    { domains: ['*'], routes: [{ source: 'any#0', matches: [{ path: { match: { case: 'exact', value: '/productpage' } } }] }, { source: 'any#1', matches: [{ path: { match: { case: 'pathPrefix', value: '/api' } }, method: { match: { case: 'exact', value: 'GET' } } }] }] },
    { domains: ['*.example.com'], routes: [{ source: 'wild#0', matches: [{ headers: [{ name: 'x-user', value: { match: { case: 'regex', value: 'j.*' } } }] }] }, { source: 'wild#1' }] },
    { domains: ['shop.example.com'], routes: [{ source: 'shop#0', matches: [{ queryParams: [{ name: 'v', value: { match: { case: 'exact', value: '2' } } }] }] }] },
  ],
});
const route = (host: string, url: string, method = 'GET', headers: Record<string, string> = {}) => findRoute(listener, { host, url, method, headers })?.source;

describe('ingress routes', () => {
  it('picks the most specific host, then the first matching route', () => {
    assert.equal(route('istio-ingressgateway.istio-system', '/productpage'), 'any#0');
    assert.equal(route('x', '/productpage?u=1'), 'any#0', 'the query is not part of the path');
    assert.equal(route('x', '/productpage/more'), undefined, 'exact');
    assert.equal(route('x', '/api/v1'), 'any#1');
    assert.equal(route('x', '/apiary'), undefined, 'PathPrefix ends at a segment');
    assert.equal(route('x', '/api', 'DELETE'), undefined);
    assert.equal(route('a.example.com:80', '/', 'GET', { 'x-user': 'jason' }), 'wild#0');
    assert.equal(route('A.EXAMPLE.COM', '/'), 'wild#1');
    assert.equal(route('shop.example.com', '/?v=2'), 'shop#0');
    assert.equal(route('shop.example.com', '/?v=3'), undefined, 'the exact host wins over the wildcard, even without a match');
  });

  it('matches strings and hosts as specified', () => {
    assert.ok(stringMatches({ match: { case: 'regex', value: '/v[0-9]' } } as never, '/v1'));
    assert.ok(!stringMatches({ match: { case: 'regex', value: '/v[0-9]' } } as never, '/v1/x'), 'whole value');
    assert.ok(!stringMatches({ match: { case: 'regex', value: '(' } } as never, '('), 'a bad pattern matches nothing');
    assert.equal(requestHost('[::1]:8080'), '[::1]');
    assert.equal(requestHost('Host.Example:80'), 'host.example');
  });

  it('picks destinations by weight', () => {
    const destinations = [{ hostname: 'a', port: 1, weight: 90 }, { hostname: 'b', port: 1, weight: 10 }] as never[];
    assert.equal(pickDestination(destinations, () => 0.89)?.hostname, 'a');
    assert.equal(pickDestination(destinations, () => 0.91)?.hostname, 'b');
    assert.equal(pickDestination([{ hostname: 'z', weight: 0 }] as never[], () => 0.5)?.hostname, 'z');
    assert.equal(pickDestination([]), undefined);
  });
});
