/**
 * Loading install values: defaults < values files (in order) < flags < `--set` (in order). Each
 * layer is validated on its own so every error names where it came from (file, flag or --set)
 * and the field.
 */
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import { formatDuration, parseDuration } from './duration.js';
import { isMapping, mapToAmbitShape, suggestion, type Tree } from './istio-values.js';
import { defaultValues, knownKeysAt, valuesLayerSchema, type InstallValues } from './values-schema.js';

export { AMBIT_VERSION, DEFAULT_IMAGE, defaultValues, LOG_LEVELS, PULL_POLICIES } from './values-schema.js';
export type { InstallValues, LogLevel, PullPolicy, ResourceRequirements } from './values-schema.js';

export class ValuesError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? `invalid install values: ${problems[0]}` : `invalid install values:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** One source of values: a parsed document and where it came from (a file name, a flag, `--set`). */
export interface ValuesLayer {
  source: string;
  doc: unknown;
}

export interface ValueFlags {
  clusterName?: string;
  network?: string;
  meshId?: string;
  trustDomain?: string;
}

export interface ValueSources {
  /** Values files (YAML or JSON; `-` is standard input), later files win. */
  files?: string[];
  flags?: ValueFlags;
  /** `key=value` assignments, later ones win. */
  set?: string[];
}

export interface ResolvedValues {
  values: InstallValues;
  /** Istio settings that were accepted but have no effect: worth telling the user. */
  notes: string[];
}

/** Parses a values file's text (one YAML or JSON document). */
export function parseValuesText(text: string, source: string): ValuesLayer {
  const docs = parseAllDocuments(text, { prettyErrors: true });
  if (!Array.isArray(docs)) return { source, doc: {} };
  const problems: string[] = [];
  for (const doc of docs) for (const error of doc.errors) problems.push(`${source}: not valid YAML: ${error.message}`);
  if (problems.length) throw new ValuesError(problems);
  const nonEmpty = docs.filter((d) => d.contents !== null);
  if (nonEmpty.length > 1) throw new ValuesError([`${source}: holds ${nonEmpty.length} YAML documents; a values file holds one`]);
  return { source, doc: nonEmpty[0]?.toJS() ?? {} };
}

export function readValuesFile(path: string): ValuesLayer {
  const source = path === '-' ? '<stdin>' : path;
  let text: string;
  try {
    text = readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    throw new ValuesError([`${source}: cannot read the values file: ${(err as Error).message}`]);
  }
  return parseValuesText(text, source);
}

/** `--set` values: whole numbers and true/false are typed (string fields accept them as text). */
function scalar(raw: string): string | number | boolean {
  if (/^-?\d+$/.test(raw) && Number.isSafeInteger(Number(raw))) return Number(raw);
  if (raw === 'true' || raw === 'false') return raw === 'true';
  return raw;
}

/** Turns `key.path=value` assignments into layers; istioctl's `values.`/`spec.values.` prefixes are accepted. */
export function setLayers(assignments: readonly string[]): ValuesLayer[] {
  const problems: string[] = [];
  const layers: ValuesLayer[] = [];
  for (const assignment of assignments) {
    const eq = assignment.indexOf('=');
    const key = eq > 0 ? assignment.slice(0, eq).trim().replace(/^(spec\.)?values\./, '') : '';
    const parts = key.split('.');
    if (!key || parts.some((p) => p === '')) {
      problems.push(`--set ${assignment}: expected key=value with a dotted key, such as --set controlPlane.replicas=2`);
      continue;
    }
    if (/[[\]]/.test(key)) {
      problems.push(`--set ${assignment}: list items cannot be set one by one; put the whole list in a values file (-f)`);
      continue;
    }
    const doc: Tree = {};
    let node = doc;
    for (const part of parts.slice(0, -1)) node = node[part] = {} as Tree;
    node[parts[parts.length - 1]!] = scalar(assignment.slice(eq + 1));
    layers.push({ source: '--set', doc });
  }
  if (problems.length) throw new ValuesError(problems);
  return layers;
}

const FLAG_NAMES: Record<keyof ValueFlags, string> = {
  clusterName: '--cluster-name',
  network: '--network',
  meshId: '--mesh-id',
  trustDomain: '--trust-domain',
};

export function flagLayers(flags: ValueFlags): ValuesLayer[] {
  return (Object.keys(FLAG_NAMES) as Array<keyof ValueFlags>)
    .filter((key) => flags[key] !== undefined)
    .map((key) => ({ source: FLAG_NAMES[key], doc: { [key]: flags[key] } }));
}

function describeIssue(issue: z.core.$ZodIssue, source: string, inputKeys: ReadonlyMap<string, string>): string[] {
  // Named as the input wrote it; inside a list (set as one value) the rest reads `[0].scope`.
  const shown = (path: readonly PropertyKey[]) => {
    for (let length = path.length; length > 0; length--) {
      const input = inputKeys.get(path.slice(0, length).map(String).join('.'));
      if (input !== undefined) return input + path.slice(length).map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`)).join('');
    }
    return path.map(String).join('.') || '(top level)';
  };
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(issue.path);
    return issue.keys.map((key) => `${source}: ${shown([...issue.path, key])}: unknown key${suggestion(key, known)}; expected one of: ${known.join(', ')}`);
  }
  return [`${source}: ${shown(issue.path)}: ${issue.message}`];
}

