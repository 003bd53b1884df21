/**
 * L7 AuthorizationPolicy evaluation at a waypoint (ambit.waypoint.L7Authorization), with Istio's semantics:
 * - a policy matches when any rule matches; a policy without rules matches nothing; a rule matches when
 *   its from, to and when all match, an empty list matching; from/to match when any entry matches;
 *   within an entry every field set must hold (a positive list needs one match, a `not_*` list none);
 * - DENY wins; then, if any ALLOW policy applies, one must match; AUDIT only marks; dry-run policies are
 *   evaluated and reported, never enforced;
 * - values a request does not have (no request principal, no Host on plain TCP): positive fields fail,
 *   negative fields hold;
 * - plain TCP through the waypoint (no HTTP): an ALLOW rule that needs HTTP attributes (hosts,
 *   methods, paths, request principals, request headers) matches nothing, a DENY rule is evaluated
 *   without them (it denies more), as Istio's network filters do.
 */
import { BlockList, isIP } from 'node:net';

import type { Cidr, Condition, L7Authorization, Operation, Rule, Source, StringMatch } from '../gen/ambit/waypoint/waypoint_pb.js';
import { Action } from '../gen/ambit/waypoint/waypoint_pb.js';

/** What a decision may look at: authenticated facts and the request as parsed. */
export interface RequestFacts {
  /** The client's principal without `spiffe://` (`cluster.local/ns/default/sa/sleep`), from its certificate. */
  sourcePrincipal?: string;
  sourceNamespace?: string;
  sourceIp: string;
  /** The original client address (X-Forwarded-For with trusted proxies); the source address otherwise. */
  remoteIp: string;
  destinationIp: string;
  destinationPort: number;
  /** Absent for plain TCP. */
  http?: {
    host: string;
    method: string;
    /** Without the query string. */
    path: string;
    /** Lower-case names; several values joined with `,`. */
    headers: Readonly<Record<string, string | undefined>>;
    /** A request principal from a validated JWT; ambit has no RequestAuthentication yet, so absent. */
    requestPrincipal?: string;
  };
}

export interface L7Decision {
  allowed: boolean;
  /** `<ns>/<name>` of the policy that decided a denial (or the ALLOW that let it through). */
  policy?: string;
  reason: string;
  /** AUDIT policies that matched. */
  audited: string[];
  /** What dry-run policies would have decided, when it differs from the decision. */
  dryRun?: { allowed: boolean; policy?: string };
}

type TextMatcher = (value: string | undefined) => boolean;

function textMatcher(match: StringMatch, ignoreCase = false): TextMatcher {
  const fold = (value: string) => (ignoreCase ? value.toLowerCase() : value);
  switch (match.match.case) {
    case 'exact': {
      const expected = fold(match.match.value);
      return (value) => value !== undefined && fold(value) === expected;
    }
    case 'prefix': {
      const prefix = fold(match.match.value);
      return (value) => value !== undefined && fold(value).startsWith(prefix);
    }
    case 'suffix': {
      const suffix = fold(match.match.value);
      return (value) => value !== undefined && fold(value).endsWith(suffix);
    }
    case 'presence':
      return (value) => value !== undefined && value !== '';
    default:
      return () => false;
  }
}

function cidrList(cidrs: readonly Cidr[]): BlockList | undefined {
  if (cidrs.length === 0) return undefined;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const bytes = cidr.address;
    if (bytes.length === 4) list.addSubnet([...bytes].join('.'), cidr.length, 'ipv4');
    else if (bytes.length === 16) {
      const groups: string[] = [];
      for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
      list.addSubnet(groups.join(':'), cidr.length, 'ipv6');
    }
  }
  return list;
}

