/**
 * Validates the JSON a ztunnel's admin endpoint returns, so a malformed or foreign answer becomes
 * a clear error instead of a crash while printing tables.
 */
import { z } from 'zod';
import type { ConfigDump } from '../../ztunnel/admin/types.js';

const strings = z.array(z.string());

const workload = z.object({
  uid: z.string(),
  name: z.string(),
  namespace: z.string(),
  addresses: strings,
  node: z.string(),
  network: z.string(),
  clusterId: z.string(),
  protocol: z.enum(['HBONE', 'TCP']),
  serviceAccount: z.string(),
  identity: z.string(),
  status: z.enum(['Healthy', 'Unhealthy']),
  canonicalName: z.string(),
  canonicalRevision: z.string(),
  workloadType: z.string(),
  workloadName: z.string(),
  services: strings,
  locality: z.object({ region: z.string(), zone: z.string(), subzone: z.string() }),
  captured: z.boolean(),
  capacity: z.number().default(1),
  dnsName: z.string().optional(),
  networkGateway: z.string().optional(),
  waypoint: z.string().optional(),
});

const service = z.object({
  name: z.string(),
  namespace: z.string(),
  hostname: z.string(),
  vips: strings,
  ports: z.array(z.object({ port: z.number(), targetPort: z.number(), protocol: z.string() })),
  endpoints: z.number(),
  healthyEndpoints: z.number(),
  loadBalancing: z.object({ mode: z.string(), routingPreference: strings }).optional(),
  waypoint: z.string().optional(),
});

const certificate = z.object({
  identity: z.string(),
  state: z.enum(['valid', 'pending', 'error']),
  serialNumber: z.string().optional(),
  notBefore: z.string().optional(),
  notAfter: z.string().optional(),
  renewAt: z.string().optional(),
  chain: z.array(z.object({ subject: z.string(), issuer: z.string(), uriSans: strings, notBefore: z.string(), notAfter: z.string() })),
  error: z.string().optional(),
});

const policy = z.object({ name: z.string(), namespace: z.string(), scope: z.string(), action: z.string(), rules: z.number(), dryRun: z.boolean() });

const configDump = z.object({
  node: z.string(),
  clusterId: z.string(),
  network: z.string(),
  controlPlane: z.object({ connected: z.boolean(), address: z.string(), lastUpdate: z.string().optional(), lastError: z.string().optional() }),
  workloads: z.array(workload),
  services: z.array(service),
  certificates: z.array(certificate),
  policies: z.array(policy),
}) satisfies z.ZodType<ConfigDump>;

export class ConfigDumpError extends Error {}

/** Parses a config_dump body; `where` names its origin in errors (`ztunnel-abc12 on node-1`). */
export function parseConfigDump(body: string, where: string): ConfigDump {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    const preview = body.trim().slice(0, 120);
    throw new ConfigDumpError(`${where}: the admin endpoint did not return JSON${preview ? `: ${preview}` : ' (empty answer)'}`);
  }
  const parsed = configDump.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 5).map((i) => `${i.path.map(String).join('.') || '(top level)'}: ${i.message}`);
    throw new ConfigDumpError(`${where}: unexpected config_dump from the admin endpoint: ${problems.join('; ')}`);
  }
  return parsed.data;
}
