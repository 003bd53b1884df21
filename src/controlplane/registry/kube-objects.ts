import { isIP } from 'node:net';

import { z } from 'zod';

import { formatFieldPath, type FieldProblem } from './problems.js';

/**
 * The parts of Kubernetes objects the registry reads, validated at the boundary. Objects arrive
 * either as plain JSON (watch events, `kubectl get -o json`) or as @kubernetes/client-node model
 * instances (list results, with Date timestamps); both have the same field names, and only strings
 * and numbers are read here, so both parse the same way.
 */

export type Labels = Readonly<Record<string, string>>;

export type Parsed<T> = { ok: true; value: T } | { ok: false; problems: FieldProblem[] };

const stringMap = z.record(z.string(), z.string());
const portNumber = z.number().int().min(1).max(65535);
const ipAddress = z.string().refine((ip) => isIP(ip) !== 0, { message: 'not an IP address' });

const clusterMetadata = z.object({
  name: z.string().min(1),
  labels: stringMap.nullish(),
  annotations: stringMap.nullish(),
});

const namespacedMetadata = clusterMetadata.extend({
  namespace: z.string().min(1),
  deletionTimestamp: z.unknown().optional(),
  ownerReferences: z
    .array(z.object({ kind: z.string(), name: z.string(), controller: z.boolean().nullish() }))
    .nullish(),
});

/** `<namespace>/<name>`, or `<name>` for cluster-scoped objects. */
export interface ObjectRef {
  namespace?: string;
  name: string;
}

export function refKey(ref: ObjectRef): string {
  return ref.namespace ? `${ref.namespace}/${ref.name}` : ref.name;
}

/** The name and namespace of anything that looks like a Kubernetes object, for removals and problem reports. */
export function objectRef(object: unknown): ObjectRef | undefined {
  const metadata = (object as { metadata?: { name?: unknown; namespace?: unknown } } | null | undefined)?.metadata;
  if (typeof metadata?.name !== 'string' || metadata.name === '') return undefined;
  return typeof metadata.namespace === 'string' && metadata.namespace !== ''
    ? { namespace: metadata.namespace, name: metadata.name }
    : { name: metadata.name };
}

function parseWith<S extends z.ZodType, T>(schema: S, object: unknown, view: (data: z.output<S>) => T): Parsed<T> {
  const result = schema.safeParse(object);
  if (!result.success) return { ok: false, problems: issuesToProblems(result.error) };
  return { ok: true, value: view(result.data) };
}

export function issuesToProblems(error: z.ZodError): FieldProblem[] {
  return error.issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({ field: formatFieldPath([...issue.path, key]), message: 'unknown field' }))
      : [{ field: formatFieldPath(issue.path), message: issue.message }],
  );
}

// ---------------------------------------------------------------------------------------------
// Namespace and Node
// ---------------------------------------------------------------------------------------------

export interface NamespaceView {
  name: string;
  labels: Labels;
  annotations: Labels;
}

const namespaceSchema = z.object({ metadata: clusterMetadata });

export function parseNamespace(object: unknown): Parsed<NamespaceView> {
  return parseWith(namespaceSchema, object, ({ metadata }) => ({
    name: metadata.name,
    labels: metadata.labels ?? {},
    annotations: metadata.annotations ?? {},
  }));
}

export interface NodeView {
  name: string;
  labels: Labels;
}

const nodeSchema = z.object({ metadata: clusterMetadata });

export function parseNode(object: unknown): Parsed<NodeView> {
  return parseWith(nodeSchema, object, ({ metadata }) => ({ name: metadata.name, labels: metadata.labels ?? {} }));
}

// ---------------------------------------------------------------------------------------------
// Pod
// ---------------------------------------------------------------------------------------------

export interface PodView {
  namespace: string;
  name: string;
  labels: Labels;
  nodeName: string;
  serviceAccount: string;
  hostNetwork: boolean;
  phase: string;
  /** Every pod IP (dual stack: both families), primary first. */
  ips: string[];
  ready: boolean;
  deleting: boolean;
  /** Container port numbers by port name, for named Service targetPorts. */
  namedPorts: ReadonlyMap<string, number>;
  /** The controlling owner (or the first owner when none is marked controller). */
  owner?: { kind: string; name: string };
  /** `spec.hostname` and `spec.subdomain` (StatefulSet pods): DNS `<hostname>.<subdomain>.<ns>.svc.<domain>`. */
  hostname?: string;
  subdomain?: string;
}

const podSchema = z.object({
  metadata: namespacedMetadata,
  spec: z
    .object({
      nodeName: z.string().nullish(),
      serviceAccountName: z.string().nullish(),
      hostNetwork: z.boolean().nullish(),
      hostname: z.string().nullish(),
      subdomain: z.string().nullish(),
      containers: z
        .array(
          z.object({
            ports: z
              .array(z.object({ name: z.string().nullish(), containerPort: portNumber, protocol: z.string().nullish() }))
              .nullish(),
          }),
        )
        .nullish(),
    })
    .nullish(),
  status: z
    .object({
      phase: z.string().nullish(),
      podIP: z.union([z.literal(''), ipAddress]).nullish(),
      podIPs: z.array(z.object({ ip: ipAddress })).nullish(),
      conditions: z.array(z.object({ type: z.string(), status: z.string() })).nullish(),
    })
    .nullish(),
});