/** Merges a validated layer onto `target`, recording which source set each leaf. */
function mergeLayer(target: Tree, layer: Tree, source: string, origins: Map<string, string>, prefix = ''): void {
  for (const [key, value] of Object.entries(layer)) {
    if (value === undefined) continue;
    const path = prefix ? `${prefix}.${key}` : key;
    const existing = target[key];
    if (isMapping(value) && isMapping(existing)) {
      mergeLayer(existing, value, source, origins, path);
    } else {
      target[key] = structuredClone(value);
      origins.set(path, source);
    }
  }
}

function crossFieldProblems(values: InstallValues, origins: ReadonlyMap<string, string>): string[] {
  const from = (path: string) => origins.get(path) ?? 'defaults';
  const ttl = parseDuration(values.controlPlane.workloadCertTtl)!;
  const max = parseDuration(values.controlPlane.maxWorkloadCertTtl)!;
  if (ttl <= max) return [];
  return [
    `${from('controlPlane.workloadCertTtl')}: controlPlane.workloadCertTtl: ${formatDuration(ttl)} is longer than controlPlane.maxWorkloadCertTtl ` +
      `${formatDuration(max)} (set by ${from('controlPlane.maxWorkloadCertTtl')})`,
  ];
}

/** Merges layers onto the defaults, in order; throws a ValuesError listing every problem. */
export function resolveValues(layers: readonly ValuesLayer[]): ResolvedValues {
  const values = defaultValues();
  const tree = values as unknown as Tree;
  const origins = new Map<string, string>();
  const problems: string[] = [];
  const notes: string[] = [];
  for (const layer of layers) {
    if (!isMapping(layer.doc)) {
      problems.push(`${layer.source}: expected a mapping of values at the top level`);
      continue;
    }
    const mapped = mapToAmbitShape(layer.doc, layer.source);
    notes.push(...mapped.notes);
    problems.push(...mapped.problems);
    const parsed = valuesLayerSchema.safeParse(mapped.tree);
    if (!parsed.success) {
      problems.push(...parsed.error.issues.flatMap((issue) => describeIssue(issue, layer.source, mapped.inputKeys)));
      continue;
    }
    mergeLayer(tree, parsed.data as Tree, layer.source, origins);
  }
  if (problems.length) throw new ValuesError(problems);
  // As in Istio: the mesh ID defaults to the trust domain.
  if (!origins.has('meshId')) values.meshId = values.trustDomain;
  const crossProblems = crossFieldProblems(values, origins);
  if (crossProblems.length) throw new ValuesError(crossProblems);
  return { values, notes };
}

/** Reads files, then applies flags and `--set`, in that order of precedence. */
export function loadValues(sources: ValueSources = {}): ResolvedValues {
  const problems: string[] = [];
  const layers: ValuesLayer[] = [];
  for (const file of sources.files ?? []) {
    try {
      layers.push(readValuesFile(file));
    } catch (err) {
      if (!(err instanceof ValuesError)) throw err;
      problems.push(...err.problems);
    }
  }
  layers.push(...flagLayers(sources.flags ?? {}));
  try {
    layers.push(...setLayers(sources.set ?? []));
  } catch (err) {
    if (!(err instanceof ValuesError)) throw err;
    problems.push(...err.problems);
  }
  if (!problems.length) return resolveValues(layers);
  try {
    resolveValues(layers);
  } catch (err) {
    if (!(err instanceof ValuesError)) throw err;
    problems.push(...err.problems);
  }
  throw new ValuesError(problems);
}
