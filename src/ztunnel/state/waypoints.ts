// How a waypoint named by a GatewayAddress (Service.waypoint, Workload.waypoint) is called in logs, metrics and explanations.
import type { GatewayAddress } from '../../gen/istio/workload/workload_pb.js';
import { serviceResourceName } from '../../api/resources.js';
import { decodeAddresses } from './addresses.js';

/** `<ns>/<hostname>` of a waypoint named by hostname (its Service's resource name), else its address. */
export function waypointNameOf(waypoint: GatewayAddress): string {
  if (waypoint.destination.case === 'hostname') return serviceResourceName(waypoint.destination.value.namespace, waypoint.destination.value.hostname);
  if (waypoint.destination.case === 'address') return decodeAddresses([waypoint.destination.value.address])[0] ?? 'an invalid address';
  return 'a waypoint without hostname or address';
}
