import type { Spawned } from '../exec.js';
import { iperf3Argv, runIperf3 } from '../load/generators.js';
import { IPERF_PORT, startIperf3Server } from '../servers.js';
import { shellQuote } from '../shell.js';
import { distinctEndpoints, measurePath, type BenchCase } from './case.js';

export const throughputCase: BenchCase = {
  id: 'throughput',
  title: 'L4 bulk throughput, pod → pod across nodes (iperf3, one TCP stream)',
  async run(context) {
    const seconds = context.quick ? 3 : 10;
    const servers: Spawned[] = [];
    const rows = [];
    try {
      for (const [i, endpoints] of distinctEndpoints(context.paths).entries()) {
        servers.push(await startIperf3Server(endpoints.serverPod, context.workDir, String(i)));
      }
      for (const path of context.paths) {
        rows.push(
          await measurePath(context, path, undefined, async () => {
            const r = await runIperf3(path.endpoints.clientPod, path.dial(IPERF_PORT), seconds);
            context.log(`  ${path.name}: ${(r.receivedBitsPerSecond / 1e9).toFixed(2)} Gbit/s`);
            return { gbps: r.receivedBitsPerSecond / 1e9, retransmits: r.retransmits };
          }),
        );
      }
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
    return {
      id: 'throughput',
      title: this.title,
      method: `\`${shellQuote(iperf3Argv({ host: '<target>', port: IPERF_PORT }, seconds))}\` in the client pod against \`iperf3 --server\` in the server pod; throughput as received by the server`,
      params: { seconds, streams: 1 },
      metrics: [
        { key: 'gbps', label: 'throughput', unit: 'Gbit/s', digits: 2 },
        { key: 'retransmits', label: 'retransmits', unit: '', digits: 0 },
      ],
      compare: 'gbps',
      rows,
    };
  },
};
