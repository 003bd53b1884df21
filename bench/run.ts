/**
 * `npm run bench`: measures ambit against no mesh and native mTLS tunnels in one run, and writes
 * the JSON and markdown reports. See `npm run bench -- --help` and docs/benchmarks.md.
 */
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CASES, MIXED_NETWORK_CASES, TWO_NETWORK_CASES } from './cases/index.js';
import { errorMessage, type CaseContext } from './cases/case.js';
import { MIXED_NEEDS_THE_LAB, MIXED_NOT_IN_QUICK, NEEDS_THE_LAB, NOT_IN_QUICK, notMeasured } from './cases/not-measured.js';
import { generateTunnelCerts, type TunnelCerts } from './certs.js';
import { runCommand, stopAllSpawned, type Spawned } from './exec.js';
import { createLabTopology } from './lab-topology.js';
import { probeHttp } from './load/generators.js';
import { createMixedNetworkLab, type MixedNetworkLab } from './mixed/lab.js';
import { createTwoNetworkLab, type TwoNetworkLab } from './multicluster-lab.js';
import { createNetnsTopology } from './netns-topology.js';
import { OptionsError, parseOptions, USAGE, type BenchOptions } from './options.js';
import { PATHS } from './paths/index.js';
import type { OpenPath, PathContext } from './paths/path.js';
import { withComparisons } from './report/compare.js';
import { loadAverage, machineFacts } from './report/machine.js';
import { checkTargets } from './report/targets.js';
import { isMixedNetworkCase, isOneClusterCase, isTwoNetworkCase, type BenchReport, type CaseId, type CaseResult, type MixedNetworkCaseId, type OneClusterCaseId, type TwoNetworkCaseId } from './report/types.js';
import { writeReport } from './report/write.js';
import { HTTP_BODY, HTTP_PORT, IPERF_PORT, startNginx } from './servers.js';
import { shellQuote } from './shell.js';
import type { BenchTopology } from './topology.js';

const repoRoot = fileURLToPath(new URL('../', import.meta.url));
const REQUIRED_TOOLS = ['iperf3', 'wrk', 'nginx', 'stunnel4', 'haproxy', 'openssl', 'curl', 'ss', 'nsenter'];

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

function commandLine(argv: string[]): string {
  const quoted = shellQuote(argv);
  return process.env.npm_lifecycle_event === 'bench' ? `npm run bench${argv.length ? ` -- ${quoted}` : ''}` : `node --import tsx bench/run.ts ${quoted}`.trimEnd();
}

async function checkTools(): Promise<void> {
  const missing: string[] = [];
  for (const tool of REQUIRED_TOOLS) if ((await runCommand(['sh', '-c', `command -v ${tool}`])).code !== 0) missing.push(tool);
  if (missing.length) throw new OptionsError(`missing tools: ${missing.join(', ')}; install them with \`bash bench/install-tools.sh\``);
}

interface Session {
  topology?: BenchTopology;
  paths: OpenPath[];
  servers: Spawned[];
  twoNetworkLab?: TwoNetworkLab;
  mixedNetworkLab?: MixedNetworkLab;
}

function pathContextOf(topology: BenchTopology): PathContext {
  let certs: Promise<TunnelCerts> | undefined;
  return { topology, workDir: topology.workDir, certs: () => (certs ??= generateTunnelCerts(topology.workDir)), serverPorts: [HTTP_PORT, IPERF_PORT] };
}

async function openPaths(options: BenchOptions, context: PathContext, report: BenchReport, session: Session): Promise<void> {
  const { topology } = context;
  for (const name of options.paths) {
    const path = PATHS[name];
    try {
      session.paths.push(await path.open(context));
      report.paths.push({ name, description: path.description });
    } catch (err) {
      log(`path ${name}: ${errorMessage(err)}`);
      report.paths.push({ name, description: path.description, error: errorMessage(err) });
    }
  }
  const endpoints = [...new Set(session.paths.map((p) => p.endpoints))];
  for (const [i, e] of endpoints.entries()) session.servers.push(await startNginx(e.serverPod, topology.workDir, String(i)));
  for (const path of [...session.paths]) {
    try {
      await probeHttp(path.endpoints.clientPod, path.dial(HTTP_PORT), HTTP_BODY);
      await path.confirm?.();
    } catch (err) {
      log(`path ${path.name}: ${errorMessage(err)}`);
      report.paths.find((p) => p.name === path.name)!.error = errorMessage(err);
      session.paths.splice(session.paths.indexOf(path), 1);
      await path.close();
    }
  }
}

async function cleanUp(session: Session, keepWorkDir: boolean): Promise<void> {
  for (const path of session.paths.splice(0)) await path.close().catch((err: unknown) => log(`closing ${path.name}: ${errorMessage(err)}`));
  await Promise.all(session.servers.splice(0).map((s) => s.stop()));
  await stopAllSpawned();
  const done = [session.topology, session.twoNetworkLab, session.mixedNetworkLab];
  session.topology = undefined;
  session.twoNetworkLab = undefined;
  session.mixedNetworkLab = undefined;
  for (const setup of done) {
    if (!setup) continue;
    await setup.teardown().catch((err: unknown) => log(`teardown: ${errorMessage(err)}`));
    if (keepWorkDir) log(`configs and logs kept in ${setup.workDir}`);
    else rmSync(setup.workDir, { recursive: true, force: true });
  }
}

