import { runWrk, wrkArgv } from '../load/generators.js';
import { HTTP_PORT } from '../servers.js';
import { shellQuote } from '../shell.js';
import { measurePath, type BenchCase } from './case.js';

export const NEW_CONNECTION_CLIENTS = 16;

export const newConnectionsCase: BenchCase = {
  id: 'newconns',
  title: 'New connections per second (one HTTP request per connection)',
  async run(context) {
    const seconds = context.quick ? 3 : 10;
    const options = { connections: NEW_CONNECTION_CLIENTS, durationSeconds: seconds, closeEachConnection: true };
    const rows = [];
    for (const path of context.paths) {
      rows.push(
        await measurePath(context, path, undefined, async () => {
          const r = await runWrk(path.endpoints.clientPod, path.dial(HTTP_PORT), options);
          context.log(`  ${path.name}: ${Math.round(r.requestsPerSecond)} conn/s, ${r.errors} errors`);
          return { cps: r.requestsPerSecond, p50: r.latencyMs.p50 ?? null, p99: r.latencyMs.p99 ?? null, completed: r.requests, errors: r.errors };
        }),
      );
    }
    return {
      id: 'newconns',
      title: this.title,
      method: `\`${shellQuote(wrkArgv('http://<target>/', options))}\` in the client pod: wrk opens a new connection for every request (nginx closes each after its response); each successful request is one connection`,
      params: { seconds, concurrentConnections: NEW_CONNECTION_CLIENTS },
      metrics: [
        { key: 'cps', label: 'connections/s', unit: '', digits: 0 },
        { key: 'p50', label: 'p50', unit: 'ms', digits: 3 },
        { key: 'p99', label: 'p99', unit: 'ms', digits: 3 },
        { key: 'completed', label: 'completed', unit: '', digits: 0 },
        { key: 'errors', label: 'errors', unit: '', digits: 0 },
      ],
      compare: 'cps',
      rows,
    };
  },
};
