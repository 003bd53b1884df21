import { parseArgs } from 'node:util';
import { PATH_NAMES, type PathName } from './paths/path.js';
import { CASE_IDS, type CaseId } from './report/types.js';

export interface BenchOptions {
  quick: boolean;
  cases: CaseId[];
  /** --cases was given: in --quick, the cases with a lab of their own (two-network, mixed) run only when named. */
  casesNamed: boolean;
  paths: PathName[];
  /** Markdown report. */
  out: string;
  /** JSON report; default bench/results/<start>.json and bench/results/latest.json. */
  json?: string;
  skipLab: boolean;
  keepLab: boolean;
  help: boolean;
}

export class OptionsError extends Error {}

export const USAGE = `usage: npm run bench -- [options]

Measures ambit against no mesh (direct) and native mTLS tunnels (stunnel, HAProxy) on the lab,
in one run, and writes docs/benchmarks.md and a JSON report.

  --quick             short runs (CI smoke test, about 2 minutes); crossnet, controlplane and mixed
                      only when named in --cases (they need a lab of their own)
  --cases <list>      comma-separated, from: ${CASE_IDS.join(', ')} (default: all;
                      crossnet and controlplane run next, on topologies/two-networks.yaml, and
                      mixed last, on bench/topologies/mixed-latency.yaml)
  --paths <list>      comma-separated, from: ${PATH_NAMES.join(', ')} (default: all; without ambit with --skip-lab)
  --out <file>        markdown report (default: docs/benchmarks.md; relative paths are from the repository root)
  --json <file>       JSON report (default: bench/results/<date>.json and bench/results/latest.json)
  --skip-lab          no lab: only the native paths, in network namespaces abench-* made for the run
  --keep-lab          leave the (last) lab up at the end (default: \`ambit lab down\`)
  -h, --help          this text
`;

function list<T extends string>(value: string | undefined, allowed: readonly T[], what: string): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (!items.length) throw new OptionsError(`--${what} needs a comma-separated list from: ${allowed.join(', ')}`);
  const unknown = items.filter((i) => !(allowed as readonly string[]).includes(i));
  if (unknown.length) throw new OptionsError(`unknown ${what} ${unknown.map((u) => `"${u}"`).join(', ')}; choose from: ${allowed.join(', ')}`);
  return [...new Set(items as T[])];
}

export function parseOptions(argv: string[]): BenchOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean', default: false },
        cases: { type: 'string' },
        paths: { type: 'string' },
        out: { type: 'string', default: 'docs/benchmarks.md' },
        json: { type: 'string' },
        'skip-lab': { type: 'boolean', default: false },
        'keep-lab': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    // parseArgs says e.g. "Unknown option '--fast'. To specify a positional argument starting with a '-', …".
    const message = (err instanceof Error ? err.message : String(err)).split('. To specify')[0];
    throw new OptionsError(`${message}\n\n${USAGE}`);
  }
  const v = parsed.values;
  const skipLab = v['skip-lab'] ?? false;
  const cases = list(v.cases, CASE_IDS, 'cases') ?? CASE_IDS;
  const paths = list(v.paths, PATH_NAMES, 'paths') ?? PATH_NAMES.filter((p) => !(skipLab && p === 'ambit'));
  if (skipLab && paths.includes('ambit')) throw new OptionsError('--paths ambit needs the lab: drop --skip-lab, or leave ambit out of --paths');
  if (skipLab && v['keep-lab']) throw new OptionsError('--keep-lab and --skip-lab contradict each other');
  return {
    quick: v.quick ?? false,
    // Report order is always the canonical one, whatever order the lists were given in.
    cases: CASE_IDS.filter((c) => cases.includes(c)),
    casesNamed: v.cases !== undefined,
    paths: PATH_NAMES.filter((p) => paths.includes(p)),
    out: v.out ?? 'docs/benchmarks.md',
    ...(v.json ? { json: v.json } : {}),
    skipLab,
    keepLab: v['keep-lab'] ?? false,
    help: v.help ?? false,
  };
}
