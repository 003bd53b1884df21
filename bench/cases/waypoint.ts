/**
 * The waypoint: keep-alive requests/s and latency at a fixed 1,000 req/s through the waypoint
 * (a Service's cluster IP), against ambit L4 (the server pod IP) and HAProxy in mode http, and the
 * waypoint's CPU per 1,000 requests and memory; ratios to L4.
 */
import { fixedRateArgv, runFixedRateLoad, runWrk, wrkArgv, type WrkOptions } from '../load/generators.js';
import { CostSampler, cpuSecondsPer1kRequests, type GroupCost } from '../process-cost.js';
import type { CaseResult, CaseRow } from '../report/types.js';
import { HTTP_PORT } from '../servers.js';
import { shellQuote } from '../shell.js';
import { GOAL_ADDED_P50_MS, GOAL_CPU_PER_1K, GOAL_RSS_MB, ISTIO_WAYPOINT_CPU_PER_1K, ISTIO_WAYPOINT_RSS_MB, pathCheckSentence, ROW_PATH, rowName, WAYPOINT, WAYPOINT_VARIANTS, waypointNotes, withWaypointComparisons, type WaypointVariant } from '../waypoint/compare.js';
import { openWaypoint, PATH_CHECK_REQUESTS, REQUEST_METRIC, type ReadyTarget, type WaypointSetup } from '../waypoint/setup.js';
import { errorMessage, type BenchCase, type CaseContext } from './case.js';
import { FIXED_RATE, fixedRateOptions, fixedRateSummary } from './latency.js';
import { notMeasured } from './not-measured.js';

export const WAYPOINT_TITLE = `Waypoint (L7): keep-alive requests/s and latency at ${FIXED_RATE.toLocaleString('en')} req/s through the waypoint, ambit L4 and HAProxy in mode http; the waypoint's CPU and memory`;
export const WAYPOINT_CONNECTION_COUNTS = [1, 32] as const;
const WARMUP_CONNECTIONS = 8;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (us: number) => (Number.isFinite(us) ? us / 1000 : null);

/** Every value a row can have, null until measured: each row has each key (the table shows them all). */
const EMPTY_VALUES = [
  'p50', 'p90', 'p99', 'p999', 'achievedRate', 'rps1', 'rps32', 'rps32P99', 'errors', 'requests', 'waypointCounted',
  'cpuPer1kAtRate', 'cpuPer1kSaturated', 'waypointCpuPer1kAtRate', 'waypointCpuPer1kSaturated', 'waypointIdleCpuPercent', 'waypointRssIdleMiB', 'waypointRssLoadMiB',
] as const;

interface Measured {
  values: Record<string, number | null>;
  errors: string[];
  /** Largest waypoint RSS seen under load (waypoint row). */
  rssLoad: number;
}

const add = (values: Record<string, number | null>, key: string, n: number) => {
  values[key] = (values[key] ?? 0) + n;
};

/** CPU of all the target's process groups over a window, and the waypoint's own when it is one of them. */
function costs(target: ReadyTarget, setup: WaypointSetup, window: GroupCost[]): { all: number; waypoint?: GroupCost } {
  const i = target.proxies.indexOf(setup.waypoint);
  return { all: window.reduce((n, g) => n + g.cpuSeconds, 0), ...(i >= 0 ? { waypoint: window[i]! } : {}) };
}

/** Runs `measure` for each target in turn, counting the waypoint's requests around it; a failure marks the row and the others go on. */
async function measureEach(
  context: CaseContext,
  setup: WaypointSetup,
  measured: Map<WaypointVariant, Measured>,
  what: string,
  measure: (target: ReadyTarget, m: Measured) => Promise<void>,
): Promise<void> {
  for (const target of setup.targets) {
    const m = measured.get(target.variant)!;
    if (target.error !== undefined) continue;
    if (context.stopped()) {
      m.errors.push('interrupted');
      continue;
    }
    try {
      const before = await setup.waypointRequests();
      await measure(target, m);
      add(m.values, 'waypointCounted', (await setup.waypointRequests()) - before);
    } catch (err) {
      context.log(`  ${rowName(target.variant)}, ${what}: FAILED: ${errorMessage(err)}`);
      m.errors.push(`${what}: ${errorMessage(err)}`);
    }
  }
}

