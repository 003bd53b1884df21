/**
 * The shape of ambit's install values: one schema for a single layer (a values file, a flag, a
 * `--set`), where every field is optional, and the complete defaults the layers are merged onto.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DEFAULT_SYSTEM_NAMESPACE, DEFAULT_TRUST_DOMAIN } from '../api/resources.js';
import { serviceScopeConfigsSchema, type ServiceScopeConfig } from '../api/mesh-config.js';
import { parseDuration } from './duration.js';

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'latest';
  } catch {
    return 'latest';
  }
}

export const AMBIT_VERSION = packageVersion();
export const DEFAULT_IMAGE = `ambit/ambit:${AMBIT_VERSION}`;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
export type PullPolicy = (typeof PULL_POLICIES)[number];

export interface ResourceRequirements {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

export interface InstallValues {
  /** Cluster identity in the mesh (Istio's `global.multiCluster.clusterName`). */
  clusterName: string;
  /** Network of this cluster's pods (Istio's `global.network`); '' means unnamed. */
  network: string;
  meshId: string;
  trustDomain: string;
  systemNamespace: string;
  image: string;
  imagePullPolicy: PullPolicy;
  controlPlane: {
    replicas: number;
    logLevel: LogLevel;
    /** Durations as written (`24h`); parse with parseDuration. */
    workloadCertTtl: string;
    maxWorkloadCertTtl: string;
    resources: ResourceRequirements;
  };
  ztunnel: {
    logLevel: LogLevel;
    resources: ResourceRequirements;
  };
  /**
   * The `istio-ingressgateway` Deployment and LoadBalancer Service. Off unless asked for: Istio's
   * profiles `default`, `demo` and `ambient` turn it on (`--set profile=ambient`), as does
   * `ingressGateway.enabled=true`; an IstioOperator's `components.ingressGateways[0].enabled` decides last.
   */
  ingressGateway: {
    enabled: boolean;
    resources: ResourceRequirements;
  };
  /** Rendered into ConfigMap `istio` (key `mesh`), which the control plane watches. */
  meshConfig: {
    serviceScopeConfigs: ServiceScopeConfig[];
  };
}

/** Defaults, as Istio's where Istio has one (cluster name `Kubernetes`; mesh ID = trust domain, filled in at merge time). */
export function defaultValues(): InstallValues {
  return {
    clusterName: 'Kubernetes',
    network: '',
    meshId: DEFAULT_TRUST_DOMAIN,
    trustDomain: DEFAULT_TRUST_DOMAIN,
    systemNamespace: DEFAULT_SYSTEM_NAMESPACE,
    image: DEFAULT_IMAGE,
    imagePullPolicy: 'IfNotPresent',
    controlPlane: {
      replicas: 1,
      logLevel: 'info',
      workloadCertTtl: '24h',
      maxWorkloadCertTtl: '90d',
      resources: { requests: { cpu: '100m', memory: '256Mi' } },
    },
    ztunnel: {
      logLevel: 'info',
      resources: { requests: { cpu: '100m', memory: '128Mi' } },
    },
    ingressGateway: {
      enabled: false,
      resources: { requests: { cpu: '100m', memory: '128Mi' } },
    },
    meshConfig: { serviceScopeConfigs: [] },
  };
}

/** Numbers and booleans written where a string belongs (`network: 1`, `--set network=1`) are taken as text. */
const text = () =>
  z.preprocess(
    (v) => (typeof v === 'number' || typeof v === 'boolean' ? String(v) : v),
    z.string({ error: (issue) => `expected a string, got ${describe(issue.input)}` }),
  );

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return typeof value === 'string' ? `"${value}"` : `${typeof value} ${String(value)}`;
}

function matching(pattern: RegExp, expectation: string, maxLength?: number) {
  return text().superRefine((value, ctx) => {
    if (maxLength !== undefined && value.length > maxLength) ctx.addIssue({ code: 'custom', message: `${expectation} of at most ${maxLength} characters, got "${value}"` });
    else if (!pattern.test(value)) ctx.addIssue({ code: 'custom', message: `expected ${expectation}, got "${value}"` });
  });
}

