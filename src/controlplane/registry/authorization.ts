import { isIP } from 'node:net';

import { create } from '@bufbuild/protobuf';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import { z } from 'zod';

import { ipToBytes } from '../../api/ip.js';
import { authorizationResourceName } from '../../api/resources.js';
import {
  Action,
  AddressSchema,
  AuthorizationSchema,
  ClauseSchema,
  MatchSchema,
  RuleSchema,
  Scope,
  ServiceAccountMatchSchema,
  StringMatchSchema,
  type Address,
  type Authorization,
  type Clause,
  type Match,
  type Rule,
  type ServiceAccountMatch,
  type StringMatch,
} from '../../gen/istio/security/authorization_pb.js';
import { issuesToProblems, objectRef, type Labels, type ObjectRef } from './kube-objects.js';
import type { FieldProblem } from './problems.js';

/**
 * Istio AuthorizationPolicy (security.istio.io/v1 and v1beta1) → the L4 `istio.security.Authorization`
 * ztunnel enforces, following istiod's ambient translation (`convertAuthorizationPolicy`): rules OR,
 * a rule's clauses AND, a clause's matches OR. HTTP attributes cannot be seen at L4: an ALLOW rule
 * using them never matches (dropped), a DENY rule is enforced without them (denies more).
 */

export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';

const strings = z.array(z.string()).nullish();
const ports = z.array(z.union([z.string(), z.number()])).nullish();

// Strict objects: a misspelt field must not silently widen a rule.
const sourceSchema = z.strictObject({
  principals: strings,
  notPrincipals: strings,
  requestPrincipals: strings,
  notRequestPrincipals: strings,
  namespaces: strings,
  notNamespaces: strings,
  ipBlocks: strings,
  notIpBlocks: strings,
  remoteIpBlocks: strings,
  notRemoteIpBlocks: strings,
  serviceAccounts: strings,
  notServiceAccounts: strings,
});

const operationSchema = z.strictObject({
  hosts: strings,
  notHosts: strings,
  ports,
  notPorts: ports,
  methods: strings,
  notMethods: strings,
  paths: strings,
  notPaths: strings,
});

const conditionSchema = z.strictObject({
  key: z.string().min(1),
  values: z.array(z.union([z.string(), z.number()])).nullish(),
  notValues: z.array(z.union([z.string(), z.number()])).nullish(),
});

const ruleSchema = z.strictObject({
  from: z.array(z.strictObject({ source: sourceSchema.nullish() })).nullish(),
  to: z.array(z.strictObject({ operation: operationSchema.nullish() })).nullish(),
  when: z.array(conditionSchema).nullish(),
});

const policySchema = z.object({
  metadata: z.object({
    name: z.string().min(1),
    namespace: z.string().min(1),
    annotations: z.record(z.string(), z.string()).nullish(),
  }),
  spec: z
    .strictObject({
      selector: z.strictObject({ matchLabels: z.record(z.string(), z.string()).nullish() }).nullish(),
      targetRef: z.unknown().optional(),
      targetRefs: z.array(z.unknown()).nullish(),
      action: z.string().nullish(),
      provider: z.unknown().optional(),
      rules: z.array(ruleSchema).nullish(),
    })
    .nullish(),
});

type SourceSpec = z.output<typeof sourceSchema>;
type OperationSpec = z.output<typeof operationSchema>;
type ConditionSpec = z.output<typeof conditionSchema>;
type RuleSpec = z.output<typeof ruleSchema>;

export type PolicyConversion =
  /** Rejected as an admission webhook would: the last valid version stays in force. */
  | { outcome: 'invalid'; ref: ObjectRef | undefined; problems: FieldProblem[] }
  /** Valid, but nothing for ztunnel to enforce (waypoint policy, unsupported action). */
  | { outcome: 'ignored'; ref: ObjectRef; problems: FieldProblem[] }
  | {
      outcome: 'converted';
      ref: ObjectRef;
      authorization: Authorization;
      /** Set for WORKLOAD_SELECTOR policies. */
      selector: Labels | undefined;
      /** HTTP attributes found (and dropped), for a warning. */
      httpAttributes: string[];
    };

