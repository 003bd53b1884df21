import { runFixedRateLoad, runWrk } from '../load/generators.js';
import type { OpenPath } from '../paths/path.js';
import { CostSampler, cpuSecondsPer1kRequests, type GroupCost } from '../process-cost.js';
import type { CaseRow } from '../report/types.js';
import { HTTP_PORT } from '../servers.js';
import { errorMessage, type BenchCase, type CaseContext } from './case.js';
import { fixedRateOptions } from './latency.js';

export const COST_LOAD_CONNECTIONS = 32;
/** Variant of the row that adds up every process group of a path. */
export const BOTH_ENDS = 'both ends';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Windows {
  idle: GroupCost[];
  idleSeconds: number;
  saturated: GroupCost[];
  saturatedRequests: number;
  atRate: GroupCost[];
  atRateRequests: number;
}

async function measureWindows(context: CaseContext, path: OpenPath): Promise<Windows> {
  const idleSeconds = context.quick ? 1 : 5;
  const loadSeconds = context.quick ? 3 : 10;
  const target = path.dial(HTTP_PORT);
  let sampler = new CostSampler(path.proxies);
  await sleep(idleSeconds * 1000);
  const idle = sampler.stop();
  sampler = new CostSampler(path.proxies);
  const wrk = await runWrk(path.endpoints.clientPod, target, { connections: COST_LOAD_CONNECTIONS, durationSeconds: loadSeconds });
  const saturated = sampler.stop();
  // The fixed-rate client's warm-up second is inside the window: count its requests too.
  const rate = { ...fixedRateOptions(context.quick), durationSeconds: loadSeconds };
  sampler = new CostSampler(path.proxies);
  const fixed = await runFixedRateLoad(path.endpoints.clientPod, target, rate);
  const atRate = sampler.stop();
  return { idle, idleSeconds, saturated, saturatedRequests: wrk.requests, atRate, atRateRequests: fixed.completed + rate.warmupSeconds * rate.rate };
}

interface GroupFigures {
  cpuIdle: number;
  cpuSaturated: number;
  cpuAtRate: number;
  rssIdle: number;
  rssLoad: number;
}

function rowsFor(path: OpenPath, w: Windows): CaseRow[] {
  const row = (variant: string, f: GroupFigures): CaseRow => ({
    path: path.name,
    variant,
    values: {
      rssIdleMiB: f.rssIdle,
      rssLoadMiB: f.rssLoad,
      idleCpuPercent: (f.cpuIdle / w.idleSeconds) * 100,
      cpuPer1kSaturated: cpuSecondsPer1kRequests(f.cpuSaturated, w.saturatedRequests),
      cpuPer1kAtRate: cpuSecondsPer1kRequests(f.cpuAtRate, w.atRateRequests),
    },
  });
  const perGroup = path.proxies.map((group, i): [string, GroupFigures] => [
    group.label,
    {
      cpuIdle: w.idle[i]!.cpuSeconds,
      cpuSaturated: w.saturated[i]!.cpuSeconds,
      cpuAtRate: w.atRate[i]!.cpuSeconds,
      rssIdle: w.idle[i]!.rssStartMiB,
      rssLoad: Math.max(w.saturated[i]!.rssMaxMiB, w.atRate[i]!.rssMaxMiB),
    },
  ]);
  const total = (pick: (f: GroupFigures) => number) => perGroup.reduce((n, [, f]) => n + pick(f), 0);
  const both: GroupFigures = {
    cpuIdle: total((f) => f.cpuIdle),
    cpuSaturated: total((f) => f.cpuSaturated),
    cpuAtRate: total((f) => f.cpuAtRate),
    rssIdle: total((f) => f.rssIdle),
    rssLoad: total((f) => f.rssLoad),
  };
  return [...perGroup.map(([label, f]) => row(label, f)), row(BOTH_ENDS, both)];
}

export const costCase: BenchCase = {
  id: 'cost',
  title: 'Proxy cost: CPU seconds per 1,000 requests and memory (ztunnel, stunnel, HAProxy)',
  async run(context) {
    const rows: CaseRow[] = [];
    for (const path of context.paths) {
      if (!path.proxies.length || context.stopped()) continue;
      try {
        const windows = await measureWindows(context, path);
        const added = rowsFor(path, windows);
        const total = added[added.length - 1]!.values;
        context.log(`  ${path.name}: ${total.cpuPer1kSaturated?.toFixed(4)} CPU-s/1k req saturated, ${total.cpuPer1kAtRate?.toFixed(4)} at 1,000 req/s, RSS idle ${total.rssIdleMiB?.toFixed(1)} MiB`);
        rows.push(...added);
      } catch (err) {
        context.log(`  ${path.name}: FAILED: ${errorMessage(err)}`);
        rows.push({ path: path.name, values: {}, error: errorMessage(err) });
      }
    }
    const idleSeconds = context.quick ? 1 : 5;
    const loadSeconds = context.quick ? 3 : 10;
    return {
      id: 'cost',
      title: this.title,
      method:
        `CPU time (utime + stime from /proc/<pid>/stat, all threads and child processes) and RSS (VmRSS from /proc/<pid>/status) of the processes that carry the traffic, per end and both ends together, in three windows: ` +
        `idle (${idleSeconds} s, RSS at its start), saturated keep-alive load (wrk, ${COST_LOAD_CONNECTIONS} connections, ${loadSeconds} s) and ${fixedRateOptions(context.quick).rate} req/s (fixed-rate client, ${loadSeconds} s + 1 s warm-up). ` +
        'CPU-s per 1,000 requests = CPU seconds in the window / requests completed × 1,000. RSS under load is the largest sample (every 250 ms). 1 MiB = 2^20 bytes',
      params: { idleSeconds, loadSeconds, saturatedConnections: COST_LOAD_CONNECTIONS, rate: fixedRateOptions(context.quick).rate },
      metrics: [
        { key: 'cpuPer1kSaturated', label: 'CPU-s / 1k req (saturated)', unit: '', digits: 4 },
        { key: 'cpuPer1kAtRate', label: 'CPU-s / 1k req (1,000 req/s)', unit: '', digits: 4 },
        { key: 'idleCpuPercent', label: 'idle CPU', unit: '%', digits: 2 },
        { key: 'rssIdleMiB', label: 'RSS idle', unit: 'MiB', digits: 1 },
        { key: 'rssLoadMiB', label: 'RSS under load', unit: 'MiB', digits: 1 },
      ],
      rows,
    };
  },
};