const LABEL_VALUE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/** Cluster, network and mesh names end up in label values (`topology.istio.io/network`), so they follow label-value syntax. */
const labelValue = matching(LABEL_VALUE, 'a label value (letters, digits, "-", "_", ".", starting and ending with a letter or digit)', 63);
const optionalLabelValue = matching(/^$|^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, 'a label value (letters, digits, "-", "_", "."; may be empty)', 63);
const dnsLabel = matching(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a DNS label (lowercase letters, digits and "-")', 63);
const dnsName = matching(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'a DNS name such as cluster.local', 253);
const imageRef = matching(/^[A-Za-z0-9][A-Za-z0-9._\-/:@]*$/, 'a container image reference such as ambit/ambit:0.1.0');

const duration = text().superRefine((value, ctx) => {
  if (parseDuration(value) === undefined) ctx.addIssue({ code: 'custom', message: `expected a duration like 24h, got "${value}"` });
});

const quantity = matching(/^(\d+(\.\d*)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][-+]?\d+)?$/, 'a Kubernetes quantity such as 100m or 128Mi');
const resourceName = z.string().regex(/^[a-z0-9]([-a-z0-9./]*[a-z0-9])?$/, 'expected a resource name such as cpu or memory');
const resourceList = z.record(resourceName, quantity, { error: (issue) => `expected a mapping such as {cpu: 100m, memory: 128Mi}, got ${describe(issue.input)}` });
const resources = z.strictObject({ requests: resourceList.optional(), limits: resourceList.optional() }, { error: (issue) => `expected a mapping with requests and/or limits, got ${describe(issue.input)}` });

const logLevel = z.enum(LOG_LEVELS, { error: (issue) => `expected one of ${LOG_LEVELS.join(', ')}, got ${describe(issue.input)}` });
const pullPolicy = z.enum(PULL_POLICIES, { error: (issue) => `expected one of ${PULL_POLICIES.join(', ')}, got ${describe(issue.input)}` });
const replicas = z
  .number({ error: (issue) => `expected a whole number, got ${describe(issue.input)}` })
  .int('expected a whole number')
  .min(1, 'at least 1 replica is needed')
  .max(100, 'at most 100 replicas');

const flag = z.boolean({ error: (issue) => `expected true or false, got ${describe(issue.input)}` });

const mappingError = { error: (issue: { input: unknown }) => `expected a mapping, got ${describe(issue.input)}` };

/** One layer of values in ambit's own shape: every field optional, unknown keys rejected. */
export const valuesLayerSchema = z.strictObject(
  {
    clusterName: labelValue.optional(),
    network: optionalLabelValue.optional(),
    meshId: labelValue.optional(),
    trustDomain: dnsName.optional(),
    systemNamespace: dnsLabel.optional(),
    image: imageRef.optional(),
    imagePullPolicy: pullPolicy.optional(),
    controlPlane: z
      .strictObject(
        {
          replicas: replicas.optional(),
          logLevel: logLevel.optional(),
          workloadCertTtl: duration.optional(),
          maxWorkloadCertTtl: duration.optional(),
          resources: resources.optional(),
        },
        mappingError,
      )
      .optional(),
    ztunnel: z.strictObject({ logLevel: logLevel.optional(), resources: resources.optional() }, mappingError).optional(),
    ingressGateway: z.strictObject({ enabled: flag.optional(), resources: resources.optional() }, mappingError).optional(),
    meshConfig: z.strictObject({ serviceScopeConfigs: serviceScopeConfigsSchema.optional() }, mappingError).optional(),
  },
  mappingError,
);

export type ValuesLayerTree = z.infer<typeof valuesLayerSchema>;

/** Top-level keys of ambit's own shape. */
export const AMBIT_KEYS: readonly string[] = Object.keys(valuesLayerSchema.shape);

function unwrapOptional(schema: z.ZodType): z.ZodType {
  let current: z.ZodType = schema;
  while (current instanceof z.ZodOptional || current instanceof z.ZodNullable) current = current.unwrap() as z.ZodType;
  return current;
}

function objectOf(schema: z.ZodType): z.ZodObject | undefined {
  const current = unwrapOptional(schema);
  return current instanceof z.ZodObject ? current : undefined;
}

/** Keys ambit's shape accepts at `path` (for "unknown key" messages); list indexes step into the list's items. */
export function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let current: z.ZodType | undefined = valuesLayerSchema;
  for (const part of path) {
    const inner: z.ZodType | undefined = current ? unwrapOptional(current) : undefined;
    if (inner instanceof z.ZodArray) current = inner.element as z.ZodType;
    else current = (inner instanceof z.ZodObject ? inner.shape[String(part)] : undefined) as z.ZodType | undefined;
  }
  const object = current ? objectOf(current) : undefined;
  return object ? Object.keys(object.shape) : [];
}
