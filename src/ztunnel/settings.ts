import { isIP } from 'node:net';
import { z } from 'zod';
import { DEFAULT_SYSTEM_NAMESPACE, DEFAULT_TRUST_DOMAIN } from '../api/resources.js';
import {
  controlPlaneEnv,
  controlPlaneSettings,
  DEFAULT_ROOT_CERT_PATH,
  DEFAULT_TOKEN_PATH,
  nonEmpty,
  parseEnv,
  type ControlPlaneSettings,
} from '../api/workload-settings.js';

/** ztunnel's settings, from the environment the DaemonSet sets (flags may override). */
export interface ZtunnelSettings extends ControlPlaneSettings {
  nodeName: string;
  /** The node's address: capture DNATs to it. */
  nodeIp: string;
  podName: string;
  podNamespace: string;
  /** Pool the inner sessions of double HBONE (default); false opens one per connection, as Istio's ztunnel does. */
  innerHbonePooling: boolean;
}

/** `false` turns pooling of double HBONE's inner sessions off (benchmarks compare both). */
export const INNER_HBONE_POOLING_ENV = 'INNER_HBONE_POOLING';

const EnvSchema = z.object({
  NODE_NAME: nonEmpty('NODE_NAME'),
  INSTANCE_IP: nonEmpty('INSTANCE_IP').refine((ip) => isIP(ip) === 4, 'INSTANCE_IP must be an IPv4 address'),
  POD_NAME: z.string().default('ztunnel'),
  POD_NAMESPACE: z.string().default(DEFAULT_SYSTEM_NAMESPACE),
  ...controlPlaneEnv,
  TRUST_DOMAIN: z.string().default(DEFAULT_TRUST_DOMAIN),
  SYSTEM_NAMESPACE: z.string().default(DEFAULT_SYSTEM_NAMESPACE),
  TOKEN_PATH: z.string().default(DEFAULT_TOKEN_PATH),
  ROOT_CERT_PATH: z.string().default(DEFAULT_ROOT_CERT_PATH),
  WORKLOAD_CERT_TTL_SECONDS: z.coerce.number().int().positive().optional(),
  [INNER_HBONE_POOLING_ENV]: z.stringbool().default(true),
});

export function ztunnelSettingsFromEnv(env: NodeJS.ProcessEnv): ZtunnelSettings {
  const e = parseEnv(EnvSchema, env, 'ztunnel');
  return {
    nodeName: e.NODE_NAME,
    nodeIp: e.INSTANCE_IP,
    podName: e.POD_NAME,
    podNamespace: e.POD_NAMESPACE,
    innerHbonePooling: e[INNER_HBONE_POOLING_ENV],
    ...controlPlaneSettings(e),
  };
}
