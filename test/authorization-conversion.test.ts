// AuthorizationPolicy → istio.security.Authorization: HTTP attributes in DENY/ALLOW rules, and Istio's validation of empty parts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { convertAuthorizationPolicy, type PolicyConversion } from '../src/controlplane/registry/authorization.js';
import { Action } from '../src/gen/istio/security/authorization_pb.js';
import { compileRules, matchingRule, type MatchFacts } from '../src/ztunnel/state/authorization-match.js';

type Json = Record<string, unknown>;

function convert(spec: Json): PolicyConversion {
  return convertAuthorizationPolicy({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'app' }, spec }, 'istio-system');
}

function converted(spec: Json) {
  const result = convert(spec);
  assert.equal(result.outcome, 'converted', JSON.stringify(result));
  return result as Extract<PolicyConversion, { outcome: 'converted' }>;
}

/** A connection from `namespace`/`sa` to port `port`, as the destination ztunnel sees it. */
function from(namespace: string, port = 8080, sa = 'default'): MatchFacts {
  return {
    identity: { trustDomain: 'cluster.local', namespace, serviceAccount: sa },
    principal: `cluster.local/ns/${namespace}/sa/${sa}`,
    sourceIp: Uint8Array.of(10, 0, 0, 9),
    destinationIp: Uint8Array.of(10, 0, 0, 5),
    destinationPort: port,
  };
}

/** Whether ztunnel's matcher says the converted policy matches the connection. */
function matches(spec: Json, facts: MatchFacts): boolean {
  return matchingRule(compileRules(converted(spec).authorization), facts) >= 0;
}

function problemsOf(spec: Json): Array<[string, string]> {
  const result = convert(spec);
  assert.equal(result.outcome, 'invalid', `expected the policy to be refused: ${JSON.stringify(result)}`);
  return result.problems.map((p) => [p.field, p.message]);
}

describe('DENY rules with HTTP attributes are enforced without them (deny more)', () => {
  test('DENY from namespace evil + to methods POST denies every connection from evil, and only those', () => {
    const spec = { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['evil'] } }], to: [{ operation: { methods: ['POST'] } }] }] };
    assert.equal(matches(spec, from('evil')), true, 'a connection from evil must be denied at L4');
    assert.equal(matches(spec, from('evil', 22)), true, 'on any port');
    assert.equal(matches(spec, from('good')), false, 'other namespaces are untouched');
    assert.deepEqual(converted(spec).httpAttributes, ['methods']);
  });

  test('the L4 part of a mixed operation stays: DENY to ports 8080 + methods POST denies port 8080 only', () => {
    const spec = { action: 'DENY', rules: [{ to: [{ operation: { ports: ['8080'], methods: ['POST'] } }] }] };
    assert.equal(matches(spec, from('any', 8080)), true);
    assert.equal(matches(spec, from('any', 9090)), false);
  });

  test('a DENY rule with only HTTP attributes denies every connection in scope', () => {
    for (const rule of [
      { to: [{ operation: { paths: ['/admin'] } }] },
      { from: [{ source: { requestPrincipals: ['*'] } }] },
      { from: [{ source: { notRequestPrincipals: ['*'] } }] },
      { from: [{ source: { remoteIpBlocks: ['1.2.3.4'] } }] },
      { when: [{ key: 'request.headers[x-user]', values: ['me'] }] },
      { to: [{ operation: { hosts: ['example.com'] } }], when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] },
    ]) {
      const spec = { action: 'DENY', rules: [rule] };
      assert.equal(matches(spec, from('anyone')), true, `${JSON.stringify(rule)} must deny at L4`);
      assert.deepEqual(converted(spec).authorization.rules.map((r) => r.clauses.length), [0], 'a rule without clauses (matches everything)');
    }
  });

  test('an HTTP-only entry beside an L4 entry widens the clause: any source or operation', () => {
    const spec = { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['evil'] } }, { source: { requestPrincipals: ['x'] } }], to: [{ operation: { ports: ['22'] } }] }] };
    assert.equal(matches(spec, from('good', 22)), true, 'the second source matches anyone once its HTTP field is dropped');
    assert.equal(matches(spec, from('good', 80)), false, 'the port clause still applies');
  });

  test('HTTP when conditions are left out; L4 ones stay', () => {
    const spec = { action: 'DENY', rules: [{ when: [{ key: 'source.namespace', values: ['evil'] }, { key: 'request.auth.principal', values: ['x'] }] }] };
    assert.equal(matches(spec, from('evil')), true);
    assert.equal(matches(spec, from('good')), false);
  });

  test('ALLOW rules using HTTP attributes are dropped (allow less)', () => {
    const spec = { rules: [{ from: [{ source: { namespaces: ['good'] } }], to: [{ operation: { methods: ['GET'] } }] }, { from: [{ source: { namespaces: ['ok'] } }] }] };
    const result = converted(spec);
    assert.equal(result.authorization.action, Action.ALLOW);
    assert.equal(result.authorization.rules.length, 1);
    assert.equal(matches(spec, from('good')), false, 'the HTTP rule cannot allow at L4');
    assert.equal(matches(spec, from('ok')), true);
  });
});

