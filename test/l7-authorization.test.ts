/** The waypoint's L7 authorization engine, its CONNECT target decision and protocol detection, fed objects directly. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { create, type MessageInitShape } from '@bufbuild/protobuf';

import { ipToBytes } from '../src/api/ip.js';
import {
  Action,
  CidrSchema,
  ConditionSchema,
  L7AuthorizationSchema,
  OperationSchema,
  RuleSchema,
  SourceSchema,
  StringMatchSchema,
  type Rule,
} from '../src/gen/ambit/waypoint/waypoint_pb.js';
import { authorizeRequest, compileL7Policy, type RequestFacts } from '../src/l7/authorization.js';
import { detectProtocol } from '../src/waypoint/target.js';

const exact = (value: string) => create(StringMatchSchema, { match: { case: 'exact', value } });
const prefix = (value: string) => create(StringMatchSchema, { match: { case: 'prefix', value } });
const suffix = (value: string) => create(StringMatchSchema, { match: { case: 'suffix', value } });
const presence = () => create(StringMatchSchema, { match: { case: 'presence', value: true } });

function policy(name: string, action: Action, rules: Rule[], extra: Omit<MessageInitShape<typeof L7AuthorizationSchema>, '$typeName'> = {}): ReturnType<typeof compileL7Policy> {
  return compileL7Policy(create(L7AuthorizationSchema, { name, namespace: 'default', action, rules, allTraffic: true, ...extra }));
}

function request(overrides: Partial<RequestFacts> = {}, http: Partial<NonNullable<RequestFacts['http']>> | null = {}): RequestFacts {
  return {
    sourcePrincipal: 'cluster.local/ns/default/sa/sleep',
    sourceNamespace: 'default',
    sourceIp: '10.20.0.31',
    remoteIp: '10.20.0.31',
    destinationIp: '10.96.0.10',
    destinationPort: 9080,
    http: http === null ? undefined : { host: 'productpage:9080', method: 'GET', path: '/productpage', headers: {}, ...http },
    ...overrides,
  };
}

const target = { service: 'default/productpage.default.svc.cluster.local' };
const rule = (r: Omit<MessageInitShape<typeof RuleSchema>, '$typeName'>) => create(RuleSchema, r);

describe('L7 authorization', () => {
  test('no policy allows; an ALLOW policy that applies must match; DENY wins over ALLOW', () => {
    assert.equal(authorizeRequest([], target, request()).allowed, true);
    const allowGet = policy('allow-get', Action.ALLOW, [rule({ to: [create(OperationSchema, { methods: [exact('GET')] })] })]);
    assert.equal(authorizeRequest([allowGet], target, request()).allowed, true);
    const denied = authorizeRequest([allowGet], target, request({}, { method: 'DELETE' }));
    assert.equal(denied.allowed, false);
    assert.match(denied.reason, /no ALLOW policy matched \(default\/allow-get\)/);
    const denyAll = policy('deny-sleep', Action.DENY, [rule({ from: [create(SourceSchema, { principals: [suffix('/sa/sleep')] })] })]);
    assert.deepEqual(authorizeRequest([allowGet, denyAll], target, request()).policy, 'default/deny-sleep');
  });

  test('a policy without rules matches nothing; a rule without fields matches everything', () => {
    assert.equal(authorizeRequest([policy('empty-allow', Action.ALLOW, [])], target, request()).allowed, false);
    assert.equal(authorizeRequest([policy('empty-deny', Action.DENY, [])], target, request()).allowed, true);
    assert.equal(authorizeRequest([policy('deny-everything', Action.DENY, [rule({})])], target, request()).allowed, false);
  });

  test('applies only where it is placed: all traffic, a service, or picked workloads', () => {
    const onService = policy('svc', Action.DENY, [rule({})], { allTraffic: false, services: ['default/reviews.default.svc.cluster.local'] });
    assert.equal(authorizeRequest([onService], target, request()).allowed, true);
    assert.equal(authorizeRequest([onService], { service: 'default/reviews.default.svc.cluster.local' }, request()).allowed, false);
    const onWorkload = policy('wl', Action.DENY, [rule({})], { allTraffic: false, workloads: ['c//Pod/default/pp-1'] });
    assert.equal(authorizeRequest([onWorkload], { ...target, workload: 'c//Pod/default/pp-2' }, request()).allowed, true);
    assert.equal(authorizeRequest([onWorkload], { ...target, workload: 'c//Pod/default/pp-1' }, request()).allowed, false);
  });

  test('string forms, hosts without case and with or without port, paths without the query', () => {
    const allow = policy('a', Action.ALLOW, [
      rule({ to: [create(OperationSchema, { hosts: [exact('PRODUCTPAGE')], paths: [prefix('/api/')], notPaths: [exact('/api/admin')] })] }),
    ]);
    assert.equal(authorizeRequest([allow], target, request({}, { path: '/api/v1' })).allowed, true);
    assert.equal(authorizeRequest([allow], target, request({}, { path: '/api/admin' })).allowed, false, 'notPaths');
    assert.equal(authorizeRequest([allow], target, request({}, { host: 'other', path: '/api/v1' })).allowed, false, 'hosts');
    const hostsWithPort = policy('p', Action.ALLOW, [rule({ to: [create(OperationSchema, { hosts: [exact('productpage:9080')] })] })]);
    assert.equal(authorizeRequest([hostsWithPort], target, request()).allowed, true);
  });

  test('absent values: positive fields fail, negative fields hold (request principals, plaintext-like sources)', () => {
    const needsJwt = policy('jwt', Action.ALLOW, [rule({ from: [create(SourceSchema, { requestPrincipals: [presence()] })] })]);
    assert.equal(authorizeRequest([needsJwt], target, request()).allowed, false);
    const denyWithoutJwt = policy('nojwt', Action.DENY, [rule({ from: [create(SourceSchema, { notRequestPrincipals: [presence()] })] })]);
    assert.equal(authorizeRequest([denyWithoutJwt], target, request()).allowed, false);
    const noPrincipal = request({ sourcePrincipal: undefined, sourceNamespace: undefined });
    const denyUnauthenticated = policy('no-mtls', Action.DENY, [rule({ from: [create(SourceSchema, { notPrincipals: [presence()] })] })]);
    assert.equal(authorizeRequest([denyUnauthenticated], target, noPrincipal).allowed, false);
    assert.equal(authorizeRequest([denyUnauthenticated], target, request()).allowed, true);
  });

  test('source ipBlocks, destination ports, when conditions on headers and addresses', () => {
    const cidr = (ip: string, length: number) => create(CidrSchema, { address: ipToBytes(ip), length });
    const allow = policy('a', Action.ALLOW, [
      rule({
        from: [create(SourceSchema, { ipBlocks: [cidr('10.20.0.0', 24)], notIpBlocks: [cidr('10.20.0.66', 32)] })],
        to: [create(OperationSchema, { ports: [9080] })],
        when: [create(ConditionSchema, { key: 'request.headers[X-Token]', values: [exact('secret')] }), create(ConditionSchema, { key: 'source.ip', notValues: [exact('10.20.0.99/32')] })],
      }),
    ]);
    const ok = request({}, { headers: { 'x-token': 'secret' } });
    assert.equal(authorizeRequest([allow], target, ok).allowed, true);
    assert.equal(authorizeRequest([allow], target, request({}, { headers: { 'x-token': 'guess' } })).allowed, false, 'header value');
    assert.equal(authorizeRequest([allow], target, { ...ok, sourceIp: '10.20.0.66' }).allowed, false, 'notIpBlocks');
    assert.equal(authorizeRequest([allow], target, { ...ok, sourceIp: '10.21.0.1' }).allowed, false, 'ipBlocks');
    assert.equal(authorizeRequest([allow], target, { ...ok, destinationPort: 80 }).allowed, false, 'ports');
  });

  test('plain TCP: ALLOW rules needing HTTP match nothing, DENY rules are applied without their HTTP fields', () => {
    const tcp = request({}, null);
    const allowGet = policy('allow-get', Action.ALLOW, [rule({ to: [create(OperationSchema, { methods: [exact('GET')] })] })]);
    assert.equal(authorizeRequest([allowGet], target, tcp).allowed, false);
    const denyDelete = policy('deny-delete', Action.DENY, [rule({ from: [create(SourceSchema, { principals: [suffix('/sa/sleep')] })], to: [create(OperationSchema, { methods: [exact('DELETE')] })] })]);
    assert.equal(authorizeRequest([denyDelete], target, tcp).allowed, false, 'denies more on TCP');
    assert.equal(authorizeRequest([denyDelete], target, request()).allowed, true, 'a GET is not a DELETE');
  });

  test('AUDIT marks without deciding; dry-run policies are reported, never enforced', () => {
    const audit = policy('audit', Action.AUDIT, [rule({})]);
    const decision = authorizeRequest([audit], target, request());
    assert.deepEqual([decision.allowed, decision.audited], [true, ['default/audit']]);
    const dryDeny = policy('dry', Action.DENY, [rule({})], { dryRun: true });
    const dry = authorizeRequest([dryDeny], target, request());
    assert.equal(dry.allowed, true);
    assert.deepEqual(dry.dryRun, { allowed: false, policy: 'default/dry' });
  });
});

describe('waypoint protocol detection', () => {
  test('HTTP/2 preface, HTTP/1 request lines, anything else is TCP', () => {
    assert.equal(detectProtocol(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'http2');
    assert.equal(detectProtocol(Buffer.from('PRI * HT')), 'need-more');
    assert.equal(detectProtocol(Buffer.from('GET / HTTP/1.1\r\n')), 'http1');
    assert.equal(detectProtocol(Buffer.from('DELETE /x HTTP/1.1\r\n')), 'http1');
    assert.equal(detectProtocol(Buffer.from('GE')), 'need-more');
    assert.equal(detectProtocol(Buffer.from([0x16, 0x03, 0x01, 0x00])), 'tcp');
    assert.equal(detectProtocol(Buffer.from('SSH-2.0-OpenSSH\r\n')), 'tcp');
  });
});
