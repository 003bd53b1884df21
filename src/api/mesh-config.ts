/**
 * The MeshConfig that ambit reads (the `mesh` key of ConfigMap `istio` in the system namespace, as
 * istiod reads it), its schema and parser: shared by the control plane (which watches it) and the
 * installer (which writes it from `meshConfig` values).
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/** ConfigMap (in the system namespace) and key holding the MeshConfig YAML, as istiod reads it. */
export const MESH_CONFIG_MAP = 'istio';
export const MESH_CONFIG_KEY = 'mesh';

export const SERVICE_SCOPES = ['LOCAL', 'GLOBAL'] as const;
export type ServiceScope = (typeof SERVICE_SCOPES)[number];
export const SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

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
