import { isIP } from 'node:net';
import { z } from 'zod';
import { CONTROL_PLANE_PORT, DEFAULT_SYSTEM_NAMESPACE, DEFAULT_TRUST_DOMAIN } from '../api/resources.js';

/** ztunnel's settings, from the environment the DaemonSet sets (flags may override). */
export interface ZtunnelSettings {
  nodeName: string;
  /** The node's address: capture DNATs to it. */
  nodeIp: string;
  podName: string;
  podNamespace: string;
  clusterId: string;
  network: string;
  trustDomain: string;
  systemNamespace: string;
  xdsAddress: string;
  caAddress: string;
  tokenPath: string;
  rootCertPath: string;
  /** Requested workload certificate lifetime; the CA may cap it. Unset: the CA's default. */
  certTtlSeconds?: number;
}

const nonEmpty = (name: string) => z.string({ error: `${name} must be set` }).min(1, `${name} must not be empty`);

const EnvSchema = z.object({
  NODE_NAME: nonEmpty('NODE_NAME'),
  INSTANCE_IP: nonEmpty('INSTANCE_IP').refine((ip) => isIP(ip) === 4, 'INSTANCE_IP must be an IPv4 address'),
  POD_NAME: z.string().default('ztunnel'),
  POD_NAMESPACE: z.string().default(DEFAULT_SYSTEM_NAMESPACE),
  CLUSTER_ID: nonEmpty('CLUSTER_ID'),
  NETWORK: z.string().default(''),
  TRUST_DOMAIN: z.string().default(DEFAULT_TRUST_DOMAIN),
  SYSTEM_NAMESPACE: z.string().default(DEFAULT_SYSTEM_NAMESPACE),
  XDS_ADDRESS: z.string().optional(),
  CA_ADDRESS: z.string().optional(),
  TOKEN_PATH: z.string().default('/var/run/secrets/tokens/istio-token'),
  ROOT_CERT_PATH: z.string().default('/var/run/secrets/istio/root-cert.pem'),
  WORKLOAD_CERT_TTL_SECONDS: z.coerce.number().int().positive().optional(),
});

export function ztunnelSettingsFromEnv(env: NodeJS.ProcessEnv): ZtunnelSettings {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || 'environment'}: ${issue.message}`);
    throw new Error(`ztunnel settings: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  const controlPlane = `ambit-controlplane.${e.SYSTEM_NAMESPACE}.svc:${CONTROL_PLANE_PORT}`;
  return {
    nodeName: e.NODE_NAME,
    nodeIp: e.INSTANCE_IP,
    podName: e.POD_NAME,
    podNamespace: e.POD_NAMESPACE,
    clusterId: e.CLUSTER_ID,
    network: e.NETWORK,
    trustDomain: e.TRUST_DOMAIN,
    systemNamespace: e.SYSTEM_NAMESPACE,
    xdsAddress: e.XDS_ADDRESS || controlPlane,
    caAddress: e.CA_ADDRESS || e.XDS_ADDRESS || controlPlane,
    tokenPath: e.TOKEN_PATH,
    rootCertPath: e.ROOT_CERT_PATH,
    certTtlSeconds: e.WORKLOAD_CERT_TTL_SECONDS,
  };
}