export function parsePod(object: unknown): Parsed<PodView> {
  return parseWith(podSchema, object, ({ metadata, spec, status }) => {
    const namedPorts = new Map<string, number>();
    for (const container of spec?.containers ?? []) {
      for (const port of container.ports ?? []) {
        const tcp = (port.protocol ?? 'TCP') === 'TCP';
        if (port.name && tcp && !namedPorts.has(port.name)) namedPorts.set(port.name, port.containerPort);
      }
    }
    const podIPs = (status?.podIPs ?? []).map((entry) => entry.ip);
    const owners = metadata.ownerReferences ?? [];
    const owner = owners.find((ref) => ref.controller) ?? owners[0];
    return {
      namespace: metadata.namespace,
      name: metadata.name,
      labels: metadata.labels ?? {},
      nodeName: spec?.nodeName ?? '',
      serviceAccount: spec?.serviceAccountName ?? '',
      hostNetwork: spec?.hostNetwork ?? false,
      phase: status?.phase ?? '',
      ips: podIPs.length > 0 ? podIPs : status?.podIP ? [status.podIP] : [],
      ready: (status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
      deleting: metadata.deletionTimestamp !== undefined && metadata.deletionTimestamp !== null,
      namedPorts,
      ...(owner ? { owner: { kind: owner.kind, name: owner.name } } : {}),
      ...(spec?.hostname ? { hostname: spec.hostname } : {}),
      ...(spec?.subdomain ? { subdomain: spec.subdomain } : {}),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------------------------

export interface ServicePortView {
  name: string;
  port: number;
  /** A number, a container port name, or undefined (then the service port). */
  targetPort: number | string | undefined;
  protocol: string;
  appProtocol: string;
}

export interface ServiceView {
  namespace: string;
  name: string;
  labels: Labels;
  annotations: Labels;
  type: string;
  clusterIPs: string[];
  /** Empty when the service selects no pods (no selector, or an empty one). */
  selector: Labels;
  ports: ServicePortView[];
  trafficDistribution: string;
  internalTrafficPolicy: string;
}

const clusterIp = z.string().refine((ip) => ip === '' || ip === 'None' || isIP(ip) !== 0, {
  message: 'not an IP address (nor "None")',
});

const serviceSchema = z.object({
  metadata: namespacedMetadata,
  spec: z
    .object({
      type: z.string().nullish(),
      clusterIP: clusterIp.nullish(),
      clusterIPs: z.array(clusterIp).nullish(),
      selector: stringMap.nullish(),
      ports: z
        .array(
          z.object({
            name: z.string().nullish(),
            port: portNumber,
            targetPort: z.union([portNumber, z.string().min(1)]).nullish(),
            protocol: z.string().nullish(),
            appProtocol: z.string().nullish(),
          }),
        )
        .nullish(),
      trafficDistribution: z.string().nullish(),
      internalTrafficPolicy: z.string().nullish(),
    })
    .nullish(),
});

export function parseService(object: unknown): Parsed<ServiceView> {
  return parseWith(serviceSchema, object, ({ metadata, spec }) => {
    const ips = spec?.clusterIPs?.length ? spec.clusterIPs : spec?.clusterIP ? [spec.clusterIP] : [];
    return {
      namespace: metadata.namespace,
      name: metadata.name,
      labels: metadata.labels ?? {},
      annotations: metadata.annotations ?? {},
      type: spec?.type ?? 'ClusterIP',
      clusterIPs: ips.filter((ip) => ip !== '' && ip !== 'None'),
      selector: spec?.selector ?? {},
      ports: (spec?.ports ?? []).map((port) => ({
        name: port.name ?? '',
        port: port.port,
        targetPort: numericString(port.targetPort ?? undefined),
        protocol: port.protocol ?? 'TCP',
        appProtocol: port.appProtocol ?? '',
      })),
      trafficDistribution: spec?.trafficDistribution ?? '',
      internalTrafficPolicy: spec?.internalTrafficPolicy ?? '',
    };
  });
}

/** IntOrString values arrive as strings from some clients; "8080" is a number, "http" a port name. */
function numericString(value: number | string | undefined): number | string | undefined {
  if (typeof value !== 'string' || !/^\d+$/.test(value)) return value;
  const port = Number(value);
  return port >= 1 && port <= 65535 ? port : value;
}

/** Whether a non-empty selector selects these labels (an empty selector selects nothing here). */
export function selects(selector: Labels, labels: Labels): boolean {
  let any = false;
  for (const [key, value] of Object.entries(selector)) {
    if (labels[key] !== value) return false;
    any = true;
  }
  return any;
}
