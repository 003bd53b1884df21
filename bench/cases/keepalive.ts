import { runWrk, wrkArgv } from '../load/generators.js';
import { HTTP_PORT } from '../servers.js';
import { shellQuote } from '../shell.js';
import { measurePath, type BenchCase } from './case.js';

export const keepAliveConnectionCounts = (quick: boolean) => (quick ? [1, 32] : [1, 8, 32, 128]);

export const keepAliveCase: BenchCase = {
  id: 'keepalive',
  title: 'HTTP keep-alive requests/s at saturation (wrk against nginx)',
  async run(context) {
    const seconds = context.quick ? 3 : 10;
    const counts = keepAliveConnectionCounts(context.quick);
    const rows = [];
    for (const connections of counts) {
      for (const path of context.paths) {
        rows.push(
          await measurePath(context, path, `${connections} conn`, async () => {
            const r = await runWrk(path.endpoints.clientPod, path.dial(HTTP_PORT), { connections, durationSeconds: seconds });
            context.log(`  ${path.name} c=${connections}: ${Math.round(r.requestsPerSecond)} req/s, p99 ${r.latencyMs.p99?.toFixed(2)} ms, ${r.errors} errors`);
            return {
              rps: r.requestsPerSecond,
              p50: r.latencyMs.p50 ?? null,
              p90: r.latencyMs.p90 ?? null,
              p99: r.latencyMs.p99 ?? null,
              errors: r.errors,
            };
          }),
        );
      }
    }
    return {
      id: 'keepalive',
      title: this.title,
      method: `\`${shellQuote(wrkArgv('http://<target>/', { connections: 0, durationSeconds: seconds })).replace('-c 0', '-c <n>')}\` in the client pod, one wrk thread, for each connection count; nginx (one worker) answers a 12-byte body from memory`,
      params: { seconds, connections: counts.join(', '), wrkThreads: 1 },
      metrics: [
        { key: 'rps', label: 'requests/s', unit: '', digits: 0 },
        { key: 'p50', label: 'p50', unit: 'ms', digits: 3 },
        { key: 'p90', label: 'p90', unit: 'ms', digits: 3 },
        { key: 'p99', label: 'p99', unit: 'ms', digits: 3 },
        { key: 'errors', label: 'errors', unit: '', digits: 0 },
      ],
      compare: 'rps',
      rows,
    };
  },
};