describe("empty parts are refused as Istio's validation does, naming the field", () => {
  const cases: Array<[string, Json, string, RegExp]> = [
    ['empty source', { rules: [{ from: [{ source: {} }] }] }, 'spec.rules[0].from[0].source', /must not be empty/],
    ['missing source', { rules: [{ from: [{}] }] }, 'spec.rules[0].from[0].source', /must be set/],
    ['empty from', { rules: [{ from: [] }] }, 'spec.rules[0].from', /must not be empty/],
    ['empty operation', { action: 'DENY', rules: [{ to: [{ operation: {} }] }] }, 'spec.rules[0].to[0].operation', /must not be empty/],
    ['missing operation', { action: 'DENY', rules: [{ to: [{}] }] }, 'spec.rules[0].to[0].operation', /must be set/],
    ['empty to', { action: 'DENY', rules: [{ to: [] }] }, 'spec.rules[0].to', /must not be empty/],
    ['condition without values', { rules: [{ when: [{ key: 'source.ip' }] }] }, 'spec.rules[0].when[0]', /at least one of values or notValues/],
    ['condition with empty lists', { action: 'DENY', rules: [{ when: [{ key: 'source.namespace', values: [], notValues: [] }] }] }, 'spec.rules[0].when[0]', /at least one of values or notValues/],
    ['empty string value', { action: 'DENY', rules: [{ from: [{ source: { namespaces: [''] } }] }] }, 'spec.rules[0].from[0].source.namespaces[0]', /empty value not allowed/],
    ['empty method', { action: 'DENY', rules: [{ to: [{ operation: { methods: [''] } }] }] }, 'spec.rules[0].to[0].operation.methods[0]', /empty value not allowed/],
    ['empty condition value', { rules: [{ when: [{ key: 'source.principal', values: [''] }] }] }, 'spec.rules[0].when[0].values[0]', /empty value not allowed/],
    ['unknown condition key', { action: 'DENY', rules: [{ when: [{ key: 'source.pod', values: ['x'] }] }] }, 'spec.rules[0].when[0].key', /unknown attribute "source.pod"/],
    ['header key without name', { action: 'DENY', rules: [{ when: [{ key: 'request.headers', values: ['x'] }] }] }, 'spec.rules[0].when[0].key', /name\[entry\]/],
    ['destination.labels', { rules: [{ when: [{ key: 'destination.labels[app]', values: ['x'] }] }] }, 'spec.rules[0].when[0].key', /workload selector/],
    ['bad remoteIpBlocks', { action: 'DENY', rules: [{ from: [{ source: { remoteIpBlocks: ['nope'] } }] }] }, 'spec.rules[0].from[0].source.remoteIpBlocks[0]', /not an IP address/],
    ['serviceAccounts with namespaces', { rules: [{ from: [{ source: { serviceAccounts: ['a'], namespaces: ['b'] } }] }] }, 'spec.rules[0].from[0].source', /cannot set serviceAccounts/],
    ['wildcard service account', { rules: [{ from: [{ source: { serviceAccounts: ['ns/*'] } }] }] }, 'spec.rules[0].from[0].source.serviceAccounts[0]', /no wildcards/],
    ['DENY without rules', { action: 'DENY' }, 'spec.rules', /never matches/],
  ];
  for (const [name, spec, field, message] of cases) {
    test(name, () => {
      const problems = problemsOf(spec);
      assert.ok(
        problems.some(([f, m]) => f === field && message.test(m)),
        `want ${field} ~ ${message}, got ${JSON.stringify(problems)}`,
      );
    });
  }

  test('the rule {} stays valid: it matches everything', () => {
    assert.equal(matches({ action: 'DENY', rules: [{}] }, from('anyone')), true);
    assert.equal(matches({ rules: [{}] }, from('anyone')), true);
  });
});