export function convertAuthorizationPolicy(object: unknown, rootNamespace: string): PolicyConversion {
  const parsed = policySchema.safeParse(object);
  if (!parsed.success) return { outcome: 'invalid', ref: objectRef(object), problems: issuesToProblems(parsed.error) };
  const { metadata } = parsed.data;
  const spec = parsed.data.spec ?? {};
  const ref = { namespace: metadata.namespace, name: metadata.name };

  if (spec.targetRef !== undefined && spec.targetRef !== null) {
    return ignored(ref, 'spec.targetRef', 'policies attached with targetRef are enforced by waypoints, not by ztunnel; not supported yet');
  }
  if (spec.targetRefs?.length) {
    return ignored(ref, 'spec.targetRefs', 'policies attached with targetRefs are enforced by waypoints, not by ztunnel; not supported yet');
  }

  const actionName = spec.action ?? 'ALLOW';
  let action: Action;
  if (actionName === 'ALLOW') action = Action.ALLOW;
  else if (actionName === 'DENY') action = Action.DENY;
  else if (actionName === 'AUDIT' || actionName === 'CUSTOM') {
    return ignored(ref, 'spec.action', `ztunnel does not support the ${actionName} action; policy not enforced`);
  } else {
    return { outcome: 'invalid', ref, problems: [{ field: 'spec.action', message: `unknown action ${JSON.stringify(actionName)} (want ALLOW or DENY)` }] };
  }

  const ruleSpecs = spec.rules ?? [];
  // Refused by Istio's validation: a DENY policy without rules would never match (`rules: [{}]` denies everything).
  if (action === Action.DENY && ruleSpecs.length === 0) {
    return { outcome: 'invalid', ref, problems: [{ field: 'spec.rules', message: 'a DENY policy without rules never matches; add an empty rule {} to deny every connection' }] };
  }

  const translator = new RuleTranslator(action, metadata.namespace);
  const rules = ruleSpecs.flatMap((rule, i) => translator.rule(rule, `spec.rules[${i}]`) ?? []);
  if (translator.problems.length > 0) return { outcome: 'invalid', ref, problems: translator.problems };

  const matchLabels = spec.selector?.matchLabels ?? {};
  const hasSelector = Object.keys(matchLabels).length > 0;
  const scope = hasSelector ? Scope.WORKLOAD_SELECTOR : metadata.namespace === rootNamespace ? Scope.GLOBAL : Scope.NAMESPACE;
  const dryRun = (metadata.annotations?.[DRY_RUN_ANNOTATION] ?? '').toLowerCase() === 'true';
  return {
    outcome: 'converted',
    ref,
    authorization: create(AuthorizationSchema, { name: metadata.name, namespace: metadata.namespace, scope, action, rules, dryRun }),
    selector: hasSelector ? matchLabels : undefined,
    httpAttributes: [...translator.httpAttributes].sort(),
  };
}

export function authorizationName(ref: ObjectRef): string {
  return authorizationResourceName(ref.namespace ?? '', ref.name);
}

function ignored(ref: ObjectRef, field: string, message: string): PolicyConversion {
  return { outcome: 'ignored', ref, problems: [{ field, message }] };
}

/** `when` keys ztunnel can evaluate (istiod's ambient list); any other known key is an HTTP attribute. */
const L4_CONDITION_KEYS = new Set(['source.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port']);
/** Exact `when` keys Istio's validation accepts besides the L4 ones. */
const HTTP_CONDITION_KEYS = new Set(['remote.ip', 'source.serviceAccount', 'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter', 'connection.sni']);
/** `when` key prefixes taking a `[name]` suffix, e.g. `request.headers[x-user]`. */
const MAP_CONDITION_KEYS = ['request.headers', 'request.experimental.inline.headers', 'request.auth.claims'];
/** Keys Istio's validation refuses with a reason. */
const REFUSED_CONDITION_KEYS: Record<string, string> = {
  'destination.namespace': 'replaced by the policy namespace (metadata.namespace)',
  'destination.name': 'only supported in security.istio.io/v1alpha1',
  'destination.user': 'only supported in security.istio.io/v1alpha1',
};

const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;
const HTTP_OPERATION_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;
const SOURCE_FIELDS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
  'ipBlocks',
  'notIpBlocks',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
  'serviceAccounts',
  'notServiceAccounts',
] as const;
// The remote IP is the original client from X-Forwarded-For, which only an HTTP proxy sees (as istiod).
const HTTP_SOURCE_FIELDS = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const;
/** Istio's validation bounds service account lists (16 entries, 320 characters each). */
const MAX_SERVICE_ACCOUNTS = 16;
const MAX_SERVICE_ACCOUNT_LENGTH = 320;

