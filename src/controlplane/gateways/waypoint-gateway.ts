/**
 * Reading a waypoint Gateway: class istio-waypoint (listener `mesh`, HBONE, 15008; label
 * `istio.io/waypoint-for`) and seed 004's class istio-mesh (annotation `istio.io/service-account`;
 * listeners optional). Every problem names its field; nothing is trusted.
 */
import {
  HBONE_PORT,
  MESH_GATEWAY_CLASS,
  WAYPOINT_FOR,
  WAYPOINT_FOR_LABEL,
  WAYPOINT_GATEWAY_CLASS,
  WAYPOINT_SERVICE_ACCOUNT_ANNOTATION,
  type WaypointFor,
} from '../../api/resources.js';
import { HBONE_PROTOCOL } from './constants.js';
import { nameProblem, readGateway, shown, type GatewayObject, type GatewayReading, type ListenerRules } from './gateway.js';

export const WAYPOINT_EXPECTED_LISTENER = `protocol ${HBONE_PROTOCOL}, port ${HBONE_PORT}`;
/** Suffix of seed 004's waypoint Deployment and Service: `<sa>-waypoint-proxy`. */
export const MESH_WAYPOINT_SUFFIX = '-waypoint-proxy';

export function waypointListenerProblem(listener: Record<string, unknown>): string | undefined {
  const wrong: string[] = [];
  if (listener.protocol !== HBONE_PROTOCOL) wrong.push(`protocol is ${shown(listener.protocol)}, expected ${HBONE_PROTOCOL}`);
  if (listener.port !== HBONE_PORT) wrong.push(`port is ${shown(listener.port)}, expected ${HBONE_PORT}`);
  return wrong.length ? wrong.join('; ') : undefined;
}

const WAYPOINT_LISTENERS: ListenerRules = { problem: waypointListenerProblem };
const MESH_LISTENERS: ListenerRules = { problem: waypointListenerProblem, optional: true };

const FOR_VALUES = Object.values(WAYPOINT_FOR) as string[];

/** A ServiceAccount name is a DNS-1123 subdomain; `<sa>-waypoint-proxy` must also name a Service (a DNS-1035 label). */
function serviceAccountProblem(sa: string | undefined): string | undefined {
  const field = `metadata.annotations["${WAYPOINT_SERVICE_ACCOUNT_ANNOTATION}"]`;
  if (!sa) return `${field}: required for class ${MESH_GATEWAY_CLASS} (the service account whose workloads the waypoint serves)`;
  if (nameProblem(`${sa}${MESH_WAYPOINT_SUFFIX}`)) {
    return `${field}: ${shown(sa)} is not a service account name that can name the Service ${shown(`${sa}${MESH_WAYPOINT_SUFFIX}`)} (lowercase letters, digits and '-', starting with a letter, at most ${63 - MESH_WAYPOINT_SUFFIX.length} characters)`;
  }
  return undefined;
}

export function readWaypointGateway(gateway: GatewayObject, clusterNetwork: string): GatewayReading {
  const className = (gateway.spec as { gatewayClassName?: unknown } | undefined)?.gatewayClassName;
  const mesh = className === MESH_GATEWAY_CLASS;
  const reading = readGateway(gateway, clusterNetwork, mesh ? MESH_LISTENERS : WAYPOINT_LISTENERS);
  const labels = gateway.metadata?.labels ?? {};
  if (mesh) {
    const sa = gateway.metadata?.annotations?.[WAYPOINT_SERVICE_ACCOUNT_ANNOTATION]?.trim();
    const problem = serviceAccountProblem(sa);
    if (problem) reading.problems.push(problem);
    reading.waypoint = { for: WAYPOINT_FOR.workload, serviceAccount: sa ?? '', workloadName: `${sa ?? ''}${MESH_WAYPOINT_SUFFIX}`, ownsServiceAccount: false };
    return reading;
  }
  const label = labels[WAYPOINT_FOR_LABEL];
  let waypointFor: WaypointFor = WAYPOINT_FOR.service;
  if (label !== undefined && label !== '') {
    if (FOR_VALUES.includes(label)) waypointFor = label as WaypointFor;
    else reading.problems.push(`metadata.labels["${WAYPOINT_FOR_LABEL}"]: ${shown(label)} is not one of ${FOR_VALUES.join(', ')}`);
  }
  reading.waypoint = { for: waypointFor, serviceAccount: reading.name, workloadName: reading.name, ownsServiceAccount: true };
  return reading;
}

export function isWaypointClass(className: unknown): boolean {
  return className === WAYPOINT_GATEWAY_CLASS || className === MESH_GATEWAY_CLASS;
}
