/**
 * L4 authorization as ztunnel evaluates it (`assert_rbac`), following Istio's AuthorizationPolicy order:
 * any matching DENY denies; otherwise, if any ALLOW applies, one must match; otherwise allow.
 * Dry-run policies are evaluated and reported in the decision's reason but never enforced.
 *
 * Which policies apply to a destination workload:
 * - GLOBAL scope in the system (root) namespace: every workload;
 * - NAMESPACE scope: workloads in the policy's namespace. A GLOBAL-scoped policy outside the root
 *   namespace (istiod never sends one; GLOBAL is the proto default, so a producer that forgot the
 *   scope would send it) is narrowed to its own namespace rather than applied mesh-wide;
 * - any policy named `<ns>/<name>` in the workload's `authorization_policies` (WORKLOAD_SELECTOR).
 */
import { Action, Scope, type Authorization } from '../../gen/istio/security/authorization_pb.js';
import type { Workload } from '../../gen/istio/workload/workload_pb.js';
import { parseSpiffeUri, type Identity } from '../../api/identity.js';
import { ipToBytes, normalizeIp } from '../../api/ip.js';
import type { AuthorizationDecision, ConnectionFacts } from './types.js';
import { compileRules, matchingRule, type CompiledRules, type MatchFacts } from './authorization-match.js';

interface Policy {
  /** Resource name, `<ns>/<name>`. */
  key: string;
  authorization: Authorization;
  rules: CompiledRules;
}

const SPIFFE_PREFIX = 'spiffe://';

function toBytes(ip: string): Uint8Array | undefined {
  try {
    return ipToBytes(normalizeIp(ip));
  } catch {
    return undefined;
  }
}

function parseIdentity(uri: string): Identity | undefined {
  try {
    return parseSpiffeUri(uri);
  } catch {
    return undefined;
  }
}

function matchFacts(facts: ConnectionFacts): MatchFacts {
  const uri = facts.sourceIdentity;
  return {
    identity: uri ? parseIdentity(uri) : undefined,
    principal: uri?.startsWith(SPIFFE_PREFIX) ? uri.slice(SPIFFE_PREFIX.length) : undefined,
    sourceIp: toBytes(facts.sourceIp),
    destinationIp: toBytes(facts.destinationIp),
    destinationPort: facts.destinationPort,
  };
}

function describe(policy: Policy, rule: number): string {
  return `${Action[policy.authorization.action]} policy ${policy.key} (rules[${rule}] matched)`;
}

export class AuthorizationStore {
  private readonly byKey = new Map<string, Policy>();
  /** Keys of policies applying to every workload. */
  private readonly global = new Set<string>();
  /** Namespace → keys of policies applying to every workload in it. */
  private readonly byNamespace = new Map<string, Set<string>>();
  /** Namespace → global plus namespace policies, built on first use, cleared on any policy change. */
  private readonly namespaceWide = new Map<string, Policy[]>();

  constructor(private readonly systemNamespace: string) {}

  get(key: string): Authorization | undefined {
    return this.byKey.get(key)?.authorization;
  }

  all(): Authorization[] {
    return [...this.byKey.values()].map((policy) => policy.authorization);
  }

  upsert(key: string, authorization: Authorization): void {
    this.remove(key);
    this.namespaceWide.clear();
    this.byKey.set(key, { key, authorization, rules: compileRules(authorization) });
    const reach = this.reachOf(authorization);
    if (reach === 'global') this.global.add(key);
    else if (reach === 'namespace') {
      let keys = this.byNamespace.get(authorization.namespace);
      if (!keys) this.byNamespace.set(authorization.namespace, (keys = new Set()));
      keys.add(key);
    }
  }

  remove(key: string): Authorization | undefined {
    const previous = this.byKey.get(key);
    if (!previous) return undefined;
    this.namespaceWide.clear();
    this.byKey.delete(key);
    this.global.delete(key);
    const keys = this.byNamespace.get(previous.authorization.namespace);
    keys?.delete(key);
    if (keys?.size === 0) this.byNamespace.delete(previous.authorization.namespace);
    return previous.authorization;
  }

