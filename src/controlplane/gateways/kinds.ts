/**
 * The classes of Gateway the controller programs, each a kind with its own reading, objects and
 * status: istio-east-west (east-west gateways), istio-waypoint and seed 004's istio-mesh (waypoints).
 */
import { MESH_GATEWAY_CLASS, WAYPOINT_GATEWAY_CLASS } from '../../api/resources.js';
import { EAST_WEST_CONTROLLER_NAME, EAST_WEST_GATEWAY_CLASS, WAYPOINT_CONTROLLER_NAME } from './constants.js';
import { isRecord, readGateway, type GatewayObject, type GatewayReading } from './gateway.js';
import type { OwnedObject } from './kube-api.js';
import { renderGatewayResources, type GatewayWorkloadSettings } from './render.js';
import { EAST_WEST_STATUS, type StatusProfile } from './status.js';
import { readWaypointGateway } from './waypoint-gateway.js';
import { renderWaypointResources } from './waypoint-render.js';
import { MESH_WAYPOINT_STATUS, WAYPOINT_STATUS } from './waypoint-status.js';

export interface GatewayKind {
  className: string;
  controllerName: string;
  /** GatewayClass spec.description (the upstream schema allows 64 characters). */
  description: string;
  read(gateway: GatewayObject, clusterNetwork: string): GatewayReading;
  /** The objects, in apply order. */
  render(reading: GatewayReading, settings: GatewayWorkloadSettings): OwnedObject[];
  /** Name of the Deployment and Service made for it. */
  workloadName(reading: GatewayReading): string;
  status: StatusProfile;
}

const eastWestRender = (reading: GatewayReading, settings: GatewayWorkloadSettings): OwnedObject[] => {
  const r = renderGatewayResources(reading, settings);
  return [r.serviceAccount, r.deployment, r.service];
};

export const EAST_WEST_KIND: GatewayKind = {
  className: EAST_WEST_GATEWAY_CLASS,
  controllerName: EAST_WEST_CONTROLLER_NAME,
  description: 'ambit east-west gateways: HBONE on port 15008 between networks',
  read: (gateway, network) => readGateway(gateway, network),
  render: eastWestRender,
  workloadName: (reading) => reading.name,
  status: EAST_WEST_STATUS,
};

const waypointName = (reading: GatewayReading) => reading.waypoint?.workloadName ?? reading.name;

export const WAYPOINT_KIND: GatewayKind = {
  className: WAYPOINT_GATEWAY_CLASS,
  controllerName: WAYPOINT_CONTROLLER_NAME,
  description: 'ambit waypoints: L7 proxies for services and workloads',
  read: readWaypointGateway,
  render: renderWaypointResources,
  workloadName: waypointName,
  status: WAYPOINT_STATUS,
};

export const MESH_WAYPOINT_KIND: GatewayKind = {
  className: MESH_GATEWAY_CLASS,
  controllerName: WAYPOINT_CONTROLLER_NAME,
  description: 'ambit waypoints for the workloads of one service account',
  read: readWaypointGateway,
  render: renderWaypointResources,
  workloadName: waypointName,
  status: MESH_WAYPOINT_STATUS,
};

export const GATEWAY_KINDS: readonly GatewayKind[] = [EAST_WEST_KIND, WAYPOINT_KIND, MESH_WAYPOINT_KIND];

/** The kind of a Gateway by its class; undefined for classes the controller does not program. */
export function kindOf(gateway: GatewayObject): GatewayKind | undefined {
  const className = isRecord(gateway.spec) ? gateway.spec.gatewayClassName : undefined;
  return GATEWAY_KINDS.find((kind) => kind.className === className);
}
