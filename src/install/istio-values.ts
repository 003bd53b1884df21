/**
 * Translates the Istio install settings users already write (Helm values of the istiod and
 * ztunnel charts, or an IstioOperator's `spec`) into ambit's values shape. Istio settings that
 * have no meaning in ambit are accepted with a note; anything else unknown is an error, so a typo
 * is never silently ignored.
 */
import { AMBIT_KEYS } from './values-schema.js';

export type Tree = Record<string, unknown>;

export const isMapping = (value: unknown): value is Tree => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Istio Helm value paths ambit understands → the ambit field each sets. */
const MAPPED: Record<string, readonly string[]> = {
  'global.meshID': ['meshId'],
  'global.multiCluster.clusterName': ['clusterName'],
  'global.network': ['network'],
  'global.istioNamespace': ['systemNamespace'],
  'global.imagePullPolicy': ['imagePullPolicy'],
  'meshConfig.trustDomain': ['trustDomain'],
  'meshConfig.serviceScopeConfigs': ['meshConfig', 'serviceScopeConfigs'],
  // Top-level keys of the ztunnel chart.
  'multiCluster.clusterName': ['clusterName'],
  logLevel: ['ztunnel', 'logLevel'],
};

/** Istio settings (and whole subtrees) accepted without effect; a value means a specific explanation. */
const IGNORED: Record<string, string | undefined> = {
  env: 'Istio feature flags do not apply to ambit',
  meshConfig: undefined,
  platforms: undefined,
  ambient: undefined,
  revision: undefined,
  revisionTags: undefined,
  defaultRevision: undefined,
  pilot: undefined,
  cni: undefined,
  istiodRemote: undefined,
  base: undefined,
  gateways: undefined,
  telemetry: undefined,
  sidecarInjectorWebhook: undefined,
  resourceScope: undefined,
  variant: undefined,
  hub: 'ambit runs its own image; set `image` instead',
  tag: 'ambit runs its own image; set `image` instead',
  'multiCluster.enabled': 'multicluster is always enabled in ambit',
  'global.hub': 'ambit runs its own image; set `image` instead',
  'global.tag': 'ambit runs its own image; set `image` instead',
  'global.variant': undefined,
  'global.multiCluster.enabled': 'multicluster is always enabled in ambit',
  'global.multiCluster.globalDomainSuffix': undefined,
  'global.multiCluster.includeEnvoyFilter': undefined,
  'global.nativeNftables': 'ztunnel always programs nftables',
  'global.platform': undefined,
  'global.externalIstiod': 'ambit runs one control plane per cluster, multi-primary',
  'global.remotePilotAddress': 'ambit runs one control plane per cluster, multi-primary',
  'global.configCluster': undefined,
  'global.pilotCertProvider': 'the control plane is always the CA',
  'global.caAddress': undefined,
  'global.proxy': undefined,
  'global.proxy_init': undefined,
  'global.logging': 'set controlPlane.logLevel / ztunnel.logLevel instead',
  'global.logAsJson': 'ambit always logs JSON',
  'global.jwtPolicy': undefined,
  'global.imagePullSecrets': undefined,
  'global.priorityClassName': undefined,
  'global.defaultResources': 'set controlPlane.resources / ztunnel.resources instead',
  'global.defaultNodeSelector': undefined,
  'global.defaultTolerations': undefined,
  'global.omitSidecarInjectorConfigMap': undefined,
  'global.operatorManageWebhooks': undefined,
  'global.istiod': undefined,
  'global.meshNetworks': 'networks come from the topology.istio.io/network label and east-west Gateways',
  'global.waypoint': undefined,
  'global.sts': undefined,
  'global.certSigners': undefined,
  'global.mountMtlsCerts': undefined,
  'global.ipFamilies': undefined,
  'global.ipFamilyPolicy': undefined,
  'global.trustBundleName': undefined,
};

/** IstioOperator `spec` fields that are not `values`/`meshConfig`/`profile`/`components`. */
const OPERATOR_IGNORED = new Set(['hub', 'tag', 'revision', 'installPackagePath', 'addonComponents']);

/** Istio's install profiles, and whether each installs the `istio-ingressgateway`. */
const PROFILE_INGRESS: Record<string, boolean> = {
  default: true,
  demo: true,
  ambient: true,
  minimal: false,
  empty: false,
  remote: false,
  preview: true,
  openshift: true,
  'openshift-ambient': true,
  stable: true,
};

export interface MappedLayer {
  /** The layer in ambit's shape (not yet validated). */
  tree: Tree;
  /** Istio settings accepted without effect. */
  notes: string[];
  /** Unknown keys and conflicts. */
  problems: string[];
  /** ambit path (`meshId`) → the key as the input wrote it (`global.meshID`), for messages. */
  inputKeys: ReadonlyMap<string, string>;
}

const isIntermediateOf = (path: string, table: Record<string, unknown>) => Object.keys(table).some((key) => key.startsWith(`${path}.`));
const ignoredEntry = (path: string): [string, string | undefined] | undefined => {
  for (const [key, why] of Object.entries(IGNORED)) if (path === key || path.startsWith(`${key}.`)) return [key, why];
  return undefined;
};