/** Measures the rows of an open setup (which stays open) and makes the case's result. */
export async function measureWaypoint(context: CaseContext, setup: WaypointSetup): Promise<CaseResult> {
  const idleSeconds = context.quick ? 1 : 5;
  const seconds = context.quick ? 3 : 10;
  const rate = fixedRateOptions(context.quick);
  const warmupSeconds = context.quick ? 2 : 5;
  const measured = new Map<WaypointVariant, Measured>(
    WAYPOINT_VARIANTS.map((v) => [v, { values: Object.fromEntries(EMPTY_VALUES.map((k) => [k, null])), errors: [], rssLoad: -Infinity }]),
  );
  for (const target of setup.targets) {
    const m = measured.get(target.variant)!;
    if (target.error !== undefined) m.errors.push(target.error);
    else Object.assign(m.values, { errors: 0, requests: 0, waypointCounted: 0 });
  }
  const waypointRow = measured.get(WAYPOINT)!;

  // Idle: the waypoint with no traffic, before any load of the case.
  const idleSampler = new CostSampler([setup.waypoint]);
  await sleep(idleSeconds * 1000);
  const [idle] = idleSampler.stop();
  waypointRow.values.waypointRssIdleMiB = idle!.rssStartMiB;
  waypointRow.values.waypointIdleCpuPercent = (idle!.cpuSeconds / idleSeconds) * 100;

  // Warm-up, not counted: the waypoint is a fresh process (JIT, upstream pools); every row gets the same.
  for (const target of setup.targets) {
    if (target.error !== undefined || context.stopped()) continue;
    await runWrk(target.client, target.address, { connections: WARMUP_CONNECTIONS, durationSeconds: warmupSeconds }).catch((err: unknown) => context.log(`  ${rowName(target.variant)}, warm-up: ${errorMessage(err)}`));
  }

  await measureEach(context, setup, measured, `latency at ${FIXED_RATE} req/s`, async (target, m) => {
    const sampler = new CostSampler(target.proxies);
    let window: GroupCost[];
    let r;
    try {
      r = await runFixedRateLoad(target.client, target.address, rate);
    } finally {
      window = sampler.stop();
    }
    context.log(`  ${rowName(target.variant)}: ${fixedRateSummary(r)}`);
    // The warm-up second's requests cross the proxies inside the window too (as in the cost case).
    const requests = r.completed + rate.warmupSeconds * rate.rate;
    const c = costs(target, setup, window);
    Object.assign(m.values, { p50: ms(r.latencyUs.p50), p90: ms(r.latencyUs.p90), p99: ms(r.latencyUs.p99), p999: ms(r.latencyUs.p999), achievedRate: r.achievedRate, cpuPer1kAtRate: cpuSecondsPer1kRequests(c.all, requests) });
    add(m.values, 'errors', r.errors);
    add(m.values, 'requests', requests);
    if (c.waypoint) {
      m.values.waypointCpuPer1kAtRate = cpuSecondsPer1kRequests(c.waypoint.cpuSeconds, requests);
      m.rssLoad = Math.max(m.rssLoad, c.waypoint.rssMaxMiB);
    }
  });
  for (const connections of WAYPOINT_CONNECTION_COUNTS) {
    const options: WrkOptions = { connections, durationSeconds: seconds };
    await measureEach(context, setup, measured, `keep-alive c=${connections}`, async (target, m) => {
      const sampler = new CostSampler(target.proxies);
      let window: GroupCost[];
      let r;
      try {
        r = await runWrk(target.client, target.address, options);
      } finally {
        window = sampler.stop();
      }
      context.log(`  ${rowName(target.variant)} c=${connections}: ${Math.round(r.requestsPerSecond)} req/s, p99 ${r.latencyMs.p99?.toFixed(2)} ms, ${r.errors} errors`);
      m.values[`rps${connections}`] = r.requestsPerSecond;
      add(m.values, 'errors', r.errors);
      add(m.values, 'requests', r.requests);
      const c = costs(target, setup, window);
      if (connections === 32) {
        m.values.rps32P99 = r.latencyMs.p99 ?? null;
        m.values.cpuPer1kSaturated = cpuSecondsPer1kRequests(c.all, r.requests);
        if (c.waypoint) m.values.waypointCpuPer1kSaturated = cpuSecondsPer1kRequests(c.waypoint.cpuSeconds, r.requests);
      }
      if (c.waypoint) m.rssLoad = Math.max(m.rssLoad, c.waypoint.rssMaxMiB);
    });
  }
  if (Number.isFinite(waypointRow.rssLoad)) waypointRow.values.waypointRssLoadMiB = waypointRow.rssLoad;

  const rows: CaseRow[] = WAYPOINT_VARIANTS.map((variant) => {
    const { values, errors } = measured.get(variant)!;
    return { path: ROW_PATH[variant], variant, values, ...(errors.length ? { error: errors.join('; ') } : {}) };
  });
  const w = rows.find((r) => r.variant === WAYPOINT)?.values;
  const counted = w?.waypointCounted != null && w.requests != null ? `Over the measurements the waypoint counted ${w.waypointCounted.toLocaleString('en')} requests during its row's runs (the clients sent about ${w.requests.toLocaleString('en')}), and ${rows.filter((r) => r.variant !== WAYPOINT).map((r) => `${r.values.waypointCounted?.toLocaleString('en') ?? '–'} during ${rowName(r.variant as WaypointVariant)}'s`).join(' and ')}.` : undefined;
  const groups = setup.targets.map((t) => `${rowName(t.variant)}: ${t.error !== undefined ? 'not set up' : t.proxies.map((g) => g.label).join(', ')}`).join('; ');
  return {
    id: 'waypoint',
    title: WAYPOINT_TITLE,
    method:
      `In namespace bench-mesh (ambient) the client pod (cluster1-node1) reaches nginx in the server pod (cluster1-node2) two ways. ${setup.description}. ` +
      `Before measuring, the paths are checked: the waypoint's ${REQUEST_METRIC} (port 15020, /stats/prometheus) must grow by at least ${PATH_CHECK_REQUESTS} while the client sends ${PATH_CHECK_REQUESTS} requests to the cluster IP, and not at all while it sends ${PATH_CHECK_REQUESTS} to the pod IP; it is also read around every run (the "waypoint counted" column). ` +
      `haproxy http is HAProxy in mode http between the nodes of the bench-direct pods (the same two nodes; the bench-mesh pods' traffic would be captured by ztunnel), dialled at the client node. ` +
      `First, not counted, ${warmupSeconds} s of wrk with ${WARMUP_CONNECTIONS} connections on each row (the waypoint is a fresh process: JIT, upstream pools). Then for each row in turn: latency \`node --import tsx bench/tools/fixed-rate.ts ${shellQuote(fixedRateArgv({ host: '<target>', port: HTTP_PORT }, rate).slice(4))}\` (open loop, ${rate.connections} keep-alive connections, as the latency case), ` +
      `then keep-alive \`${shellQuote(wrkArgv('http://<target>/', { connections: 0, durationSeconds: seconds })).replace('-c 0', '-c <n>')}\` for n = ${WAYPOINT_CONNECTION_COUNTS.join(' and ')}. ` +
      `CPU: utime + stime (/proc/<pid>/stat, threads and children) of each row's proxies over the run, per 1,000 requests (the fixed-rate run's warm-up requests counted); the processes: ${groups}. ` +
      `Waypoint RSS: VmRSS idle (${idleSeconds} s with no traffic, before the runs) and the largest sample (every 250 ms) over its row's runs; 1 MB = 10^6 bytes, 1 MiB = 2^20. ` +
      `Ratios and added latency are to the ambit L4 row. Istio's published waypoint cost is about ${ISTIO_WAYPOINT_CPU_PER_1K} vCPU and ${ISTIO_WAYPOINT_RSS_MB} MB at 1,000 req/s; ` +
      `the goals (reported, never asserted): ≤ ${GOAL_CPU_PER_1K} CPU-s per 1,000 requests, ≤ ${GOAL_RSS_MB} MB, added p50 ≤ ${GOAL_ADDED_P50_MS} ms over L4`,
    params: { rate: rate.rate, rateSeconds: rate.durationSeconds, rateConnections: rate.connections, seconds, connections: WAYPOINT_CONNECTION_COUNTS.join(', '), idleSeconds, warmupSeconds, pathCheckRequests: PATH_CHECK_REQUESTS },
    metrics: [
      { key: 'p50', label: 'p50', unit: 'ms', digits: 3 },
      { key: 'p90', label: 'p90', unit: 'ms', digits: 3 },
      { key: 'p99', label: 'p99', unit: 'ms', digits: 3 },
      { key: 'achievedRate', label: 'achieved', unit: 'req/s', digits: 0 },
      { key: 'rps1', label: 'keep-alive req/s c=1', unit: '', digits: 0 },
      { key: 'rps32', label: 'keep-alive req/s c=32', unit: '', digits: 0 },
      { key: 'errors', label: 'errors', unit: '', digits: 0 },
      { key: 'rps1VsL4', label: 'req/s c=1 × L4', unit: '', digits: 2 },
      { key: 'rps32VsL4', label: 'req/s c=32 × L4', unit: '', digits: 2 },
      { key: 'p50VsL4', label: 'p50 × L4', unit: '', digits: 2 },
      { key: 'p50OverL4Ms', label: 'p50 added over L4', unit: 'ms', digits: 3 },
      { key: 'p99OverL4Ms', label: 'p99 added over L4', unit: 'ms', digits: 3 },
      { key: 'cpuPer1kAtRate', label: 'proxies CPU-s / 1k req (1,000 req/s)', unit: '', digits: 4 },
      { key: 'waypointCpuPer1kAtRate', label: 'waypoint CPU-s / 1k req (1,000 req/s)', unit: '', digits: 4 },
      { key: 'waypointCpuPer1kSaturated', label: 'waypoint CPU-s / 1k req (c=32)', unit: '', digits: 4 },
      { key: 'waypointRssIdleMiB', label: 'waypoint RSS idle', unit: 'MiB', digits: 1 },
      { key: 'waypointRssLoadMiB', label: 'waypoint RSS under load', unit: 'MiB', digits: 1 },
      { key: 'waypointCounted', label: 'waypoint counted', unit: 'requests', digits: 0 },
    ],
    rows: withWaypointComparisons(rows),
    notes: [...waypointNotes(rows, pathCheckSentence(setup.pathCheck)), ...(counted ? [counted] : [])],
  };
}

export const waypointCase: BenchCase = {
  id: 'waypoint',
  title: WAYPOINT_TITLE,
  async run(context) {
    const ambit = context.paths.find((p) => p.name === 'ambit');
    if (!ambit) return notMeasured('waypoint', WAYPOINT_TITLE, 'needs the ambit path (the lab, and --paths including ambit)');
    const setup = await openWaypoint(context, ambit);
    try {
      return await measureWaypoint(context, setup);
    } finally {
      await setup.close();
    }
  },
};
