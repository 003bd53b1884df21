// The WaypointAccepted condition of AuthorizationPolicies with targetRefs: bound to which waypoint, or why not (Istio's status shape).
import { serviceHostname } from '../../api/resources.js';
import type { WaypointGateway } from './objects.js';
import type { TargetedPolicy } from './policies.js';

export const WAYPOINT_ACCEPTED = 'WaypointAccepted';

export interface PolicyCondition {
  type: typeof WAYPOINT_ACCEPTED;
  status: 'True' | 'False';
  reason: 'Accepted' | 'TargetNotFound' | 'Invalid';
  message: string;
}

/**
 * Where a policy with targetRefs is enforced: the waypoints it names (kind Gateway, same namespace)
 * and the waypoints serving the Services it names. `served` maps `<ns>/<gateway>` to the services
 * (`<ns>/<hostname>`) that waypoint serves. An invalid latest version says so, even when an older
 * valid one stays in force.
 */
export function waypointAcceptance(
  policy: TargetedPolicy | undefined,
  invalid: string | undefined,
  gateways: Iterable<WaypointGateway>,
  served: ReadonlyMap<string, readonly string[]>,
  domainSuffix: string,
): PolicyCondition {
  if (invalid) {
    const kept = policy ? '; the previous version stays in force' : '';
    return { type: WAYPOINT_ACCEPTED, status: 'False', reason: 'Invalid', message: `${invalid}${kept}` };
  }
  const bound = new Set<string>();
  const valid = [...gateways].filter((g) => g.problems.length === 0);
  for (const target of policy?.targets ?? []) {
    if (target.kind === 'Gateway') {
      const gateway = valid.find((g) => g.namespace === policy!.namespace && g.name === target.name);
      if (gateway) bound.add(`${gateway.namespace}/${gateway.name}`);
    } else {
      const service = `${policy!.namespace}/${serviceHostname(target.name, policy!.namespace, domainSuffix)}`;
      for (const [waypoint, services] of served) if (services.includes(service)) bound.add(waypoint);
    }
  }
  if (bound.size) return { type: WAYPOINT_ACCEPTED, status: 'True', reason: 'Accepted', message: `bound to ${[...bound].sort().join(', ')}` };
  const named = (policy?.targets ?? []).map((t) => `${t.kind} ${t.name}`).join(', ');
  return { type: WAYPOINT_ACCEPTED, status: 'False', reason: 'TargetNotFound', message: `no waypoint serves the targets (${named}): nothing enforces this policy` };
}
