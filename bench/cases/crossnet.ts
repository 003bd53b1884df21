import { openCrossNetwork, type CrossNetworkSetup } from '../crossnet/setup.js';
import { setInnerPooling } from '../crossnet/pooling.js';
import { runWrk, wrkArgv } from '../load/generators.js';
import { CostSampler, cpuSecondsPer1kRequests } from '../process-cost.js';
import type { CaseRow } from '../report/types.js';
import { shellQuote } from '../shell.js';
import { errorMessage } from './case.js';
import { NEW_CONNECTION_CLIENTS } from './newconns.js';
import type { TwoNetworkCase, TwoNetworkCaseContext } from './two-network-case.js';
import { crossNetworkVariant, type CrossNetworkTarget } from './two-network-variants.js';

const TARGETS: CrossNetworkTarget[] = ['same network', 'cross network'];

async function measure(context: TwoNetworkCaseContext, setup: CrossNetworkSetup, target: CrossNetworkTarget, innerPooling: boolean): Promise<CaseRow> {
  const variant = crossNetworkVariant(target, innerPooling);
  if (context.stopped()) return { path: 'ambit', variant, values: {}, error: 'interrupted' };
  const seconds = context.quick ? 3 : 10;
  const address = target === 'cross network' ? setup.crossNetwork : setup.sameNetwork;
  try {
    // One second first: certificates, pooled outer sessions and TCP state are not part of the rate.
    await runWrk(setup.client.place, address, { connections: NEW_CONNECTION_CLIENTS, durationSeconds: 1, closeEachConnection: true });
    const innerBefore = await setup.innerSessionsOpened();
    const sampler = new CostSampler([setup.gateway]);
    let r: Awaited<ReturnType<typeof runWrk>>;
    try {
      r = await runWrk(setup.client.place, address, { connections: NEW_CONNECTION_CLIENTS, durationSeconds: seconds, closeEachConnection: true });
    } catch (err) {
      sampler.stop();
      throw err;
    }
    const [gateway] = sampler.stop();
    const innerSessions = (await setup.innerSessionsOpened()) - innerBefore;
    const crossing = target === 'cross network';
    context.log(`  ${variant}: ${Math.round(r.requestsPerSecond)} conn/s, ${r.errors} errors${crossing ? `, ${(innerSessions / Math.max(1, r.requests)).toFixed(3)} inner sessions per connection` : ''}`);
    return {
      path: 'ambit',
      variant,
      values: {
        cps: r.requestsPerSecond,
        p50: r.latencyMs.p50 ?? null,
        p99: r.latencyMs.p99 ?? null,
        errors: r.errors,
        innerSessionsPerConnection: crossing && r.requests > 0 ? innerSessions / r.requests : null,
        gatewayCpuPer1k: crossing && gateway ? cpuSecondsPer1kRequests(gateway.cpuSeconds, r.requests) : null,
        gatewayRssMiB: crossing && gateway ? gateway.rssMaxMiB : null,
      },
    };
  } catch (err) {
    context.log(`  ${variant}: FAILED: ${errorMessage(err)}`);
    return { path: 'ambit', variant, values: {}, error: errorMessage(err) };
  }
}

export const crossNetworkCase: TwoNetworkCase = {
  id: 'crossnet',
  title: 'Cross-network new connections/s through the east-west gateway (double HBONE), with and without pooled inner tunnels',
  async run(context) {
    const [c1, c2] = context.lab.clusters;
    const seconds = context.quick ? 3 : 10;
    const rows: CaseRow[] = [];
    const setup = await openCrossNetwork(context.lab, context.workDir, context.log);
    try {
      for (const innerPooling of [true, false]) {
        if (context.stopped()) break;
        try {
          if (await setInnerPooling(c1, innerPooling, context.log)) await setup.probe();
        } catch (err) {
          for (const target of TARGETS) rows.push({ path: 'ambit', variant: crossNetworkVariant(target, innerPooling), values: {}, error: `switching inner pooling ${innerPooling ? 'on' : 'off'}: ${errorMessage(err)}` });
          continue;
        }
        for (const target of TARGETS) rows.push(await measure(context, setup, target, innerPooling));
      }
    } finally {
      await setInnerPooling(c1, true, context.log).catch((err: unknown) => context.log(`  restoring inner pooling in ${c1.name}: ${errorMessage(err)}`));
      await setup.close();
    }
    const options = { connections: NEW_CONNECTION_CLIENTS, durationSeconds: seconds, closeEachConnection: true };
    return {
      id: 'crossnet',
      title: this.title,
      method:
        `\`${shellQuote(wrkArgv('http://<service>:8080/', options))}\` (after 1 s of the same) in a client pod of ${c1.name} (ambient namespace): ` +
        `same network: a Service of ${c1.name} whose nginx pod runs on another node (HBONE between the two ztunnels); ` +
        `cross network: a global Service (istio.io/global=true) that exists only in ${c2.name}, by the address ztunnel's DNS proxy gives its name, ` +
        `through ${c2.name}'s east-west gateway (${c2.gatewayAddress}): an outer HBONE tunnel to the gateway and an inner one, end to end, to the server's ztunnel. ` +
        `Inner pooling off: \`kubectl set env daemonset/ztunnel INNER_HBONE_POOLING=false\` in ${c1.name} and a rollout (a fresh inner TLS + HTTP/2 session per connection, as Istio's ztunnel does); on is the default. ` +
        'Inner sessions per connection: the client ztunnel\'s ambit_hbone_inner_sessions_opened_total over the run / connections. ' +
        'Gateway CPU and RSS: utime + stime and the largest VmRSS of the gateway pod\'s process over the run',
      params: { seconds, concurrentConnections: NEW_CONNECTION_CLIENTS },
      metrics: [
        { key: 'cps', label: 'connections/s', unit: '', digits: 0 },
        { key: 'p50', label: 'p50', unit: 'ms', digits: 3 },
        { key: 'p99', label: 'p99', unit: 'ms', digits: 3 },
        { key: 'errors', label: 'errors', unit: '', digits: 0 },
        { key: 'innerSessionsPerConnection', label: 'inner sessions / connection', unit: '', digits: 3 },
        { key: 'gatewayCpuPer1k', label: 'gateway CPU-s / 1k conn', unit: '', digits: 4 },
        { key: 'gatewayRssMiB', label: 'gateway RSS', unit: 'MiB', digits: 1 },
      ],
      rows,
    };
  },
};