  /** Policies applying to a destination workload, each once. */
  applicableTo(workload: Workload): Policy[] {
    const wide = this.namespaceWideFor(workload.namespace);
    if (workload.authorizationPolicies.length === 0) return wide;
    const policies = [...wide];
    const seen = new Set(wide.map((policy) => policy.key));
    for (const key of workload.authorizationPolicies) {
      // A referenced policy the control plane has not sent yet (or just removed) is skipped, as in ztunnel.
      const policy = this.byKey.get(key);
      if (policy && !seen.has(key)) {
        seen.add(key);
        policies.push(policy);
      }
    }
    return policies;
  }

  private namespaceWideFor(namespace: string): Policy[] {
    let policies = this.namespaceWide.get(namespace);
    if (!policies) {
      const keys = [...this.global, ...(this.byNamespace.get(namespace) ?? [])];
      policies = keys.flatMap((key) => this.byKey.get(key) ?? []);
      this.namespaceWide.set(namespace, policies);
    }
    return policies;
  }

  authorize(facts: ConnectionFacts): AuthorizationDecision {
    const policies = this.applicableTo(facts.destination);
    const destination = `${facts.destination.namespace}/${facts.destination.name || facts.destination.uid}`;
    if (policies.length === 0) return { allowed: true, reason: `allowed: no authorization policy applies to ${destination}` };

    const connection = matchFacts(facts);
    const dryRunNotes: string[] = [];
    const enforcedAllows: Policy[] = [];
    let dryRunAllows = 0;
    let dryRunAllowMatched = false;
    let denial: { policy: Policy; rule: number } | undefined;

    for (const policy of policies) {
      const isDeny = policy.authorization.action === Action.DENY;
      if (!policy.authorization.dryRun) {
        if (!isDeny) enforcedAllows.push(policy);
        else if (!denial) {
          const rule = matchingRule(policy.rules, connection);
          if (rule >= 0) denial = { policy, rule };
        }
        continue;
      }
      const rule = matchingRule(policy.rules, connection);
      if (!isDeny) dryRunAllows += 1;
      if (rule < 0) continue;
      if (isDeny) dryRunNotes.push(`dry-run: ${describe(policy, rule)} would deny`);
      else {
        dryRunAllowMatched = true;
        dryRunNotes.push(`dry-run: ${describe(policy, rule)} would allow`);
      }
    }
    if (enforcedAllows.length === 0 && dryRunAllows > 0 && !dryRunAllowMatched) {
      dryRunNotes.push('dry-run: no dry-run ALLOW policy matches, enforcing them would deny');
    }
    const withNotes = (reason: string) => [reason, ...dryRunNotes].join('; ');

    if (denial) {
      return { allowed: false, policy: denial.policy.key, reason: withNotes(`denied by ${describe(denial.policy, denial.rule)}`) };
    }
    if (enforcedAllows.length === 0) {
      return { allowed: true, reason: withNotes(`allowed: no enforced ALLOW policy applies to ${destination}`) };
    }
    for (const policy of enforcedAllows) {
      const rule = matchingRule(policy.rules, connection);
      if (rule >= 0) return { allowed: true, policy: policy.key, reason: withNotes(`allowed by ${describe(policy, rule)}`) };
    }
    const names = enforcedAllows.map((policy) => policy.key).join(', ');
    return { allowed: false, reason: withNotes(`denied: no ALLOW policy matched (${names}) for ${destination}`) };
  }

  private reachOf(authorization: Authorization): 'global' | 'namespace' | 'selected' {
    switch (authorization.scope) {
      case Scope.GLOBAL:
        return authorization.namespace === this.systemNamespace ? 'global' : 'namespace';
      case Scope.NAMESPACE:
        return 'namespace';
      default:
        return 'selected';
    }
  }
}