type Stopped = () => boolean;

/** Runs one case; a case that throws is reported as failed instead of ending the run. */
async function runCase(id: CaseId, title: string, run: () => Promise<CaseResult>): Promise<CaseResult> {
  log(`${id}: ${title}`);
  let result: CaseResult;
  try {
    result = await run();
  } catch (err) {
    log(`${id} failed: ${errorMessage(err)}`);
    result = { id, title, method: '', params: {}, metrics: [], rows: [], skipped: `failed: ${errorMessage(err)}` };
  }
  if (result.skipped) log(`  not measured: ${result.skipped}`);
  return result;
}

const caseFailed = (result: CaseResult) => result.skipped?.startsWith('failed:') === true || result.rows.some((r) => r.error);

/** The paths between two nodes of one cluster (or the abench-* namespaces) and the cases over them. Returns whether something failed. */
async function runOneClusterCases(options: BenchOptions, ids: OneClusterCaseId[], keepLab: boolean, report: BenchReport, session: Session, stopped: Stopped): Promise<boolean> {
  log(options.skipLab ? 'creating network namespaces abench-*' : 'bringing up the lab');
  const topology = options.skipLab ? await createNetnsTopology() : await createLabTopology({ keepLab, log });
  session.topology = topology;
  report.topology.description = topology.description;
  const pathContext = pathContextOf(topology);
  await openPaths(options, pathContext, report, session);
  if (!session.paths.length) throw new Error('no path could be opened; see the errors above');

  let failed = false;
  const context: CaseContext = { quick: options.quick, paths: session.paths, workDir: topology.workDir, pathContext, log, stopped };
  for (const id of ids) {
    if (stopped()) break;
    const benchCase = CASES[id];
    const result = await runCase(id, benchCase.title, () => benchCase.run(context));
    failed ||= caseFailed(result);
    report.cases.push(withComparisons(result));
  }
  return failed;
}

/** Why the cases of a lab of their own (two-network, mixed-network) do not run in this run, if they do not. */
function ownLabSkipReason(options: BenchOptions, reasons: { needsTheLab: string; notInQuick: string }): string | undefined {
  if (options.skipLab) return reasons.needsTheLab;
  if (options.quick && !options.casesNamed) return reasons.notInQuick;
  return undefined;
}

/** The two-network lab and the cases on it. Returns whether something failed. */
async function runTwoNetworkCases(options: BenchOptions, ids: TwoNetworkCaseId[], keepLab: boolean, report: BenchReport, session: Session, stopped: Stopped): Promise<boolean> {
  log('bringing up the two-network lab');
  let lab: TwoNetworkLab;
  try {
    lab = await createTwoNetworkLab({ keepLab, log });
  } catch (err) {
    for (const id of ids) report.cases.push(notMeasured(id, TWO_NETWORK_CASES[id].title, `failed: the two-network lab: ${errorMessage(err)}`));
    log(`two-network lab: ${errorMessage(err)}`);
    return true;
  }
  session.twoNetworkLab = lab;
  report.topology.description = [report.topology.description, `two-network cases: ${lab.description}`].filter(Boolean).join('; ');
  let failed = false;
  for (const id of ids) {
    if (stopped()) break;
    const benchCase = TWO_NETWORK_CASES[id];
    const result = await runCase(id, benchCase.title, () => benchCase.run({ quick: options.quick, lab, workDir: lab.workDir, log, stopped }));
    failed ||= caseFailed(result);
    report.cases.push(withComparisons(result));
  }
  return failed;
}

/** The mixed-network lab (three clusters, two on one network) and the cases on it. Returns whether something failed. */
async function runMixedNetworkCases(options: BenchOptions, ids: MixedNetworkCaseId[], report: BenchReport, session: Session, stopped: Stopped): Promise<boolean> {
  log('bringing up the mixed-network lab');
  let lab: MixedNetworkLab;
  try {
    lab = await createMixedNetworkLab({ keepLab: options.keepLab, log });
  } catch (err) {
    for (const id of ids) report.cases.push(notMeasured(id, MIXED_NETWORK_CASES[id].title, `failed: the mixed-network lab: ${errorMessage(err)}`));
    log(`mixed-network lab: ${errorMessage(err)}`);
    return true;
  }
  session.mixedNetworkLab = lab;
  report.topology.description = [report.topology.description, `mixed-network case: ${lab.description}`].filter(Boolean).join('; ');
  let failed = false;
  for (const id of ids) {
    if (stopped()) break;
    const benchCase = MIXED_NETWORK_CASES[id];
    const result = await runCase(id, benchCase.title, () => benchCase.run({ quick: options.quick, lab, workDir: lab.workDir, log, stopped }));
    failed ||= caseFailed(result);
    report.cases.push(withComparisons(result));
  }
  return failed;
}