/**
 * One rule → the clauses ztunnel evaluates (rules OR, clauses AND, a clause's matches OR). ztunnel skips a
 * Match with every field empty, so a clause whose only matches are empty never matches, and a clause
 * with no matches, or a rule with no clauses, always matches (src/rbac.rs). HTTP attributes are
 * therefore never left as empty Matches:
 * - ALLOW: a rule using any HTTP attribute is dropped (it cannot match at L4; more restrictive).
 * - DENY: the HTTP attributes are removed and the rest kept, so the rule denies more. A `to`/`from`
 *   entry with only HTTP fields then matches any operation/source, which makes its whole clause match
 *   everything, so the clause is left out; an HTTP `when` condition is left out too. A DENY rule with
 *   only HTTP attributes thus denies every connection in the policy's scope, as Istio's validation
 *   warns for sidecars ("will deny all traffic to TCP ports under its scope"). istiod's ambient
 *   translation emits `Match{}` instead, which ztunnel skips, so such a DENY denies nothing there
 *   (istio/istio#61126); we keep the documented meaning, which fails closed.
 */
class RuleTranslator {
  readonly problems: FieldProblem[] = [];
  readonly httpAttributes = new Set<string>();

  constructor(
    private readonly action: Action,
    private readonly policyNamespace: string,
  ) {}

  /** The rule, or undefined when it can never match at L4 (HTTP attributes in an ALLOW rule). */
  rule(rule: RuleSpec, path: string): Rule | undefined {
    let usesHttp = false;
    const clauses: Clause[] = [];
    // Clause order as istiod: to, from, when (the order does not change the meaning).
    if (rule.to) {
      if (rule.to.length === 0) this.problem(`${path}.to`, 'must not be empty (leave it out to match any operation)');
      const matches: Match[] = [];
      let matchesAnything = false;
      for (const [j, to] of rule.to.entries()) {
        const at = `${path}.to[${j}].operation`;
        if (!to.operation) {
          this.problem(at, 'must be set');
          continue;
        }
        const operation = to.operation;
        this.checkNotEmpty(operation, OPERATION_FIELDS, at);
        for (const field of OPERATION_FIELDS) this.checkValues(operation[field], `${at}.${field}`);
        usesHttp = this.noteHttp(HTTP_OPERATION_FIELDS.filter((field) => operation[field]?.length)) || usesHttp;
        const match = this.operationMatch(operation, at);
        if (isEmptyMatch(match)) matchesAnything = true;
        else matches.push(match);
      }
      if (!matchesAnything) clauses.push(create(ClauseSchema, { matches }));
    }
    if (rule.from) {
      if (rule.from.length === 0) this.problem(`${path}.from`, 'must not be empty (leave it out to match any source)');
      const matches: Match[] = [];
      let matchesAnything = false;
      for (const [j, from] of rule.from.entries()) {
        const at = `${path}.from[${j}].source`;
        if (!from.source) {
          this.problem(at, 'must be set');
          continue;
        }
        const source = from.source;
        this.checkNotEmpty(source, SOURCE_FIELDS, at);
        for (const field of SOURCE_FIELDS) this.checkValues(source[field], `${at}.${field}`);
        if ((source.serviceAccounts?.length || source.notServiceAccounts?.length) && (source.principals?.length || source.notPrincipals?.length || source.namespaces?.length || source.notNamespaces?.length)) {
          this.problem(at, 'cannot set serviceAccounts or notServiceAccounts together with namespaces or principals');
        }
        for (const field of ['remoteIpBlocks', 'notRemoteIpBlocks'] as const) this.addresses(source[field], `${at}.${field}`);
        usesHttp = this.noteHttp(HTTP_SOURCE_FIELDS.filter((field) => source[field]?.length)) || usesHttp;
        const match = this.sourceMatch(source, at);
        if (isEmptyMatch(match)) matchesAnything = true;
        else matches.push(match);
      }
      if (!matchesAnything) clauses.push(create(ClauseSchema, { matches }));
    }
    for (const [j, condition] of (rule.when ?? []).entries()) {
      const at = `${path}.when[${j}]`;
      const http = this.checkCondition(condition, at);
      if (http) {
        usesHttp = this.noteHttp([condition.key]) || usesHttp;
        continue; // Left out: in a DENY rule it would match any connection; an ALLOW rule using it is dropped.
      }
      clauses.push(create(ClauseSchema, { matches: [this.conditionMatch(condition, at)] }));
    }
    if (usesHttp && this.action === Action.ALLOW) return undefined;
    return create(RuleSchema, { clauses });
  }