function leafPaths(value: unknown, path: string): string[] {
  if (!isMapping(value) || Object.keys(value).length === 0) return [path];
  return Object.entries(value).flatMap(([key, child]) => leafPaths(child, `${path}.${key}`));
}

/** Levenshtein distance (keys are short). */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

/** ` (did you mean "x"?)` when a candidate is close to `key`. */
export function suggestion(key: string, candidates: readonly string[]): string {
  const lower = key.toLowerCase();
  const best = candidates
    .map((c) => ({ c, d: c.toLowerCase() === lower ? 0 : distance(lower, c.toLowerCase()) }))
    .filter(({ c, d }) => d <= Math.max(1, Math.min(2, Math.floor(c.length / 3))))
    .sort((a, b) => a.d - b.d)[0];
  return best ? ` (did you mean "${best.c}"?)` : '';
}

class LayerBuilder {
  readonly tree: Tree = {};
  readonly notes: string[] = [];
  readonly problems: string[] = [];
  /** Which input key set each ambit leaf, to report conflicts and name fields in messages. */
  readonly setBy = new Map<string, string>();

  constructor(private readonly source: string) {}

  problem(path: string, message: string): void {
    this.problems.push(`${this.source}: ${path}: ${message}`);
  }

  /** `hint` is a suggestion(): a near miss of a key ambit reads (meshConfig.serviceScopeConfig) must not pass unnoticed. */
  note(path: string, why: string | undefined, hint = ''): void {
    this.notes.push(`${this.source}: ${path}: Istio setting with no effect in ambit, ignored${why ? ` (${why})` : ''}${hint}`);
  }

  /** Sets `target` (an ambit path) from input key `from`; a different value already set is a conflict. */
  assign(target: readonly string[], value: unknown, from: string): void {
    const key = target.join('.');
    if (!isMapping(value)) return this.assignLeaf(target, value, key, from);
    if (Object.keys(value).length === 0 && this.nodeAt(target) === undefined) this.assignLeaf(target, {}, key, from);
    for (const [child, childValue] of Object.entries(value)) {
      if (childValue !== null && childValue !== undefined) this.assign([...target, child], childValue, `${from}.${child}`);
    }
  }

  /** Sets `target` from `from` over whatever this layer set there before (a component over its profile). */
  override(target: readonly string[], value: unknown, from: string): void {
    this.setBy.delete(target.join('.'));
    this.assignLeaf(target, value, target.join('.'), from);
  }

  private nodeAt(target: readonly string[]): unknown {
    let node: unknown = this.tree;
    for (const part of target) node = isMapping(node) ? node[part] : undefined;
    return node;
  }

  private assignLeaf(target: readonly string[], value: unknown, key: string, from: string): void {
    let node = this.tree;
    for (const part of target.slice(0, -1)) {
      const next = node[part];
      if (next !== undefined && !isMapping(next)) return this.problem(from, `conflicts with ${this.setBy.get(part) ?? part}`);
      node = (node[part] ??= {}) as Tree;
    }
    const leaf = target[target.length - 1]!;
    const previous = this.setBy.get(key);
    if (previous !== undefined && JSON.stringify(node[leaf]) !== JSON.stringify(value)) {
      return this.problem(from, `${JSON.stringify(value)} conflicts with ${previous}: ${JSON.stringify(node[leaf])}`);
    }
    node[leaf] = value;
    this.setBy.set(key, from);
  }
}

/**
 * Walks Helm-style values. `path` is the Helm path (what the tables above are keyed by); `display`
 * is how the key is named in messages (differs inside an IstioOperator, under `spec.values`).
 */
function walkHelm(builder: LayerBuilder, doc: Tree, path: string, display: string): void {
  for (const [key, value] of Object.entries(doc)) {
    if (value === null || value === undefined) continue;
    const full = path ? `${path}.${key}` : key;
    const shown = display ? `${display}.${key}` : key;
    const target = MAPPED[full];
    if (full === 'profile') {
      applyProfile(builder, value, shown);
    } else if (target) {
      builder.assign(target, value, shown);
    } else if (isIntermediateOf(full, MAPPED)) {
      if (isMapping(value)) walkHelm(builder, value, full, shown);
      else builder.problem(shown, 'expected a mapping');
    } else if (ignoredEntry(full)) {
      const hint = suggestion(key, mappedKeysBelow(path));
      for (const leaf of leafPaths(value, shown)) builder.note(leaf, ignoredEntry(full)![1], hint);
    } else if (isIntermediateOf(full, IGNORED)) {
      if (isMapping(value)) walkHelm(builder, value, full, shown);
      else builder.problem(shown, 'expected a mapping');
    } else if (!path && AMBIT_KEYS.includes(key)) {
      builder.assign([key], value, shown);
    } else {
      builder.problem(shown, `unknown key${suggestion(key, candidatesAt(path))}`);
    }
  }
}