async function main(argv: string[]): Promise<number> {
  const options = parseOptions(argv);
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (process.getuid?.() !== 0) throw new OptionsError('the bench must run as root: it creates network namespaces (the lab, or abench-* with --skip-lab)');
  await checkTools();

  const started = Date.now();
  const report: BenchReport = {
    schema: 1,
    startedAt: new Date(started).toISOString(),
    finishedAt: '',
    command: commandLine(argv),
    quick: options.quick,
    machine: await machineFacts(),
    loadAverage: { start: loadAverage(), end: '' },
    topology: { kind: options.skipLab ? 'netns' : 'lab', description: '' },
    paths: [],
    cases: [],
    targets: [],
    notes: [],
  };
  const session: Session = { paths: [], servers: [] };
  let failed = false;
  // A signal stops the programs running now, so the run unwinds through its normal clean-up
  // (tunnels, servers, namespaces or the lab); a second signal exits at once.
  let interrupted: NodeJS.Signals | undefined;
  let cleaningUp = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      log(`${signal} again: exiting without cleaning up (\`ip netns delete abench-…\` or \`ambit lab down\` removes what is left)`);
      process.exit(130);
    }
    interrupted = signal;
    log(`${signal}: stopping, then cleaning up`);
    if (!cleaningUp) void stopAllSpawned();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const stopped = () => interrupted !== undefined;
  const oneClusterIds = options.cases.filter(isOneClusterCase);
  const twoNetworkIds = options.cases.filter(isTwoNetworkCase);
  const twoNetworkSkipped = twoNetworkIds.length ? ownLabSkipReason(options, { needsTheLab: NEEDS_THE_LAB, notInQuick: NOT_IN_QUICK }) : undefined;
  const runsTwoNetwork = twoNetworkIds.length > 0 && twoNetworkSkipped === undefined;
  const mixedIds = options.cases.filter(isMixedNetworkCase);
  const mixedSkipped = mixedIds.length ? ownLabSkipReason(options, { needsTheLab: MIXED_NEEDS_THE_LAB, notInQuick: MIXED_NOT_IN_QUICK }) : undefined;
  const runsMixed = mixedIds.length > 0 && mixedSkipped === undefined;
  try {
    if (oneClusterIds.length) {
      try {
        // Each later lab replaces the one before: --keep-lab keeps only the last one.
        failed = (await runOneClusterCases(options, oneClusterIds, options.keepLab && !runsTwoNetwork && !runsMixed, report, session, stopped)) || failed;
      } catch (err) {
        failed = true;
        report.notes.push(`the one-cluster cases stopped early: ${errorMessage(err)}`);
        log(`error: ${errorMessage(err)}`);
      } finally {
        cleaningUp = true;
        await cleanUp(session, failed && !interrupted);
        cleaningUp = false;
      }
    }
    if (twoNetworkSkipped !== undefined) {
      for (const id of twoNetworkIds) report.cases.push(notMeasured(id, TWO_NETWORK_CASES[id].title, twoNetworkSkipped));
      log(`${twoNetworkIds.join(', ')}: not measured: ${twoNetworkSkipped}`);
    } else if (runsTwoNetwork && !interrupted) {
      failed = (await runTwoNetworkCases(options, twoNetworkIds, options.keepLab && !runsMixed, report, session, stopped)) || failed;
      if (runsMixed) {
        // Down before the mixed-network lab comes up (one lab per machine).
        cleaningUp = true;
        await cleanUp(session, failed && !interrupted);
        cleaningUp = false;
      }
    }
    if (mixedSkipped !== undefined) {
      for (const id of mixedIds) report.cases.push(notMeasured(id, MIXED_NETWORK_CASES[id].title, mixedSkipped));
      log(`${mixedIds.join(', ')}: not measured: ${mixedSkipped}`);
    } else if (runsMixed && !interrupted) {
      failed = (await runMixedNetworkCases(options, mixedIds, report, session, stopped)) || failed;
    }
    if (!report.topology.description) report.topology.description = 'none: no case of this run needed one';
  } catch (err) {
    failed = true;
    report.notes.push(`the run stopped early: ${errorMessage(err)}`);
    log(`error: ${errorMessage(err)}`);
  } finally {
    cleaningUp = true;
    await cleanUp(session, failed && !interrupted);
  }
  if (interrupted) {
    log('interrupted: no report written');
    return 130;
  }

  report.finishedAt = new Date().toISOString();
  report.loadAverage.end = loadAverage();
  report.targets = checkTargets(report.cases);
  if (report.paths.some((p) => p.error)) failed = true;
  const written = writeReport(report, repoRoot, options.out, options.json);
  log(`done in ${Math.round((Date.now() - started) / 1000)} s; wrote ${[...written.json, written.markdown].join(', ')}`);
  for (const t of report.targets) log(`target ${t.title} ${t.target}: ${t.met === null ? (t.measured ? `${t.reported ? 'reported' : 'not judged'}: ${t.measured}` : `not measured (${t.note})`) : `${t.met ? 'met' : 'NOT met'}: ${t.measured}`}`);
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${errorMessage(err)}\n`);
    process.exit(err instanceof OptionsError ? 2 : 1);
  },
);
