// The waypoint Gateway `ambit waypoint generate|apply` makes, and the checks of the flags that shape it.
import { stringify } from 'yaml';

import { GATEWAY_API_GROUP } from '../api/names.js';
import {
  DEFAULT_WAYPOINT_NAME,
  HBONE_PORT,
  isDnsLabel,
  USE_WAYPOINT_NONE,
  WAYPOINT_FOR,
  WAYPOINT_FOR_LABEL,
  WAYPOINT_GATEWAY_CLASS,
  WAYPOINT_LISTENER_NAME,
  type WaypointFor,
} from '../api/resources.js';

/** Bad input to a waypoint command: the CLI prints the message on one line and exits 1. */
export class WaypointCliError extends Error {}

export const GATEWAY_API_VERSION = `${GATEWAY_API_GROUP}/v1`;
const FOR_VALUES = Object.values(WAYPOINT_FOR) as string[];

export function parseWaypointFor(value: string | undefined): WaypointFor {
  if (value === undefined) return WAYPOINT_FOR.service;
  if (!FOR_VALUES.includes(value)) throw new WaypointCliError(`--for: "${value}" is not a traffic type; expected one of ${FOR_VALUES.join(', ')}`);
  return value as WaypointFor;
}

/** A waypoint name: it names the Deployment and Service too, so a DNS label; `none` is reserved for opting out. */
export function validateWaypointName(name: string, flag = '--name'): string {
  if (name === USE_WAYPOINT_NONE) throw new WaypointCliError(`${flag}: "${USE_WAYPOINT_NONE}" is reserved (istio.io/use-waypoint=none opts out of a waypoint); choose another name`);
  if (!isDnsLabel(name)) throw new WaypointCliError(`${flag}: "${name}" is not a valid waypoint name (a DNS-1123 label: lower-case letters, digits and '-', at most 63 characters, starting and ending with a letter or digit)`);
  return name;
}

export function validateNamespace(namespace: string): string {
  if (!isDnsLabel(namespace)) throw new WaypointCliError(`--namespace: "${namespace}" is not a valid namespace name (a DNS-1123 label)`);
  return namespace;
}

export interface WaypointGatewaySpec {
  name?: string;
  /** Left out of the object when undefined (generate without -n, as istioctl). */
  namespace?: string;
  for?: WaypointFor;
}

export interface WaypointGatewayObject {
  apiVersion: string;
  kind: 'Gateway';
  metadata: { name: string; namespace?: string; labels: Record<string, string> };
  spec: { gatewayClassName: string; listeners: Array<{ name: string; port: number; protocol: string }> };
}

export function waypointGateway(spec: WaypointGatewaySpec): WaypointGatewayObject {
  const name = validateWaypointName(spec.name ?? DEFAULT_WAYPOINT_NAME);
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: 'Gateway',
    metadata: {
      name,
      ...(spec.namespace !== undefined ? { namespace: validateNamespace(spec.namespace) } : {}),
      labels: { [WAYPOINT_FOR_LABEL]: spec.for ?? WAYPOINT_FOR.service },
    },
    spec: {
      gatewayClassName: WAYPOINT_GATEWAY_CLASS,
      listeners: [{ name: WAYPOINT_LISTENER_NAME, port: HBONE_PORT, protocol: 'HBONE' }],
    },
  };
}

export function renderGatewayYaml(gateway: WaypointGatewayObject): string {
  return stringify(gateway);
}
