import { isIP } from 'node:net';
import { z } from 'zod';
import { DEFAULT_SYSTEM_NAMESPACE, DEFAULT_TRUST_DOMAIN, HBONE_PORT } from '../api/resources.js';
import {
  controlPlaneEnv,
  controlPlaneSettings,
  DEFAULT_ROOT_CERT_PATH,
  DEFAULT_TOKEN_PATH,
  nonEmpty,
  parseEnv,
  type ControlPlaneSettings,
} from '../api/workload-settings.js';

/** The east-west gateway's settings, from the environment its Deployment sets. */
export interface GatewaySettings extends ControlPlaneSettings {
  /** Name of the Gateway resource; the gateway's ServiceAccount carries the same name. */
  gatewayName: string;
  podName: string;
  podNamespace: string;
  /** Node the pod runs on (only for logs and the config dump; the gateway captures nothing). */
  nodeName: string;
  /** The pod's own address, for the xDS node id. */
  instanceIp: string;
  /** The network this gateway serves: it forwards only to endpoints on it. */
  network: string;
  /** Refuse outer clients whose identity is in another trust domain (default: any identity the mesh roots vouch for). */
  enforceTrustDomain: boolean;
  /** Port of the HBONE listener (15008). */
  hbonePort: number;
}

/** A Kubernetes name (DNS-1123 label), since it ends up in a SPIFFE identity. */
const dnsLabel = (name: string) =>
  nonEmpty(name).regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, `${name} must be a DNS-1123 label (lower-case letters, digits and '-')`);

const flag = (name: string) =>
  z
    .enum(['true', 'false', '1', '0', ''], { error: `${name} must be true or false` })
    .default('')
    .transform((value) => value === 'true' || value === '1');

const EnvSchema = z.object({
  GATEWAY_NAME: dnsLabel('GATEWAY_NAME'),
  POD_NAME: z.string().default(''),
  POD_NAMESPACE: dnsLabel('POD_NAMESPACE').default(DEFAULT_SYSTEM_NAMESPACE),
  NODE_NAME: z.string().default(''),
  INSTANCE_IP: z
    .string()
    .default('')
    .refine((ip) => ip === '' || isIP(ip) !== 0, 'INSTANCE_IP must be an IP address'),
  ...controlPlaneEnv,
  TRUST_DOMAIN: z.string().min(1, 'TRUST_DOMAIN must not be empty').default(DEFAULT_TRUST_DOMAIN),
  SYSTEM_NAMESPACE: z.string().min(1, 'SYSTEM_NAMESPACE must not be empty').default(DEFAULT_SYSTEM_NAMESPACE),
  TOKEN_PATH: z.string().min(1, 'TOKEN_PATH must not be empty').default(DEFAULT_TOKEN_PATH),
  ROOT_CERT_PATH: z.string().min(1, 'ROOT_CERT_PATH must not be empty').default(DEFAULT_ROOT_CERT_PATH),
  WORKLOAD_CERT_TTL_SECONDS: z.coerce.number({ error: 'WORKLOAD_CERT_TTL_SECONDS must be a number' }).int('WORKLOAD_CERT_TTL_SECONDS must be whole seconds').positive('WORKLOAD_CERT_TTL_SECONDS must be positive').optional(),
  GATEWAY_ENFORCE_TRUST_DOMAIN: flag('GATEWAY_ENFORCE_TRUST_DOMAIN'),
  GATEWAY_HBONE_PORT: z.coerce
    .number({ error: 'GATEWAY_HBONE_PORT must be a number' })
    .int('GATEWAY_HBONE_PORT must be a port number')
    .min(1, 'GATEWAY_HBONE_PORT must be 1-65535')
    .max(65535, 'GATEWAY_HBONE_PORT must be 1-65535')
    .default(HBONE_PORT),
});

/** Reads and checks the gateway's environment; throws one error listing every bad variable by name. */
export function gatewaySettingsFromEnv(env: NodeJS.ProcessEnv): GatewaySettings {
  const e = parseEnv(EnvSchema, env, 'gateway');
  return {
    gatewayName: e.GATEWAY_NAME,
    podName: e.POD_NAME || e.GATEWAY_NAME,
    podNamespace: e.POD_NAMESPACE,
    nodeName: e.NODE_NAME,
    instanceIp: e.INSTANCE_IP,
    ...controlPlaneSettings(e),
    enforceTrustDomain: e.GATEWAY_ENFORCE_TRUST_DOMAIN,
    hbonePort: e.GATEWAY_HBONE_PORT,
  };
}
