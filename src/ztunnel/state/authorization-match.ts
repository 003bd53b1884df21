/**
 * Matching of one L4 authorization policy against a connection, with ztunnel's semantics (src/rbac.rs):
 * - rules are ORed; a policy with no rules matches nothing; a rule with no clauses matches everything;
 * - clauses are ANDed; a clause with no matches matches; matches within a clause are ORed;
 * - a Match with every field empty matches nothing (ztunnel skips it);
 * - within a Match every non-empty field must hold: a positive list needs one entry to match, a
 *   negative (`not_*`) list needs none to match.
 * Identity fields when the source has no identity (plaintext) or a non-SPIFFE one: positive lists
 * (principals, namespaces, service_accounts) fail, negative lists succeed, since nothing is there to
 * exclude. This is ztunnel's behaviour, except that ztunnel compares namespaces against "" (so an
 * `exact: ""` or `prefix: ""` would match a plaintext client); here a missing namespace matches no entry.
 * Principals are compared without the `spiffe://` prefix (`cluster.local/ns/default/sa/curl`), as Istio.
 */
import type { Authorization, Match, StringMatch } from '../../gen/istio/security/authorization_pb.js';
import type { Identity } from '../../api/identity.js';

interface Cidr {
  bytes: Uint8Array;
  prefixLength: number;
}

type TextMatch =
  | { kind: 'exact' | 'prefix' | 'suffix'; value: string }
  | { kind: 'presence' }
  /** An unset StringMatch (validation refuses them; kept harmless here). */
  | { kind: 'never' };

interface CompiledMatch {
  /** Every field empty: ztunnel treats such a Match as matching nothing. */
  empty: boolean;
  namespaces: TextMatch[];
  notNamespaces: TextMatch[];
  principals: TextMatch[];
  notPrincipals: TextMatch[];
  sourceIps: Cidr[];
  notSourceIps: Cidr[];
  destinationIps: Cidr[];
  notDestinationIps: Cidr[];
  destinationPorts: number[];
  notDestinationPorts: number[];
  serviceAccounts: Array<{ namespace: string; serviceAccount: string }>;
  notServiceAccounts: Array<{ namespace: string; serviceAccount: string }>;
}

/** rules → clauses → matches, with the IPs and strings already parsed. */
export type CompiledRules = CompiledMatch[][][];

/** What matching needs to know about a connection, prepared once per connection. */
export interface MatchFacts {
  /** Parsed source identity, when it is a SPIFFE workload identity. */
  identity?: Identity;
  /** Source identity without `spiffe://`, when it had that prefix. */
  principal?: string;
  sourceIp?: Uint8Array;
  destinationIp?: Uint8Array;
  destinationPort: number;
}

function compileText(match: StringMatch): TextMatch {
  const { matchType } = match;
  if (matchType.case === undefined) return { kind: 'never' };
  if (matchType.case === 'presence') return { kind: 'presence' };
  return { kind: matchType.case, value: matchType.value };
}

function compileMatch(match: Match): CompiledMatch {
  const cidrs = (list: Array<{ address: Uint8Array; length: number }>) => list.map((cidr) => ({ bytes: cidr.address, prefixLength: cidr.length }));
  const compiled = {
    namespaces: match.namespaces.map(compileText),
    notNamespaces: match.notNamespaces.map(compileText),
    principals: match.principals.map(compileText),
    notPrincipals: match.notPrincipals.map(compileText),
    sourceIps: cidrs(match.sourceIps),
    notSourceIps: cidrs(match.notSourceIps),
    destinationIps: cidrs(match.destinationIps),
    notDestinationIps: cidrs(match.notDestinationIps),
    destinationPorts: [...match.destinationPorts],
    notDestinationPorts: [...match.notDestinationPorts],
    serviceAccounts: match.serviceAccounts.map(({ namespace, serviceAccount }) => ({ namespace, serviceAccount })),
    notServiceAccounts: match.notServiceAccounts.map(({ namespace, serviceAccount }) => ({ namespace, serviceAccount })),
  };
  const empty = Object.values(compiled).every((list) => list.length === 0);
  return { empty, ...compiled };
}

export function compileRules(authorization: Authorization): CompiledRules {
  return authorization.rules.map((rule) => rule.clauses.map((clause) => clause.matches.map(compileMatch)));
}

function textMatches(match: TextMatch, value: string | undefined): boolean {
  if (value === undefined) return false;
  switch (match.kind) {
    case 'exact':
      return value === match.value;
    case 'prefix':
      return value.startsWith(match.value);
    case 'suffix':
      return value.endsWith(match.value);
    case 'presence':
      return value !== '';
    case 'never':
      return false;
  }
}

function cidrContains(cidr: Cidr, ip: Uint8Array | undefined): boolean {
  if (!ip || ip.length !== cidr.bytes.length) return false;
  const fullBytes = Math.floor(cidr.prefixLength / 8);
  for (let i = 0; i < fullBytes; i++) if (ip[i] !== cidr.bytes[i]) return false;
  const remainingBits = cidr.prefixLength % 8;
  if (remainingBits === 0) return true;
  const mask = (0xff << (8 - remainingBits)) & 0xff;
  return ((ip[fullBytes]! ^ cidr.bytes[fullBytes]!) & mask) === 0;
}

/** A positive list must have a hit (when present), a negative list must have none (when present). */
function holds<T>(positive: T[], negative: T[], test: (entry: T) => boolean): boolean {
  if (positive.length > 0 && !positive.some(test)) return false;
  if (negative.length > 0 && negative.some(test)) return false;
  return true;
}

function matchHolds(match: CompiledMatch, facts: MatchFacts): boolean {
  if (match.empty) return false;
  return (
    holds(match.destinationPorts, match.notDestinationPorts, (port) => port === facts.destinationPort) &&
    holds(match.destinationIps, match.notDestinationIps, (cidr) => cidrContains(cidr, facts.destinationIp)) &&
    holds(match.sourceIps, match.notSourceIps, (cidr) => cidrContains(cidr, facts.sourceIp)) &&
    holds(match.serviceAccounts, match.notServiceAccounts, (account) =>
      facts.identity !== undefined && facts.identity.namespace === account.namespace && facts.identity.serviceAccount === account.serviceAccount,
    ) &&
    holds(match.principals, match.notPrincipals, (text) => textMatches(text, facts.principal)) &&
    holds(match.namespaces, match.notNamespaces, (text) => textMatches(text, facts.identity?.namespace))
  );
}

/** Index of the first rule of a policy that matches the connection, or -1. */
export function matchingRule(rules: CompiledRules, facts: MatchFacts): number {
  return rules.findIndex((clauses) => clauses.every((matches) => matches.length === 0 || matches.some((match) => matchHolds(match, facts))));
}