  private problem(field: string, message: string): void {
    this.problems.push({ field, message });
  }

  private checkNotEmpty<T extends Record<string, unknown>>(object: T, fields: readonly (keyof T & string)[], path: string): void {
    if (fields.some((field) => (object[field] as unknown[] | null | undefined)?.length)) return;
    this.problem(path, `must not be empty: set at least one of ${fields.join(', ')}`);
  }

  private checkValues(values: ReadonlyArray<string | number> | null | undefined, path: string): void {
    for (const [i, value] of (values ?? []).entries()) if (value === '') this.problem(`${path}[${i}]`, 'empty value not allowed');
  }

  /** Validates a condition as Istio does; true when its key is an HTTP attribute. */
  private checkCondition(condition: ConditionSpec, path: string): boolean {
    const { key } = condition;
    if (!condition.values?.length && !condition.notValues?.length) this.problem(path, `at least one of values or notValues must be set for key ${key}`);
    this.checkValues(condition.values, `${path}.values`);
    this.checkValues(condition.notValues, `${path}.notValues`);
    if (L4_CONDITION_KEYS.has(key)) return false;
    const mapKey = MAP_CONDITION_KEYS.find((prefix) => key.startsWith(prefix));
    if (mapKey !== undefined || key.startsWith('experimental.envoy.filters.')) {
      if (!/^[^[\]]+\[[^[\]]+\]$/.test(key)) this.problem(`${path}.key`, `${JSON.stringify(key)} should have the form name[entry]`);
      return true;
    }
    if (key === 'remote.ip') {
      this.addresses(condition.values?.map(String), `${path}.values`);
      this.addresses(condition.notValues?.map(String), `${path}.notValues`);
    }
    if (HTTP_CONDITION_KEYS.has(key)) return true;
    if (key.startsWith('destination.labels')) this.problem(`${path}.key`, `${key} is replaced by the workload selector (spec.selector)`);
    else if (REFUSED_CONDITION_KEYS[key]) this.problem(`${path}.key`, `${key} is ${REFUSED_CONDITION_KEYS[key]}`);
    else this.problem(`${path}.key`, `unknown attribute ${JSON.stringify(key)}`);
    return true;
  }

  private noteHttp(attributes: readonly string[]): boolean {
    for (const attribute of attributes) this.httpAttributes.add(attribute);
    return attributes.length > 0;
  }

  private operationMatch(operation: OperationSpec, path: string): Match {
    return create(MatchSchema, {
      destinationPorts: this.ports(operation.ports, `${path}.ports`),
      notDestinationPorts: this.ports(operation.notPorts, `${path}.notPorts`),
    });
  }

  private sourceMatch(source: SourceSpec, path: string): Match {
    return create(MatchSchema, {
      principals: stringMatches(source.principals),
      notPrincipals: stringMatches(source.notPrincipals),
      namespaces: stringMatches(source.namespaces),
      notNamespaces: stringMatches(source.notNamespaces),
      sourceIps: this.addresses(source.ipBlocks, `${path}.ipBlocks`),
      notSourceIps: this.addresses(source.notIpBlocks, `${path}.notIpBlocks`),
      serviceAccounts: this.serviceAccounts(source.serviceAccounts, `${path}.serviceAccounts`),
      notServiceAccounts: this.serviceAccounts(source.notServiceAccounts, `${path}.notServiceAccounts`),
    });
  }

  /** One match carrying an L4 condition's values (positive fields) and notValues (negated fields). */
  private conditionMatch(condition: ConditionSpec, path: string): Match {
    const values = (condition.values ?? []).map(String);
    const notValues = (condition.notValues ?? []).map(String);
    switch (condition.key) {
      case 'source.ip':
        return create(MatchSchema, {
          sourceIps: this.addresses(values, `${path}.values`),
          notSourceIps: this.addresses(notValues, `${path}.notValues`),
        });
      case 'destination.ip':
        return create(MatchSchema, {
          destinationIps: this.addresses(values, `${path}.values`),
          notDestinationIps: this.addresses(notValues, `${path}.notValues`),
        });
      case 'destination.port':
        return create(MatchSchema, {
          destinationPorts: this.ports(values, `${path}.values`),
          notDestinationPorts: this.ports(notValues, `${path}.notValues`),
        });
      case 'source.namespace':
        return create(MatchSchema, { namespaces: stringMatches(values), notNamespaces: stringMatches(notValues) });
      default: // source.principal
        return create(MatchSchema, { principals: stringMatches(values), notPrincipals: stringMatches(notValues) });
    }
  }

