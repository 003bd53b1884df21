import { serviceHostname, serviceResourceName } from '../../api/resources.js';
import { objectRef, refKey } from '../registry/kube-objects.js';

/** A Service with this label set to `true` (in its own cluster) merges with the same Service of every cluster. */
export const GLOBAL_SERVICE_LABEL = 'istio.io/global';

/**
 * Which Services of one cluster are global, from the raw Service objects (the registry keeps only
 * the protobuf messages, which have no labels).
 */
export class GlobalServiceIndex {
  /** Service `<ns>/<name>` → its resource key `<ns>/<hostname>`, for global services only. */
  private readonly byObject = new Map<string, string>();
  private readonly keys = new Set<string>();

  constructor(private readonly domainSuffix: string) {}

  all(): ReadonlySet<string> {
    return this.keys;
  }

  /** Returns the keys whose global flag changed. */
  upsert(object: unknown): string[] {
    const ref = objectRef(object);
    if (!ref?.namespace) return [];
    const labels = (object as { metadata?: { labels?: unknown } }).metadata?.labels;
    const global = typeof labels === 'object' && labels !== null && (labels as Record<string, unknown>)[GLOBAL_SERVICE_LABEL] === 'true';
    return this.set(refKey(ref), global ? serviceResourceName(ref.namespace, serviceHostname(ref.name, ref.namespace, this.domainSuffix)) : undefined);
  }

  remove(object: unknown): string[] {
    const ref = objectRef(object);
    return ref?.namespace ? this.set(refKey(ref), undefined) : [];
  }

  private set(objectKey: string, serviceKey: string | undefined): string[] {
    const previous = this.byObject.get(objectKey);
    if (previous === serviceKey) return [];
    if (previous) {
      this.byObject.delete(objectKey);
      this.keys.delete(previous);
    }
    if (serviceKey) {
      this.byObject.set(objectKey, serviceKey);
      this.keys.add(serviceKey);
    }
    return [previous, serviceKey].filter((key): key is string => key !== undefined);
  }
}