function inList(list: BlockList, ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  return list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/** One field: a positive and a negative list over one value of the request. */
interface FieldCheck {
  /** Needs an HTTP attribute: dropped (ALLOW: never matches; DENY: ignored) on plain TCP. */
  http: boolean;
  holds(facts: RequestFacts): boolean;
}

function textField(value: (facts: RequestFacts) => string | undefined, positive: readonly StringMatch[], negative: readonly StringMatch[], http: boolean, ignoreCase = false): FieldCheck | undefined {
  if (positive.length === 0 && negative.length === 0) return undefined;
  const yes = positive.map((m) => textMatcher(m, ignoreCase));
  const no = negative.map((m) => textMatcher(m, ignoreCase));
  return {
    http,
    holds: (facts) => {
      const v = value(facts);
      return (yes.length === 0 || yes.some((m) => m(v))) && !no.some((m) => m(v));
    },
  };
}

function ipField(value: (facts: RequestFacts) => string, positive: readonly Cidr[], negative: readonly Cidr[]): FieldCheck | undefined {
  const yes = cidrList(positive);
  const no = cidrList(negative);
  if (!yes && !no) return undefined;
  return { http: false, holds: (facts) => (!yes || inList(yes, value(facts))) && !(no && inList(no, value(facts))) };
}

function portField(positive: readonly number[], negative: readonly number[]): FieldCheck | undefined {
  if (positive.length === 0 && negative.length === 0) return undefined;
  return { http: false, holds: (facts) => (positive.length === 0 || positive.includes(facts.destinationPort)) && !negative.includes(facts.destinationPort) };
}

/** A Host without its port, as Istio compares `hosts` (both forms are tried). */
function hostWithoutPort(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.lastIndexOf(':');
  return colon > 0 && host.indexOf(':') === colon ? host.slice(0, colon) : host;
}

function hostField(positive: readonly StringMatch[], negative: readonly StringMatch[]): FieldCheck | undefined {
  if (positive.length === 0 && negative.length === 0) return undefined;
  const yes = positive.map((m) => textMatcher(m, true));
  const no = negative.map((m) => textMatcher(m, true));
  const any = (matchers: TextMatcher[], host: string | undefined) => host !== undefined && matchers.some((m) => m(host) || m(hostWithoutPort(host)));
  return {
    http: true,
    holds: (facts) => {
      const host = facts.http?.host;
      return (yes.length === 0 || any(yes, host)) && !any(no, host);
    },
  };
}

function sourceChecks(source: Source): FieldCheck[] {
  return [
    textField((f) => f.sourcePrincipal, source.principals, source.notPrincipals, false),
    textField((f) => f.http?.requestPrincipal, source.requestPrincipals, source.notRequestPrincipals, true),
    textField((f) => f.sourceNamespace, source.namespaces, source.notNamespaces, false),
    ipField((f) => f.sourceIp, source.ipBlocks, source.notIpBlocks),
    ipField((f) => f.remoteIp, source.remoteIpBlocks, source.notRemoteIpBlocks),
  ].filter((check): check is FieldCheck => check !== undefined);
}

function operationChecks(operation: Operation): FieldCheck[] {
  return [
    hostField(operation.hosts, operation.notHosts),
    portField(operation.ports, operation.notPorts),
    textField((f) => f.http?.method, operation.methods, operation.notMethods, true),
    textField((f) => f.http?.path, operation.paths, operation.notPaths, true),
  ].filter((check): check is FieldCheck => check !== undefined);
}

/** Parses `a.b.c.d` or `a.b.c.d/n` (or IPv6) of a `when` value on an address key. */
function addressValues(matches: readonly StringMatch[]): BlockList {
  const list = new BlockList();
  for (const match of matches) {
    if (match.match.case !== 'exact') continue;
    const [ip, length] = match.match.value.split('/');
    const family = isIP(ip ?? '');
    if (family === 0) continue;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (length === undefined) list.addAddress(ip!, type);
    else list.addSubnet(ip!, Number(length), type);
  }
  return list;
}

const REQUEST_HEADER_KEY = /^request\.headers\[(.+)\]$/;

/** Reads the value of a `when` key from the request; undefined when the request has none. */
function conditionValue(key: string): { http: boolean; read: (facts: RequestFacts) => string | undefined } {
  const header = REQUEST_HEADER_KEY.exec(key);
  if (header) {
    const name = header[1]!.toLowerCase();
    return { http: true, read: (facts) => facts.http?.headers[name] };
  }
  switch (key) {
    case 'source.namespace':
      return { http: false, read: (facts) => facts.sourceNamespace };
    case 'source.principal':
      return { http: false, read: (facts) => facts.sourcePrincipal };
    case 'destination.port':
      return { http: false, read: (facts) => String(facts.destinationPort) };
    case 'request.auth.principal':
      return { http: true, read: (facts) => facts.http?.requestPrincipal };
    default:
      // request.auth.claims[..], request.auth.audiences/presenter, connection.sni, experimental.*: not
      // available at a waypoint (no JWT, no TLS inside the tunnel): absent.
      return { http: key.startsWith('request.'), read: () => undefined };
  }
}

function conditionCheck(condition: Condition): FieldCheck {
  const { key } = condition;
  if (key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip') {
    const read = (facts: RequestFacts) => (key === 'source.ip' ? facts.sourceIp : key === 'remote.ip' ? facts.remoteIp : facts.destinationIp);
    const yes = condition.values.length ? addressValues(condition.values) : undefined;
    const no = condition.notValues.length ? addressValues(condition.notValues) : undefined;
    return { http: false, holds: (facts) => (!yes || inList(yes, read(facts))) && !(no && inList(no, read(facts))) };
  }
  const value = conditionValue(key);
  return textField(value.read, condition.values, condition.notValues, value.http) ?? { http: value.http, holds: () => true };
}

interface CompiledRule {
  /** Each entry is the field checks of one source (ORed); empty = no `from`. */
  from: FieldCheck[][];
  to: FieldCheck[][];
  when: FieldCheck[];
}

function compileRule(rule: Rule): CompiledRule {
  return { from: rule.from.map(sourceChecks), to: rule.to.map(operationChecks), when: rule.when.map(conditionCheck) };
}

/** Whether the checks hold; on plain TCP, HTTP checks are `onTcp` (ALLOW: fail; DENY: ignored). */
function allHold(checks: readonly FieldCheck[], facts: RequestFacts, httpOnTcp: boolean): boolean {
  return checks.every((check) => (check.http && !facts.http ? httpOnTcp : check.holds(facts)));
}

function ruleMatches(rule: CompiledRule, facts: RequestFacts, httpOnTcp: boolean): boolean {
  const anyEntry = (entries: FieldCheck[][]) => entries.length === 0 || entries.some((checks) => allHold(checks, facts, httpOnTcp));
  return anyEntry(rule.from) && anyEntry(rule.to) && allHold(rule.when, facts, httpOnTcp);
}

/** A policy ready to evaluate, with where it applies. */
export interface CompiledL7Policy {
  key: string;
  action: Action;
  dryRun: boolean;
  allTraffic: boolean;
  services: ReadonlySet<string>;
  workloads: ReadonlySet<string>;
  matches(facts: RequestFacts): boolean;
}

export function compileL7Policy(policy: L7Authorization): CompiledL7Policy {
  const rules = policy.rules.map(compileRule);
  // On plain TCP an HTTP-only check fails an ALLOW rule and is skipped in a DENY rule.
  const httpOnTcp = policy.action === Action.DENY;
  return {
    key: `${policy.namespace}/${policy.name}`,
    action: policy.action,
    dryRun: policy.dryRun,
    allTraffic: policy.allTraffic,
    services: new Set(policy.services),
    workloads: new Set(policy.workloads),
    matches: (facts) => rules.some((rule) => ruleMatches(rule, facts, httpOnTcp)),
  };
}

/** Where a request goes, for choosing the policies that apply to it. */
export interface RequestTarget {
  /** `<ns>/<hostname>` of the service addressed, when a service was. */
  service?: string;
  /** uid of the workload picked. */
  workload?: string;
}

export function appliesTo(policy: CompiledL7Policy, target: RequestTarget): boolean {
  return policy.allTraffic || (target.service !== undefined && policy.services.has(target.service)) || (target.workload !== undefined && policy.workloads.has(target.workload));
}

function decide(policies: readonly CompiledL7Policy[], facts: RequestFacts): { allowed: boolean; policy?: string; reason: string } {
  const denying = policies.find((p) => p.action === Action.DENY && p.matches(facts));
  if (denying) return { allowed: false, policy: denying.key, reason: `denied by DENY policy ${denying.key}` };
  const allows = policies.filter((p) => p.action === Action.ALLOW);
  if (allows.length === 0) return { allowed: true, reason: 'no ALLOW policy applies' };
  const allowing = allows.find((p) => p.matches(facts));
  if (allowing) return { allowed: true, policy: allowing.key, reason: `allowed by ALLOW policy ${allowing.key}` };
  return { allowed: false, reason: `no ALLOW policy matched (${allows.map((p) => p.key).join(', ')})` };
}

/** Decides one request against the policies that apply to its target. */
export function authorizeRequest(policies: readonly CompiledL7Policy[], target: RequestTarget, facts: RequestFacts): L7Decision {
  const applicable = policies.filter((p) => appliesTo(p, target));
  if (applicable.length === 0) return { allowed: true, reason: 'no policy applies', audited: [] };
  const enforced = applicable.filter((p) => !p.dryRun);
  const decision = decide(enforced, facts);
  const audited = enforced.filter((p) => p.action === Action.AUDIT && p.matches(facts)).map((p) => p.key);
  const result: L7Decision = { ...decision, audited };
  if (enforced.length !== applicable.length) {
    const shadow = decide(applicable.filter((p) => p.action !== Action.AUDIT), facts);
    if (shadow.allowed !== decision.allowed) result.dryRun = { allowed: shadow.allowed, policy: shadow.policy };
  }
  return result;
}
