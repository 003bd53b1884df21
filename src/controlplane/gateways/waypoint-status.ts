/**
 * Status of a waypoint Gateway: Accepted, Programmed once its Service has a cluster IP (as Istio,
 * which does not wait for the pod), and for seed 004's istio-mesh also `Ready` once the Deployment
 * has an available replica, with the message Istio 1.15 wrote.
 */
import { HBONE_PORT } from '../../api/resources.js';
import { WAYPOINT_CONTROLLER_NAME } from './constants.js';
import { isAccepted, type GatewayReading } from './gateway.js';
import type { GatewayStatusAddress, ObservedResources, StatusProfile, Verdict } from './status.js';
import { WAYPOINT_EXPECTED_LISTENER } from './waypoint-gateway.js';

function clusterIps(observed: ObservedResources): GatewayStatusAddress[] {
  const ips = observed.service?.spec?.clusterIPs ?? (observed.service?.spec?.clusterIP ? [observed.service.spec.clusterIP] : []);
  return ips.filter((ip) => ip && ip !== 'None').map((value) => ({ type: 'IPAddress' as const, value }));
}

function programmed(reading: GatewayReading, observed: ObservedResources, addresses: GatewayStatusAddress[]): Verdict {
  const no = (reason: string, message: string): Verdict => ({ type: 'Programmed', status: 'False', reason, message });
  if (!isAccepted(reading)) return no('Invalid', 'the Gateway is not accepted (see its Accepted condition)');
  if (observed.blocked) return no('Invalid', observed.blocked);
  const service = `${reading.waypoint?.workloadName}.${reading.namespace}`;
  if (!addresses.length) return no('AddressNotAssigned', `waiting for a cluster IP of Service ${service}`);
  return { type: 'Programmed', status: 'True', reason: 'Programmed', message: `Resource programmed, assigned to service(s) ${service}.svc:${HBONE_PORT}` };
}

export function hasAvailableReplica(observed: ObservedResources): boolean {
  return (observed.deployment?.status?.availableReplicas ?? 0) > 0;
}

function ready(reading: GatewayReading, observed: ObservedResources): Verdict[] {
  const sa = reading.waypoint?.serviceAccount ?? '';
  const no = (reason: string, message: string): Verdict[] => [{ type: 'Ready', status: 'False', reason, message }];
  if (!isAccepted(reading)) return no('Invalid', 'the Gateway is not accepted (see its Accepted condition)');
  if (observed.blocked) return no('Invalid', observed.blocked);
  if (!hasAvailableReplica(observed)) return no('Pending', `waiting for an available replica of Deployment ${reading.namespace}/${reading.waypoint?.workloadName}`);
  return [{ type: 'Ready', status: 'True', reason: 'Ready', message: `Deployed waypoint proxy to "${reading.namespace}" namespace for "${sa}" service account` }];
}

export const WAYPOINT_STATUS: StatusProfile = {
  controllerName: WAYPOINT_CONTROLLER_NAME,
  expectedListener: WAYPOINT_EXPECTED_LISTENER,
  listenerOf: 'a waypoint',
  addresses: clusterIps,
  programmed,
};

export const MESH_WAYPOINT_STATUS: StatusProfile = { ...WAYPOINT_STATUS, extra: ready };
