import { serviceHostname, serviceResourceName } from '../../api/resources.js';
import { objectRef, refKey } from '../registry/kube-objects.js';
import type { ServiceScopeConfig } from '../../api/mesh-config.js';
import { isGlobalService, type Labels } from './service-scope.js';

export { GLOBAL_SERVICE_LABEL } from './service-scope.js';

interface ServiceEntry {
  namespace: string;
  /** Its resource key `<ns>/<hostname>`. */
  serviceKey: string;
  labels: Labels;
  global: boolean;
}

/**
 * Which Services of one cluster are global (see service-scope.ts), from the raw Service and
 * Namespace objects (the registry keeps only the protobuf messages, which have no labels). Every
 * mutator returns the service keys whose global flag flipped, and only those.
 */
export class GlobalServiceIndex {
  /** Service `<ns>/<name>` → what decides its scope. */
  private readonly services = new Map<string, ServiceEntry>();
  /** Namespace → its Services' `<ns>/<name>`. */
  private readonly byNamespace = new Map<string, Set<string>>();
  /** Namespaces seen so far; a Service whose Namespace is not (yet) known is judged with no namespace labels. */
  private readonly namespaceLabels = new Map<string, Labels>();
  private readonly keys = new Set<string>();

  constructor(
    private readonly domainSuffix: string,
    private configs: readonly ServiceScopeConfig[] = [],
  ) {}

  all(): ReadonlySet<string> {
    return this.keys;
  }

  upsertService(object: unknown): string[] {
    const ref = objectRef(object);
    if (!ref?.namespace) return [];
    const objectKey = refKey(ref);
    const previous = this.services.get(objectKey);
    const entry: ServiceEntry = {
      namespace: ref.namespace,
      serviceKey: serviceResourceName(ref.namespace, serviceHostname(ref.name, ref.namespace, this.domainSuffix)),
      labels: labelsOf(object),
      global: false,
    };
    entry.global = this.judge(entry);
    this.services.set(objectKey, entry);
    let members = this.byNamespace.get(entry.namespace);
    if (!members) this.byNamespace.set(entry.namespace, (members = new Set()));
    members.add(objectKey);
    return this.flip(entry.serviceKey, previous?.global ?? false, entry.global);
  }

  removeService(object: unknown): string[] {
    const ref = objectRef(object);
    const objectKey = ref ? refKey(ref) : '';
    const entry = this.services.get(objectKey);
    if (!ref?.namespace || !entry) return [];
    this.services.delete(objectKey);
    const members = this.byNamespace.get(entry.namespace);
    members?.delete(objectKey);
    if (members?.size === 0) this.byNamespace.delete(entry.namespace);
    return this.flip(entry.serviceKey, entry.global, false);
  }

  /** A Namespace's labels matter to serviceScopeConfigs with a namespaceSelector. */
  upsertNamespace(object: unknown): string[] {
    const name = objectRef(object)?.name;
    if (!name) return [];
    const labels = labelsOf(object);
    if (JSON.stringify(labels) === JSON.stringify(this.namespaceLabels.get(name))) return [];
    this.namespaceLabels.set(name, labels);
    return this.rejudge(this.byNamespace.get(name) ?? []);
  }

  removeNamespace(object: unknown): string[] {
    const name = objectRef(object)?.name;
    if (!name || !this.namespaceLabels.delete(name)) return [];
    return this.rejudge(this.byNamespace.get(name) ?? []);
  }

  setConfigs(configs: readonly ServiceScopeConfig[]): string[] {
    this.configs = configs;
    return this.rejudge(this.services.keys());
  }

  private judge(entry: ServiceEntry): boolean {
    return isGlobalService(this.configs, this.namespaceLabels.get(entry.namespace) ?? {}, entry.labels);
  }

  private rejudge(objectKeys: Iterable<string>): string[] {
    const changed: string[] = [];
    for (const objectKey of objectKeys) {
      const entry = this.services.get(objectKey)!;
      const global = this.judge(entry);
      changed.push(...this.flip(entry.serviceKey, entry.global, global));
      entry.global = global;
    }
    return changed;
  }

  private flip(serviceKey: string, was: boolean, is: boolean): string[] {
    if (was === is) return [];
    if (is) this.keys.add(serviceKey);
    else this.keys.delete(serviceKey);
    return [serviceKey];
  }
}

/** String-valued labels of an object (anything else is not a label value). */
function labelsOf(object: unknown): Labels {
  const labels = (object as { metadata?: { labels?: unknown } }).metadata?.labels;
  if (typeof labels !== 'object' || labels === null) return {};
  return Object.fromEntries(Object.entries(labels).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
}
