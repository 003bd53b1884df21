import type { Logger } from '../../util/log.js';

/** Something wrong with one field of one object, e.g. `spec.rules[0].from[1].source.ipBlocks[0]`. */
export interface FieldProblem {
  field: string;
  message: string;
}

/** A problem as reported to users: `object` is `<Kind> <namespace>/<name>` (or `<Kind> <name>`). */
export interface Problem extends FieldProblem {
  object: string;
}

/**
 * The current problems of every object, keyed by object and by aspect: an object's shape (`object`,
 * replaced on each upsert) and values derived later (e.g. `settings`, re-evaluated when a namespace
 * default changes) are tracked apart, so re-evaluating one does not hide the other. Replacing
 * problems logs them only when they differ from the ones recorded, so resyncs do not repeat logs.
 */
export class ProblemLog {
  private readonly byObject = new Map<string, Map<string, readonly FieldProblem[]>>();

  constructor(private readonly log: Logger) {}

  set(object: string, problems: readonly FieldProblem[], aspect = 'object'): void {
    const aspects = this.byObject.get(object);
    const previous = aspects?.get(aspect);
    if (problems.length === 0) {
      if (!previous) return;
      aspects!.delete(aspect);
      if (aspects!.size === 0) this.byObject.delete(object);
      this.log.info({ object }, 'object problems resolved');
      return;
    }
    if (previous && sameProblems(previous, problems)) return;
    if (aspects) aspects.set(aspect, [...problems]);
    else this.byObject.set(object, new Map([[aspect, [...problems]]]));
    for (const problem of problems) this.log.warn({ object, field: problem.field }, problem.message);
  }

  /** Forgets every problem of the object (it was removed). */
  clear(object: string): void {
    this.byObject.delete(object);
  }

  list(): Problem[] {
    return [...this.byObject].flatMap(([object, aspects]) =>
      [...aspects.values()].flatMap((problems) => problems.map((p) => ({ object, ...p }))),
    );
  }
}

function sameProblems(a: readonly FieldProblem[], b: readonly FieldProblem[]): boolean {
  return a.length === b.length && a.every((p, i) => p.field === b[i]!.field && p.message === b[i]!.message);
}

/** `spec.rules[0].from[1]` from a path as zod reports it. */
export function formatFieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (typeof part === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(part)) out += out ? `.${part}` : part;
    else out += `[${JSON.stringify(String(part))}]`;
  }
  return out || '(object)';
}
