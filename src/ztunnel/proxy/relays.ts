// Which workloads relay connections for others (east-west gateways today, waypoints later): only they may name another source in `forwarded`.
import { identityOf, spiffeUri } from '../../api/identity.js';
import type { Workload } from '../../gen/istio/workload/workload_pb.js';
import type { ProxyState } from '../state/types.js';

/** Tells whether a workload (found at a TCP peer address) is a relay of the mesh. */
export type RelayCheck = (workload: Workload) => boolean;

/** How long the set of gateway identities is reused before it is read again from the state. */
const REFRESH_MS = 1000;

/**
 * East-west gateways as the control plane describes them: workloads with a `<cluster>/Gateway/…`
 * uid (the gateway's address and identity, see controlplane/multicluster/mesh-resources.ts). A pod
 * whose identity is one of theirs is a gateway pod. Needs a state that lists its workloads
 * (ZtunnelState does); without one nothing is a relay.
 */
export function networkGatewayRelays(state: ProxyState & { workloads?: () => Workload[] }, now: () => number = Date.now): RelayCheck {
  let identities = new Set<string>();
  let readAt = -Infinity;
  return (workload) => {
    if (!state.workloads) return false;
    if (now() - readAt > REFRESH_MS) {
      identities = new Set(state.workloads().filter((candidate) => candidate.uid.includes('/Gateway/')).map((gateway) => spiffeUri(identityOf(gateway))));
      readAt = now();
    }
    return identities.has(spiffeUri(identityOf(workload)));
  };
}
