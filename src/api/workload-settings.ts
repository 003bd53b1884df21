import { z } from 'zod';
import { CONTROL_PLANE_PORT } from './resources.js';

/** What a mesh process reading xDS and certificates from the control plane (ztunnel, the east-west gateway) is told. */
export interface ControlPlaneSettings {
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

export const DEFAULT_TOKEN_PATH = '/var/run/secrets/tokens/istio-token';
export const DEFAULT_ROOT_CERT_PATH = '/var/run/secrets/istio/root-cert.pem';

/** A variable that must be set to a non-empty string. */
export const nonEmpty = (name: string) => z.string({ error: `${name} must be set` }).min(1, `${name} must not be empty`);

/** The variables both processes read the same way: where they are and where the control plane is. */
export const controlPlaneEnv = {
  CLUSTER_ID: nonEmpty('CLUSTER_ID'),
  NETWORK: z.string().default(''),
  XDS_ADDRESS: z.string().optional(),
  CA_ADDRESS: z.string().optional(),
};

/** The parsed variables {@link controlPlaneSettings} reads. */
export interface ControlPlaneEnv {
  CLUSTER_ID: string;
  NETWORK: string;
  TRUST_DOMAIN: string;
  SYSTEM_NAMESPACE: string;
  XDS_ADDRESS?: string;
  CA_ADDRESS?: string;
  TOKEN_PATH: string;
  ROOT_CERT_PATH: string;
  WORKLOAD_CERT_TTL_SECONDS?: number;
}

/** Parses the environment; throws one error, prefixed with `<what> settings:`, listing every bad variable by name. */
export function parseEnv<Schema extends z.ZodType>(schema: Schema, env: NodeJS.ProcessEnv, what: string): z.output<Schema> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || 'environment'}: ${issue.message}`);
    throw new Error(`${what} settings: ${problems.join('; ')}`);
  }
  return parsed.data;
}

/** The control plane part of the settings; xDS and CA default to the control plane Service of the system namespace. */
export function controlPlaneSettings(e: ControlPlaneEnv): ControlPlaneSettings {
  const controlPlane = `ambit-controlplane.${e.SYSTEM_NAMESPACE}.svc:${CONTROL_PLANE_PORT}`;
  return {
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