  private ports(values: ReadonlyArray<string | number> | null | undefined, path: string): number[] {
    const out: number[] = [];
    for (const [i, value] of (values ?? []).entries()) {
      const text = String(value);
      const port = /^\d+$/.test(text) ? Number(text) : NaN;
      if (Number.isInteger(port) && port >= 1 && port <= 65535) out.push(port);
      else if (value !== '') this.problem(`${path}[${i}]`, `${JSON.stringify(value)} is not a port number (1-65535)`);
    }
    return out;
  }

  private addresses(values: readonly string[] | null | undefined, path: string): Address[] {
    const out: Address[] = [];
    for (const [i, value] of (values ?? []).entries()) {
      const block = parseIpBlock(value);
      if (block) out.push(block);
      else if (value !== '') this.problem(`${path}[${i}]`, `${JSON.stringify(value)} is not an IP address or CIDR block`);
    }
    return out;
  }

  /** `ns/sa`, or a bare `sa` in the policy's own namespace. */
  private serviceAccounts(values: readonly string[] | null | undefined, path: string): ServiceAccountMatch[] {
    const out: ServiceAccountMatch[] = [];
    if ((values?.length ?? 0) > MAX_SERVICE_ACCOUNTS) this.problem(path, `may not have more than ${MAX_SERVICE_ACCOUNTS} values`);
    for (const [i, value] of (values ?? []).entries()) {
      if (value === '') continue; // reported by checkValues
      const parts = value.split('/');
      const [namespace, serviceAccount] = parts.length === 1 ? [this.policyNamespace, parts[0]!] : [parts[0]!, parts[1] ?? ''];
      if (parts.length > 2 || !namespace || !serviceAccount || value.includes('*') || value.length > MAX_SERVICE_ACCOUNT_LENGTH) {
        this.problem(`${path}[${i}]`, `${JSON.stringify(value)} is not a service account (want <sa> or <namespace>/<sa>, no wildcards, at most ${MAX_SERVICE_ACCOUNT_LENGTH} characters)`);
        continue;
      }
      out.push(create(ServiceAccountMatchSchema, { namespace, serviceAccount }));
    }
    return out;
  }
}

function isEmptyMatch(match: Match): boolean {
  return (
    !match.namespaces.length &&
    !match.notNamespaces.length &&
    !match.principals.length &&
    !match.notPrincipals.length &&
    !match.sourceIps.length &&
    !match.notSourceIps.length &&
    !match.destinationIps.length &&
    !match.notDestinationIps.length &&
    !match.destinationPorts.length &&
    !match.notDestinationPorts.length &&
    !match.serviceAccounts.length &&
    !match.notServiceAccounts.length
  );
}

/** Istio's string patterns: `*` any value present, `x*` prefix, `*x` suffix, otherwise exact. */
export function stringMatch(pattern: string): StringMatch {
  if (pattern === '*') return create(StringMatchSchema, { matchType: { case: 'presence', value: create(EmptySchema) } });
  if (pattern.startsWith('*')) return create(StringMatchSchema, { matchType: { case: 'suffix', value: pattern.slice(1) } });
  if (pattern.endsWith('*')) return create(StringMatchSchema, { matchType: { case: 'prefix', value: pattern.slice(0, -1) } });
  return create(StringMatchSchema, { matchType: { case: 'exact', value: pattern } });
}

function stringMatches(patterns: readonly string[] | null | undefined): StringMatch[] {
  return (patterns ?? []).map(stringMatch);
}

/** `10.0.0.0/8`, `2001:db8::/32`, or a plain address (a /32 or /128). */
export function parseIpBlock(text: string): Address | undefined {
  const slash = text.indexOf('/');
  const ip = slash < 0 ? text : text.slice(0, slash);
  const family = isIP(ip);
  if (family === 0) return undefined;
  const bits = family === 4 ? 32 : 128;
  let length = bits;
  if (slash >= 0) {
    const prefix = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > bits) return undefined;
    length = Number(prefix);
  }
  return create(AddressSchema, { address: ipToBytes(ip), length });
}
