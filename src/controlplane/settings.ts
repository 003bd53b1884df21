import { z } from 'zod';
import { DEFAULT_SYSTEM_NAMESPACE, DEFAULT_TRUST_DOMAIN } from '../api/resources.js';

export interface ControlPlaneSettings {
  clusterId: string;
  network: string;
  meshId: string;
  trustDomain: string;
  systemNamespace: string;
  podName: string;
  /** Default and maximum lifetime of workload certificates. */
  workloadCertTtlSeconds: number;
  maxWorkloadCertTtlSeconds: number;
  /** Kubeconfig file; unset means in-cluster credentials. */
  kubeconfig?: string;
  ports: { xds: number; monitoring: number; readiness: number };
  /** Address the gRPC/HTTP servers bind. */
  bindHost: string;
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Parses `90s`, `20m`, `24h`, `90d` (or plain seconds) into seconds. */
export function parseDurationSeconds(value: string, field: string): number {
  const match = /^(\d+(?:\.\d+)?)(s|m|h|d)?$/.exec(value.trim());
  if (!match) throw new Error(`${field}: expected a duration like 24h, 30m or 90s, got ${JSON.stringify(value)}`);
  const seconds = Number(match[1]) * (UNITS[match[2] ?? 's'] ?? 1);
  if (!(seconds > 0)) throw new Error(`${field}: duration must be positive, got ${JSON.stringify(value)}`);
  return Math.round(seconds);
}

const EnvSchema = z.object({
  CLUSTER_ID: z.string({ error: 'CLUSTER_ID must be set' }).min(1, 'CLUSTER_ID must not be empty'),
  NETWORK: z.string().default(''),
  MESH_ID: z.string().default(DEFAULT_TRUST_DOMAIN),
  TRUST_DOMAIN: z.string().min(1).default(DEFAULT_TRUST_DOMAIN),
  SYSTEM_NAMESPACE: z.string().min(1).default(DEFAULT_SYSTEM_NAMESPACE),
  POD_NAME: z.string().default('ambit-controlplane'),
  WORKLOAD_CERT_TTL: z.string().default('24h'),
  MAX_WORKLOAD_CERT_TTL: z.string().default('90d'),
  KUBECONFIG: z.string().optional(),
  XDS_PORT: z.coerce.number().int().min(1).max(65535).default(15012),
  MONITORING_PORT: z.coerce.number().int().min(1).max(65535).default(15014),
  READINESS_PORT: z.coerce.number().int().min(1).max(65535).default(8080),
  BIND_HOST: z.string().default('0.0.0.0'),
});

export function controlPlaneSettingsFromEnv(env: NodeJS.ProcessEnv): ControlPlaneSettings {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    throw new Error(`control plane settings: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const e = parsed.data;
  const ttl = parseDurationSeconds(e.WORKLOAD_CERT_TTL, 'WORKLOAD_CERT_TTL');
  const maxTtl = parseDurationSeconds(e.MAX_WORKLOAD_CERT_TTL, 'MAX_WORKLOAD_CERT_TTL');
  if (ttl > maxTtl) throw new Error(`WORKLOAD_CERT_TTL (${e.WORKLOAD_CERT_TTL}) exceeds MAX_WORKLOAD_CERT_TTL (${e.MAX_WORKLOAD_CERT_TTL})`);
  return {
    clusterId: e.CLUSTER_ID,
    network: e.NETWORK,
    meshId: e.MESH_ID,
    trustDomain: e.TRUST_DOMAIN,
    systemNamespace: e.SYSTEM_NAMESPACE,
    podName: e.POD_NAME,
    workloadCertTtlSeconds: ttl,
    maxWorkloadCertTtlSeconds: maxTtl,
    kubeconfig: e.KUBECONFIG,
    ports: { xds: e.XDS_PORT, monitoring: e.MONITORING_PORT, readiness: e.READINESS_PORT },
    bindHost: e.BIND_HOST,
  };
}
