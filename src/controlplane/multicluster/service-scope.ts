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
import type { LabelSelector, ServiceScope, ServiceScopeConfig } from '../../api/mesh-config.js';

/** A Service with this label set to `true` is global unless a serviceScopeConfigs entry matches it. */
export const GLOBAL_SERVICE_LABEL = 'istio.io/global';

export type Labels = Readonly<Record<string, string>>;

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
