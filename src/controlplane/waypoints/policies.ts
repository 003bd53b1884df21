// AuthorizationPolicies that name a waypoint (targetRefs kind Gateway) or a service it serves (kind Service), translated into ambit.waypoint.L7Authorization with Istio's semantics.
import { create } from '@bufbuild/protobuf';
import { isIP } from 'node:net';

import { ipToBytes } from '../../api/ip.js';
import { GATEWAY_API_GROUP } from '../../api/names.js';
import { serviceHostname } from '../../api/resources.js';
import {
  Action,
  CidrSchema,
  ConditionSchema,
  L7AuthorizationSchema,
  OperationSchema,
  RuleSchema,
  SourceSchema,
  StringMatchSchema,
  type Cidr,
  type L7Authorization,
  type StringMatch,
} from '../../gen/ambit/waypoint/waypoint_pb.js';
import type { WaypointGateway } from './objects.js';

export class InvalidPolicyError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
  }
}

/** What the waypoint controller keeps of an AuthorizationPolicy that targets something by reference. */
export interface TargetedPolicy {
  namespace: string;
  name: string;
  targets: Array<{ kind: 'Gateway' | 'Service'; name: string }>;
  /** The translation, without placement. */
  policy: L7Authorization;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Istio's string forms: `*` presence, `abc*` prefix, `*abc` suffix, else exact. */
export function stringMatch(value: string): StringMatch {
  if (value === '*') return create(StringMatchSchema, { match: { case: 'presence', value: true } });
  if (value.endsWith('*')) return create(StringMatchSchema, { match: { case: 'prefix', value: value.slice(0, -1) } });
  if (value.startsWith('*')) return create(StringMatchSchema, { match: { case: 'suffix', value: value.slice(1) } });
  return create(StringMatchSchema, { match: { case: 'exact', value } });
}

function strings(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw new InvalidPolicyError(field, `expected a list of strings, got ${JSON.stringify(value)}`);
  return value as string[];
}

const matches = (value: unknown, field: string) => strings(value, field).map(stringMatch);

function cidrs(value: unknown, field: string): Cidr[] {
  return strings(value, field).map((text, i) => {
    const [ip, length] = text.split('/');
    const family = isIP(ip ?? '');
    const bits = family === 4 ? 32 : 128;
    const prefix = length === undefined ? bits : Number(length);
    if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > bits) throw new InvalidPolicyError(`${field}[${i}]`, `${JSON.stringify(text)} is not an IP address or CIDR`);
    return create(CidrSchema, { address: ipToBytes(ip!), length: prefix });
  });
}

function ports(value: unknown, field: string): number[] {
  return strings(value, field).map((text, i) => {
    const port = Number(text);
    if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw new InvalidPolicyError(`${field}[${i}]`, `${JSON.stringify(text)} is not a port`);
    return port;
  });
}

const ACTIONS: Record<string, Action> = { ALLOW: Action.ALLOW, DENY: Action.DENY, AUDIT: Action.AUDIT };

/** Whether a policy attaches by reference (targetRefs or targetRef) rather than by selector or namespace. */
export function isTargeted(object: { spec?: unknown }): boolean {
  const spec = isRecord(object.spec) ? object.spec : {};
  const refs: unknown[] = Array.isArray(spec.targetRefs) ? spec.targetRefs : isRecord(spec.targetRef) ? [spec.targetRef] : [];
  return refs.length > 0;
}

/** Translates a policy with targetRefs (or targetRef); undefined when it targets nothing by reference. Throws InvalidPolicyError naming the field. */
export function readTargetedPolicy(object: { metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> }; spec?: unknown }): TargetedPolicy | undefined {
  const spec = isRecord(object.spec) ? object.spec : {};
  const refs = Array.isArray(spec.targetRefs) ? (spec.targetRefs as unknown[]) : isRecord(spec.targetRef) ? [spec.targetRef] : [];
  if (refs.length === 0) return undefined;
  const targets = refs.map((ref, i) => {
    const field = `spec.targetRefs[${i}]`;
    if (!isRecord(ref) || typeof ref.name !== 'string' || !ref.name) throw new InvalidPolicyError(field, 'expected {kind, name}');
    const group = typeof ref.group === 'string' ? ref.group : '';
    if (ref.kind === 'Gateway' && (group === GATEWAY_API_GROUP || group === '')) return { kind: 'Gateway' as const, name: ref.name };
    if (ref.kind === 'Service' && group === '') return { kind: 'Service' as const, name: ref.name };
    throw new InvalidPolicyError(`${field}.kind`, `${JSON.stringify(ref.kind)} (group ${JSON.stringify(group)}) is not Gateway or Service`);
  });
  const policy = readL7Authorization(object);
  return { namespace: policy.namespace, name: policy.name, targets, policy };
}

