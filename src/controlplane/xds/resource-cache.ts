import { createHash } from 'node:crypto';

/** A serialized resource as it goes on the wire, with a content-derived version. */
export interface VersionedResource {
  name: string;
  version: string;
  typeUrl: string;
  value: Uint8Array;
}

const NONE: ReadonlyMap<string, VersionedResource> = new Map();

export type ChangeListener = (typeUrl: string, names: ReadonlySet<string>) => void;

export interface ResourceCacheOptions {
  /** Quiet time before a batch of changes is pushed. */
  debounceMs?: number;
  /** Longest a change waits while events keep arriving. */
  maxDelayMs?: number;
}

/**
 * The control plane's serialized view of every resource type, versioned by content hash so a
 * reconnecting client's `initial_resource_versions` tells exactly what it already has.
 * Changes are coalesced into batches, as istiod debounces pushes.
 */
export class ResourceCache {
  private readonly resources = new Map<string, Map<string, VersionedResource>>();
  private readonly listeners = new Set<ChangeListener>();
  private readonly pending = new Map<string, Set<string>>();
  private timer?: NodeJS.Timeout;
  private firstPendingAt = 0;
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;

  constructor(options: ResourceCacheOptions = {}) {
    this.debounceMs = options.debounceMs ?? 20;
    this.maxDelayMs = options.maxDelayMs ?? 100;
  }

  set(typeUrl: string, name: string, value: Uint8Array): void {
    const version = createHash('sha256').update(value).digest('base64url').slice(0, 16);
    const ofType = this.ofType(typeUrl);
    if (ofType.get(name)?.version === version) return;
    ofType.set(name, { name, version, typeUrl, value });
    this.markChanged(typeUrl, name);
  }

  delete(typeUrl: string, name: string): void {
    if (this.resources.get(typeUrl)?.delete(name)) this.markChanged(typeUrl, name);
  }

  get(typeUrl: string, name: string): VersionedResource | undefined {
    return this.resources.get(typeUrl)?.get(name);
  }

  /** Every resource of a type; asking about a type never seen creates nothing. */
  all(typeUrl: string): ReadonlyMap<string, VersionedResource> {
    return this.resources.get(typeUrl) ?? NONE;
  }

  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Delivers pending changes now (tests, shutdown). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batches = [...this.pending];
    this.pending.clear();
    for (const [typeUrl, names] of batches) for (const listener of this.listeners) listener(typeUrl, names);
  }

  private ofType(typeUrl: string): Map<string, VersionedResource> {
    let ofType = this.resources.get(typeUrl);
    if (!ofType) this.resources.set(typeUrl, (ofType = new Map()));
    return ofType;
  }

  private markChanged(typeUrl: string, name: string): void {
    let names = this.pending.get(typeUrl);
    if (!names) this.pending.set(typeUrl, (names = new Set()));
    names.add(name);
    const now = Date.now();
    if (!this.timer) this.firstPendingAt = now;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.debounceMs, this.firstPendingAt + this.maxDelayMs - now));
    this.timer = setTimeout(() => this.flush(), wait);
  }
}
