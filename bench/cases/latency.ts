import { fixedRateArgv, runFixedRateLoad, type FixedRateOptions } from '../load/generators.js';
import { HTTP_PORT } from '../servers.js';
import { shellQuote } from '../shell.js';
import { measurePath, type BenchCase } from './case.js';

export const FIXED_RATE = 1000;

export const fixedRateOptions = (quick: boolean): FixedRateOptions => ({ rate: FIXED_RATE, durationSeconds: quick ? 5 : 30, connections: 8, warmupSeconds: 1 });

const ms = (us: number) => (Number.isFinite(us) ? us / 1000 : null);

type FixedRateResult = Awaited<ReturnType<typeof runFixedRateLoad>>;

/** One line for the log: `p50 … ms, p99 … ms, p99.9 … ms, N errors`. */
export function fixedRateSummary(r: FixedRateResult): string {
  return `p50 ${(r.latencyUs.p50 / 1000).toFixed(3)} ms, p99 ${(r.latencyUs.p99 / 1000).toFixed(3)} ms, p99.9 ${(r.latencyUs.p999 / 1000).toFixed(3)} ms, ${r.errors} errors`;
}

/** The latency columns of a fixed-rate run, in ms (errors are named by each case). */
export function fixedRateValues(r: FixedRateResult): Record<string, number | null> {
  return {
    p50: ms(r.latencyUs.p50),
    p99: ms(r.latencyUs.p99),
    p999: ms(r.latencyUs.p999),
    max: ms(r.latencyUs.max),
    achievedRate: r.achievedRate,
    lagP99: ms(r.scheduleLagUs.p99),
  };
}

export const latencyCase: BenchCase = {
  id: 'latency',
  title: `Latency at a fixed ${FIXED_RATE.toLocaleString('en')} req/s (keep-alive, open loop), added over direct`,
  async run(context) {
    const options = fixedRateOptions(context.quick);
    const rows = [];
    for (const path of context.paths) {
      rows.push(
        await measurePath(context, path, undefined, async () => {
          const r = await runFixedRateLoad(path.endpoints.clientPod, path.dial(HTTP_PORT), options);
          context.log(`  ${path.name}: ${fixedRateSummary(r)}`);
          return {
            ...fixedRateValues(r),
            errors: r.errors,
            // In the JSON only: the same requests timed from their ideal slots (timer lag included).
            p50FromSchedule: ms(r.latencyFromScheduleUs.p50),
            p99FromSchedule: ms(r.latencyFromScheduleUs.p99),
            p999FromSchedule: ms(r.latencyFromScheduleUs.p999),
          };
        }),
      );
    }
    return {
      id: 'latency',
      title: this.title,
      method:
        `\`node --import tsx bench/tools/fixed-rate.ts ${shellQuote(fixedRateArgv({ host: '<target>', port: HTTP_PORT }, options).slice(4))}\` in the client pod: ` +
        'requests issued on a constant-rate timeline over 8 keep-alive connections; a request that finds all connections busy waits, and the wait counts (no coordinated omission). ' +
        'Latency runs from the moment the scheduler issued the request; "schedule lag p99" is how late Node\'s timers issued requests (the tool\'s own jitter, not counted in latency)',
      params: { rate: options.rate, seconds: options.durationSeconds, warmupSeconds: options.warmupSeconds, connections: options.connections },
      metrics: [
        { key: 'p50', label: 'p50', unit: 'ms', digits: 3 },
        { key: 'p99', label: 'p99', unit: 'ms', digits: 3 },
        { key: 'p999', label: 'p99.9', unit: 'ms', digits: 3 },
        { key: 'max', label: 'max', unit: 'ms', digits: 2 },
        { key: 'achievedRate', label: 'achieved', unit: 'req/s', digits: 0 },
        { key: 'errors', label: 'errors', unit: '', digits: 0 },
        { key: 'lagP99', label: 'schedule lag p99', unit: 'ms', digits: 2 },
      ],
      addedOver: ['p50', 'p99', 'p999'],
      rows,
    };
  },
};
