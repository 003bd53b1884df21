/**
 * Istio's MeshConfig `serviceScopeConfigs` (alpha in Istio 1.27): which Services are global, that
 * is merged with the same name/namespace of every cluster, and which stay local.
 *
 * A Service is global when the LAST entry whose selectors both match it says GLOBAL. A missing
 * selector matches everything; `namespaceSelector` is matched against the labels of the
 * Service's Namespace (in the Service's own cluster), `servicesSelector` against the Service's
 * labels. An entry without `scope` means LOCAL (the protobuf default), and a matching LOCAL entry
 * keeps a Service local even when it carries `istio.io/global=true`. When no entry matches, the
 * label decides (ambit's behaviour before serviceScopeConfigs). The local cluster's mesh config
 * applies to the Services of every cluster, remote ones included, as in Istio.
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/** A Service with this label set to `true` is global unless a serviceScopeConfigs entry matches it. */
export const GLOBAL_SERVICE_LABEL = 'istio.io/global';

/** ConfigMap (in the system namespace) and key holding the MeshConfig YAML, as istiod reads it. */
export const MESH_CONFIG_MAP = 'istio';
export const MESH_CONFIG_KEY = 'mesh';

export const SERVICE_SCOPES = ['LOCAL', 'GLOBAL'] as const;
export type ServiceScope = (typeof SERVICE_SCOPES)[number];
export const SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

export type Labels = Readonly<Record<string, string>>;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return typeof value === 'string' ? `"${value}"` : `${typeof value} ${String(value)}`;
}

/** A strict mapping whose unknown keys are named with the keys it accepts (a typo must not be ignored). */
function mapping<Shape extends z.core.$ZodLooseShape>(shape: Shape) {
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown key ${issue.keys.map((key) => `"${key}"`).join(', ')}; expected one of: ${Object.keys(shape).join(', ')}`
        : `expected a mapping, got ${describe(issue.input)}`,
  });
}

const label = z.string({ error: (issue) => `expected a string, got ${describe(issue.input)}` });

const selectorRequirement = mapping({
  key: label.min(1, 'expected a label key'),
  operator: z.enum(SELECTOR_OPERATORS, { error: (issue) => `expected one of ${SELECTOR_OPERATORS.join(', ')}, got ${describe(issue.input)}` }),
  values: z.array(label, { error: (issue) => `expected a list of strings, got ${describe(issue.input)}` }).nullish(),
}).superRefine((requirement, ctx) => {
  const count = requirement.values?.length ?? 0;
  const needsValues = requirement.operator === 'In' || requirement.operator === 'NotIn';
  if (needsValues && count === 0) ctx.addIssue({ code: 'custom', path: ['values'], message: `operator ${requirement.operator} needs at least one value` });
  if (!needsValues && count > 0) ctx.addIssue({ code: 'custom', path: ['values'], message: `operator ${requirement.operator} takes no values` });
});

/** The Kubernetes LabelSelector; `null` fields (a bare `key:` in YAML) count as absent. */
export const labelSelectorSchema = mapping({
  matchLabels: z.record(z.string(), label, { error: (issue) => `expected a mapping of label values, got ${describe(issue.input)}` }).nullish(),
  matchExpressions: z.array(selectorRequirement, { error: (issue) => `expected a list, got ${describe(issue.input)}` }).nullish(),
});

export const serviceScopeConfigSchema = mapping({
  namespaceSelector: labelSelectorSchema.nullish(),
  servicesSelector: labelSelectorSchema.nullish(),
  scope: z.enum(SERVICE_SCOPES, { error: (issue) => `expected LOCAL or GLOBAL, got ${describe(issue.input)}` }).nullish(),
});

export const serviceScopeConfigsSchema = z.array(serviceScopeConfigSchema, {
  error: (issue) => `expected a list of {namespaceSelector, servicesSelector, scope}, got ${describe(issue.input)}`,
});

export type LabelSelector = z.infer<typeof labelSelectorSchema>;
export type ServiceScopeConfig = z.infer<typeof serviceScopeConfigSchema>;

/** Kubernetes semantics: every matchLabels pair and every expression must hold; an absent selector matches everything. */
export function labelSelectorMatches(selector: LabelSelector | null | undefined, labels: Labels): boolean {
  if (!selector) return true;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const { key, operator, values } of selector.matchExpressions ?? []) {
    const present = Object.hasOwn(labels, key);
    const listed = present && (values ?? []).includes(labels[key]!);
    const holds = operator === 'In' ? listed : operator === 'NotIn' ? !listed : operator === 'Exists' ? present : !present;
    if (!holds) return false;
  }
  return true;
}

/** The scope the last matching entry gives, or undefined when none matches. */
export function serviceScope(configs: readonly ServiceScopeConfig[], namespaceLabels: Labels, serviceLabels: Labels): ServiceScope | undefined {
  let scope: ServiceScope | undefined;
  for (const config of configs) {
    if (labelSelectorMatches(config.namespaceSelector, namespaceLabels) && labelSelectorMatches(config.servicesSelector, serviceLabels)) {
      scope = config.scope ?? 'LOCAL';
    }
  }
  return scope;
}

export function isGlobalService(configs: readonly ServiceScopeConfig[], namespaceLabels: Labels, serviceLabels: Labels): boolean {
  const scope = serviceScope(configs, namespaceLabels, serviceLabels);
  return scope === undefined ? serviceLabels[GLOBAL_SERVICE_LABEL] === 'true' : scope === 'GLOBAL';
}

/** `serviceScopeConfigs[0].scope` from a zod path. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i ? '.' : ''}${String(part)}`)).join('');
}

export class MeshConfigError extends Error {}

/**
 * The parts of a MeshConfig (the `mesh` key of ConfigMap `istio`) that ambit reads. Other MeshConfig
 * fields are ignored: istiod's ConfigMaps carry many that mean nothing here.
 */
export function parseMeshConfig(text: string): { serviceScopeConfigs: ServiceScopeConfig[] } {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new MeshConfigError(`not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return { serviceScopeConfigs: [] };
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new MeshConfigError(`expected a mapping, got ${describe(doc)}`);
  const raw = (doc as Record<string, unknown>).serviceScopeConfigs;
  if (raw === null || raw === undefined) return { serviceScopeConfigs: [] };
  const parsed = serviceScopeConfigsSchema.safeParse(raw);
  if (!parsed.success) {
    throw new MeshConfigError(parsed.error.issues.map((issue) => `${formatPath(['serviceScopeConfigs', ...issue.path])}: ${issue.message}`).join('; '));
  }
  return { serviceScopeConfigs: parsed.data };
}

/**
 * The mesh-wide serviceScopeConfigs in force (from the local cluster's mesh config), shared by the
 * views of every cluster. Listeners run synchronously after the configs change.
 */
export class ServiceScopePolicy {
  private current: readonly ServiceScopeConfig[];
  private readonly listeners = new Set<(configs: readonly ServiceScopeConfig[]) => void>();

  constructor(configs: readonly ServiceScopeConfig[] = []) {
    this.current = configs;
  }

  configs(): readonly ServiceScopeConfig[] {
    return this.current;
  }

  /** Returns whether anything changed. */
  set(configs: readonly ServiceScopeConfig[]): boolean {
    if (JSON.stringify(configs) === JSON.stringify(this.current)) return false;
    this.current = configs;
    for (const listener of [...this.listeners]) listener(configs);
    return true;
  }

  onChange(listener: (configs: readonly ServiceScopeConfig[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
