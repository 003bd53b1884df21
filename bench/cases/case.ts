import type { OpenPath, PathContext } from '../paths/path.js';
import type { CaseId, CaseResult, CaseRow } from '../report/types.js';

export interface CaseContext {
  quick: boolean;
  /** The paths to measure, open and probed, in report order. */
  paths: OpenPath[];
  workDir: string;
  /** What the paths were opened with: a case that opens a path of its own (waypoint: HAProxy in mode http) uses it too. */
  pathContext: PathContext;
  log: (line: string) => void;
  /** True once the run was interrupted: measure nothing more. */
  stopped: () => boolean;
}

export interface BenchCase {
  id: CaseId;
  title: string;
  run(context: CaseContext): Promise<CaseResult>;
}

export const errorMessage = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Runs `measure` for one path; a failure becomes an error row instead of ending the run. */
export async function measurePath(context: CaseContext, path: OpenPath, variant: string | undefined, measure: () => Promise<Record<string, number | null>>): Promise<CaseRow> {
  if (context.stopped()) return { path: path.name, ...(variant ? { variant } : {}), values: {}, error: 'interrupted' };
  try {
    const values = await measure();
    return { path: path.name, ...(variant ? { variant } : {}), values };
  } catch (err) {
    context.log(`  ${path.name}${variant ? ` (${variant})` : ''}: FAILED: ${errorMessage(err)}`);
    return { path: path.name, ...(variant ? { variant } : {}), values: {}, error: errorMessage(err) };
  }
}

/** Each distinct endpoints object once (direct and the native tunnels share theirs). */
export function distinctEndpoints(paths: OpenPath[]): OpenPath['endpoints'][] {
  return [...new Set(paths.map((p) => p.endpoints))];
}
