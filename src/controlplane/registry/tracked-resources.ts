import { equals, type DescMessage, type MessageShape } from '@bufbuild/protobuf';

export interface ResourceChanges {
  upserted: string[];
  removed: string[];
}

/**
 * Named xDS resources of one type. Writes that leave a message equal to the stored one keep the
 * stored object; `takeChanges` reports what really changed since the last call, comparing each
 * touched resource's state before the first write with its state now.
 */
export class TrackedResources<Desc extends DescMessage> {
  private readonly current = new Map<string, MessageShape<Desc>>();
  private readonly before = new Map<string, MessageShape<Desc> | undefined>();

  constructor(private readonly schema: Desc) {}

  get(name: string): MessageShape<Desc> | undefined {
    return this.current.get(name);
  }

  all(): ReadonlyMap<string, MessageShape<Desc>> {
    return this.current;
  }

  /** Stores the resource, or removes it when `value` is undefined. */
  set(name: string, value: MessageShape<Desc> | undefined): void {
    const existing = this.current.get(name);
    if (this.same(existing, value)) return;
    if (!this.before.has(name)) this.before.set(name, existing);
    if (value === undefined) this.current.delete(name);
    else this.current.set(name, value);
  }

  takeChanges(): ResourceChanges {
    const changes: ResourceChanges = { upserted: [], removed: [] };
    for (const [name, previous] of this.before) {
      const now = this.current.get(name);
      if (this.same(previous, now)) continue;
      if (now === undefined) changes.removed.push(name);
      else changes.upserted.push(name);
    }
    this.before.clear();
    return changes;
  }

  private same(a: MessageShape<Desc> | undefined, b: MessageShape<Desc> | undefined): boolean {
    if (a === undefined || b === undefined) return a === b;
    return a === b || equals(this.schema, a, b);
  }
}

/** key → set of members, e.g. namespace → pod keys. */
export class SetIndex {
  private readonly sets = new Map<string, Set<string>>();

  add(key: string, member: string): void {
    let set = this.sets.get(key);
    if (!set) this.sets.set(key, (set = new Set()));
    set.add(member);
  }

  delete(key: string, member: string): void {
    const set = this.sets.get(key);
    if (!set) return;
    set.delete(member);
    if (set.size === 0) this.sets.delete(key);
  }

  get(key: string): ReadonlySet<string> {
    return this.sets.get(key) ?? EMPTY;
  }
}

const EMPTY: ReadonlySet<string> = new Set();