/** Translates the action and rules of any policy (its placement left empty). Throws InvalidPolicyError naming the field. */
export function readL7Authorization(object: { metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> }; spec?: unknown }): L7Authorization {
  const spec = isRecord(object.spec) ? object.spec : {};
  const actionName = spec.action === undefined ? 'ALLOW' : spec.action;
  const action = typeof actionName === 'string' ? ACTIONS[actionName] : undefined;
  if (action === undefined) throw new InvalidPolicyError('spec.action', `${JSON.stringify(actionName)} is not served by waypoints (ALLOW, DENY, AUDIT)`);
  const rawRules = spec.rules === undefined ? [] : spec.rules;
  if (!Array.isArray(rawRules)) throw new InvalidPolicyError('spec.rules', 'expected a list');
  const rules = rawRules.map((rule: unknown, r) => {
    const at = `spec.rules[${r}]`;
    const body = isRecord(rule) ? rule : {};
    const from = (Array.isArray(body.from) ? body.from : []).map((entry: unknown, i) => {
      const source = isRecord(entry) && isRecord(entry.source) ? entry.source : {};
      const f = `${at}.from[${i}].source`;
      return create(SourceSchema, {
        principals: matches(source.principals, `${f}.principals`),
        notPrincipals: matches(source.notPrincipals, `${f}.notPrincipals`),
        requestPrincipals: matches(source.requestPrincipals, `${f}.requestPrincipals`),
        notRequestPrincipals: matches(source.notRequestPrincipals, `${f}.notRequestPrincipals`),
        namespaces: matches(source.namespaces, `${f}.namespaces`),
        notNamespaces: matches(source.notNamespaces, `${f}.notNamespaces`),
        ipBlocks: cidrs(source.ipBlocks, `${f}.ipBlocks`),
        notIpBlocks: cidrs(source.notIpBlocks, `${f}.notIpBlocks`),
        remoteIpBlocks: cidrs(source.remoteIpBlocks, `${f}.remoteIpBlocks`),
        notRemoteIpBlocks: cidrs(source.notRemoteIpBlocks, `${f}.notRemoteIpBlocks`),
      });
    });
    const to = (Array.isArray(body.to) ? body.to : []).map((entry: unknown, i) => {
      const operation = isRecord(entry) && isRecord(entry.operation) ? entry.operation : {};
      const f = `${at}.to[${i}].operation`;
      return create(OperationSchema, {
        hosts: matches(operation.hosts, `${f}.hosts`),
        notHosts: matches(operation.notHosts, `${f}.notHosts`),
        ports: ports(operation.ports, `${f}.ports`),
        notPorts: ports(operation.notPorts, `${f}.notPorts`),
        methods: matches(operation.methods, `${f}.methods`),
        notMethods: matches(operation.notMethods, `${f}.notMethods`),
        paths: matches(operation.paths, `${f}.paths`),
        notPaths: matches(operation.notPaths, `${f}.notPaths`),
      });
    });
    const when = (Array.isArray(body.when) ? body.when : []).map((entry: unknown, i) => {
      const f = `${at}.when[${i}]`;
      if (!isRecord(entry) || typeof entry.key !== 'string' || !entry.key) throw new InvalidPolicyError(`${f}.key`, 'expected a key such as request.headers[x-token]');
      return create(ConditionSchema, { key: entry.key, values: matches(entry.values, `${f}.values`), notValues: matches(entry.notValues, `${f}.notValues`) });
    });
    return create(RuleSchema, { from, to, when });
  });
  const namespace = object.metadata?.namespace ?? 'default';
  const name = object.metadata?.name ?? '';
  return create(L7AuthorizationSchema, { name, namespace, action, rules, dryRun: object.metadata?.annotations?.['istio.io/dry-run'] === 'true' });
}

/** The policies of one waypoint, each placed: all its traffic (it is targeted), or the services it serves that are targeted. */
export function placePolicies(gateway: WaypointGateway, policies: Iterable<TargetedPolicy>, servedServices: readonly string[], domainSuffix: string): L7Authorization[] {
  const placed: L7Authorization[] = [];
  for (const targeted of policies) {
    if (targeted.namespace !== gateway.namespace && targeted.targets.some((t) => t.kind === 'Gateway')) continue;
    const allTraffic = targeted.namespace === gateway.namespace && targeted.targets.some((t) => t.kind === 'Gateway' && t.name === gateway.name);
    const services = targeted.targets
      .filter((t) => t.kind === 'Service')
      .map((t) => `${targeted.namespace}/${serviceHostname(t.name, targeted.namespace, domainSuffix)}`)
      .filter((name) => servedServices.includes(name));
    if (!allTraffic && services.length === 0) continue;
    placed.push(create(L7AuthorizationSchema, { ...targeted.policy, allTraffic, services }));
  }
  return placed.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}

/**
 * The selector policies of the workloads a waypoint serves (seed 004's flow), each placed on the
 * workloads (uids) it selects; `used` names every policy some served workload has, translated or not.
 */
export function placeSelectorPolicies(
  workloads: readonly string[],
  policiesOf: (uid: string) => readonly string[] | undefined,
  translations: Pick<ReadonlyMap<string, L7Authorization>, 'get'>,
): { placed: L7Authorization[]; used: string[] } {
  const selected = new Map<string, string[]>();
  for (const uid of workloads) {
    for (const name of policiesOf(uid) ?? []) {
      const uids = selected.get(name) ?? [];
      uids.push(uid);
      selected.set(name, uids);
    }
  }
  const placed: L7Authorization[] = [];
  for (const [name, uids] of selected) {
    const policy = translations.get(name);
    if (policy) placed.push(create(L7AuthorizationSchema, { ...policy, allTraffic: false, services: [], workloads: [...uids].sort() }));
  }
  return { placed, used: [...selected.keys()] };
}