/** Keys of MAPPED directly below `path` (`serviceScopeConfigs` below `meshConfig`). */
function mappedKeysBelow(path: string): string[] {
  const prefix = path ? `${path}.` : '';
  return Object.keys(MAPPED)
    .filter((key) => key.startsWith(prefix))
    .map((key) => key.slice(prefix.length).split('.')[0]!);
}

function candidatesAt(path: string): string[] {
  const prefix = path ? `${path}.` : '';
  const below = [...Object.keys(MAPPED), ...Object.keys(IGNORED)]
    .filter((k) => k.startsWith(prefix))
    .map((k) => k.slice(prefix.length).split('.')[0]!);
  return [...new Set([...(path ? [] : AMBIT_KEYS), ...below])];
}

/** A profile decides whether the ingress gateway is installed; unknown profiles are an error. */
function applyProfile(builder: LayerBuilder, value: unknown, shown: string): void {
  const ingress = typeof value === 'string' ? PROFILE_INGRESS[value] : undefined;
  if (ingress === undefined) {
    builder.problem(shown, `unknown profile ${JSON.stringify(value)}${suggestion(String(value), Object.keys(PROFILE_INGRESS))}; expected one of: ${Object.keys(PROFILE_INGRESS).join(', ')}`);
    return;
  }
  builder.assign(['ingressGateway', 'enabled'], ingress, shown);
}

/**
 * IstioOperator `components`: `ingressGateways[0].enabled` turns the ingress gateway on or off
 * (over the profile); the rest is accepted without effect.
 */
function applyComponents(builder: LayerBuilder, value: unknown, shown: string): void {
  if (!isMapping(value)) return builder.problem(shown, 'expected a mapping');
  for (const [component, settings] of Object.entries(value)) {
    if (component !== 'ingressGateways') {
      for (const leaf of leafPaths(settings, `${shown}.${component}`)) builder.note(leaf, undefined);
      continue;
    }
    if (!Array.isArray(settings)) {
      builder.problem(`${shown}.ingressGateways`, 'expected a list');
      continue;
    }
    settings.forEach((gateway: unknown, index) => {
      const at = `${shown}.ingressGateways[${index}]`;
      if (!isMapping(gateway)) return builder.problem(at, 'expected a mapping');
      for (const [key, field] of Object.entries(gateway)) {
        if (index === 0 && key === 'enabled') {
          if (typeof field !== 'boolean') builder.problem(`${at}.enabled`, `expected true or false, got ${JSON.stringify(field)}`);
          else builder.override(['ingressGateway', 'enabled'], field, `${at}.enabled`);
        } else if (!(index === 0 && key === 'name' && field === 'istio-ingressgateway')) {
          for (const leaf of leafPaths(field, `${at}.${key}`)) builder.note(leaf, index === 0 ? undefined : 'ambit installs one ingress gateway');
        }
      }
    });
  }
}

function walkOperator(builder: LayerBuilder, doc: Tree): void {
  for (const [key, value] of Object.entries(doc)) {
    if (key === 'apiVersion' || key === 'kind' || key === 'metadata') continue;
    if (key !== 'spec') {
      builder.problem(key, 'unknown key in an IstioOperator (expected apiVersion, kind, metadata, spec)');
      continue;
    }
    if (!isMapping(value)) {
      builder.problem('spec', 'expected a mapping');
      continue;
    }
    const deferred: Array<() => void> = [];
    for (const [field, fieldValue] of Object.entries(value)) {
      if (fieldValue === null || fieldValue === undefined) continue;
      const shown = `spec.${field}`;
      if (field === 'values') {
        if (isMapping(fieldValue)) walkHelm(builder, fieldValue, '', shown);
        else builder.problem(shown, 'expected a mapping');
      } else if (field === 'meshConfig') {
        walkHelm(builder, { meshConfig: fieldValue }, '', 'spec');
      } else if (field === 'namespace') {
        builder.assign(['systemNamespace'], fieldValue, shown);
      } else if (field === 'profile') {
        applyProfile(builder, fieldValue, shown);
      } else if (field === 'components') {
        deferred.push(() => applyComponents(builder, fieldValue, shown));
      } else if (OPERATOR_IGNORED.has(field)) {
        for (const leaf of leafPaths(fieldValue, shown)) builder.note(leaf, undefined);
      } else {
        builder.problem(shown, `unknown IstioOperator field${suggestion(field, ['values', 'meshConfig', 'namespace', 'profile', 'components', ...OPERATOR_IGNORED])}`);
      }
    }
    // Components decide over the profile, whatever order the document lists them in.
    for (const apply of deferred) apply();
  }
}

/**
 * Maps one document (a values file or a `--set` tree) to ambit's shape. ambit's own keys pass
 * through unchanged; Istio keys are translated.
 */
export function mapToAmbitShape(doc: Tree, source: string): MappedLayer {
  const builder = new LayerBuilder(source);
  if (doc.kind === 'IstioOperator') walkOperator(builder, doc);
  else walkHelm(builder, doc, '', '');
  return { tree: builder.tree, notes: builder.notes, problems: builder.problems, inputKeys: builder.setBy };
}
