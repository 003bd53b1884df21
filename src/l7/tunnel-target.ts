// From an endpoint a proxy picked (waypoint, ingress) to a tunnel there: HBONE to the pod's node or to its waypoint, double HBONE through an east-west gateway, or plain TCP.
import { identityOf, spiffeUri } from '../api/identity.js';
import type { Workload } from '../gen/istio/workload/workload_pb.js';
import {
  baggageFor,
  dialTcp,
  formatAuthority,
  newTraceparent,
  X_FORWARDED_NETWORK,
  type DialTarget,
  type HbonePool,
  type InnerHbonePool,
} from '../hbone/index.js';
import type { TunnelTarget } from './upstream.js';
import type { Logger } from '../util/log.js';
import type { Resolution } from '../ztunnel/state/types.js';

export interface UpstreamDialer {
  /** The proxy's own identity: it speaks for itself upstream, as Istio's waypoints and gateways do. */
  identity: string;
  /** The proxy's own workload (its baggage). */
  self: () => Workload;
  clusterId: string;
  network: string;
  pool: HbonePool;
  inner: InnerHbonePool;
  dialAddress: (ip: string, port: number) => DialTarget;
  log: Logger;
}

type Reachable = Extract<Resolution, { kind: 'hbone' | 'gateway' | 'plaintext' }>;
/** A destination's waypoint: a proxy that is not itself that waypoint (the ingress) sends the request there. */
type ToWaypoint = Extract<Resolution, { kind: 'waypoint' }>;

/** Whether the resolution names an endpoint the waypoint can reach. */
export function isReachable(resolution: Resolution): resolution is Reachable {
  return resolution.kind === 'hbone' || resolution.kind === 'gateway' || resolution.kind === 'plaintext';
}

/** The tunnel to one picked endpoint; its key pools HTTP connections per endpoint (per gateway and service across networks). */
export function tunnelTargetFor(resolution: Reachable | ToWaypoint, dialer: UpstreamDialer): TunnelTarget {
  const { upstream } = resolution;
  const headers = () => ({ baggage: baggageFor(dialer.self(), dialer.clusterId), traceparent: newTraceparent() });
  if (resolution.kind === 'waypoint') {
    // Dialled directly on its own HBONE port; the CONNECT names the destination, not the waypoint.
    const { authority } = resolution;
    return {
      key: `waypoint ${formatAuthority(upstream.address, upstream.port)} ${authority}`,
      open: () => dialer.pool.connect({ sourceIdentity: dialer.identity, expectedIdentities: upstream.expectedIdentities, destination: upstream.address, port: upstream.port, authority, headers: headers() }),
    };
  }
  const expectedIdentities = upstream.expectedIdentities.length ? upstream.expectedIdentities : [spiffeUri(identityOf(upstream.workload))];
  switch (resolution.kind) {
    case 'hbone': {
      const authority = formatAuthority(upstream.address, upstream.port);
      return {
        key: `hbone ${authority} ${expectedIdentities.join(',')}`,
        open: () => dialer.pool.connect({ sourceIdentity: dialer.identity, expectedIdentities, destination: upstream.address, authority, headers: headers() }),
      };
    }
    case 'gateway': {
      const { gateway, authority } = resolution;
      const hop = () => ({ ...headers(), ...(dialer.network ? { [X_FORWARDED_NETWORK]: dialer.network } : {}) });
      return {
        key: `gateway ${formatAuthority(gateway.address, gateway.port)} ${authority}`,
        open: () =>
          dialer.inner.connect({
            sourceIdentity: dialer.identity,
            expectedIdentities,
            gateway: { address: gateway.address, port: gateway.port, identities: gateway.identities },
            hostname: resolution.upstream.service.hostname,
            authority,
            headers: hop(),
            outerHeaders: hop(),
          }),
      };
    }
    case 'plaintext':
      return {
        key: `tcp ${formatAuthority(upstream.address, upstream.port)}`,
        open: () => dialTcp(dialer.dialAddress(upstream.address, upstream.port), dialer.log),
      };
  }
}
