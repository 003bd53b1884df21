// The waypoint's settings, from the environment of the Deployment the control plane makes for a waypoint Gateway.
import { z } from 'zod';

import { WAYPOINT_FOR, type WaypointFor } from '../api/resources.js';
import { parseEnv } from '../api/workload-settings.js';
import { gatewaySettingsFromEnv, type GatewaySettings } from '../gateway/settings.js';

export interface WaypointSettings extends Omit<GatewaySettings, 'enforceTrustDomain'> {
  /** The ServiceAccount the waypoint runs as: the Gateway's name, or seed 004's `istio.io/service-account`. */
  serviceAccount: string;
  /** What traffic the waypoint is for (its Gateway's `istio.io/waypoint-for`). */
  waypointFor: WaypointFor;
  /** One JSON line per request on stdout (off by default). */
  accessLog: boolean;
}

const EnvSchema = z.object({
  SERVICE_ACCOUNT: z.string().default(''),
  WAYPOINT_FOR: z.enum(Object.values(WAYPOINT_FOR) as [WaypointFor, ...WaypointFor[]], { error: `WAYPOINT_FOR must be one of ${Object.values(WAYPOINT_FOR).join(', ')}` }).default(WAYPOINT_FOR.service),
  WAYPOINT_ACCESS_LOG: z
    .enum(['true', 'false', '1', '0', ''], { error: 'WAYPOINT_ACCESS_LOG must be true or false' })
    .default('')
    .transform((value) => value === 'true' || value === '1'),
});

/** Reads and checks the waypoint's environment; throws one error listing every bad variable by name. */
export function waypointSettingsFromEnv(env: NodeJS.ProcessEnv): WaypointSettings {
  const { enforceTrustDomain: _unused, ...common } = gatewaySettingsFromEnv(env);
  const e = parseEnv(EnvSchema, env, 'waypoint');
  return { ...common, serviceAccount: e.SERVICE_ACCOUNT || common.gatewayName, waypointFor: e.WAYPOINT_FOR, accessLog: e.WAYPOINT_ACCESS_LOG };
}
