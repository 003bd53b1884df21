import { fixedRateArgv, runFixedRateLoad, runWrk, wrkArgv, type WrkOptions } from '../load/generators.js';
import { GATEWAY, IN_CLUSTER, MIXED_VARIANTS, mixedNotes, SAME_NETWORK_P50_LIMIT, withMixedComparisons, type MixedVariant } from '../mixed/compare.js';
import type { MixedNetworkLab } from '../mixed/lab.js';
import { MIXED_SERVICES, openMixedNetwork, type MixedNetworkSetup, type MixedTarget } from '../mixed/setup.js';
import type { WrkResult } from '../parsers/wrk.js';
import { CostSampler, cpuSecondsPer1kRequests, type GroupCost } from '../process-cost.js';
import type { CaseResult, CaseRow, MixedNetworkCaseId } from '../report/types.js';
import { HTTP_PORT } from '../servers.js';
import { shellQuote } from '../shell.js';
import { errorMessage } from './case.js';
import { FIXED_RATE, fixedRateOptions, fixedRateSummary, fixedRateValues } from './latency.js';
import { NEW_CONNECTION_CLIENTS } from './newconns.js';

export interface MixedNetworkCaseContext {
  quick: boolean;
  lab: MixedNetworkLab;
  workDir: string;
  log: (line: string) => void;
  /** True once the run was interrupted: measure nothing more. */
  stopped: () => boolean;
}

/** A case on the mixed-network lab; it creates what it needs in the lab and removes it again. */
export interface MixedNetworkCase {
  id: MixedNetworkCaseId;
  title: string;
  run(context: MixedNetworkCaseContext): Promise<CaseResult>;
}

/** Keep-alive connections at saturation: where the one-cluster keep-alive case is compared. */
export const MIXED_KEEPALIVE_CONNECTIONS = 32;


/** One target's values as they are measured, and what failed. */
interface Measured {
  values: Record<string, number | null>;
  errors: string[];
}

async function measureEach(context: MixedNetworkCaseContext, setup: MixedNetworkSetup, measured: Map<MixedVariant, Measured>, what: string, measure: (target: MixedTarget) => Promise<Record<string, number | null>>): Promise<void> {
  for (const target of setup.targets) {
    const m = measured.get(target.variant)!;
    if (context.stopped()) {
      m.errors.push('interrupted');
      continue;
    }
    try {
      Object.assign(m.values, await measure(target));
    } catch (err) {
      context.log(`  ${target.variant}, ${what}: FAILED: ${errorMessage(err)}`);
      m.errors.push(`${what}: ${errorMessage(err)}`);
    }
  }
}

const MIXED_TITLE = 'Mixed networks: in-cluster, same network (another cluster) and another network (east-west gateway), from one client';

/** Measures the three targets of a set-up mixed network (which stays open) and makes the case's result. */
export async function measureMixedNetwork(context: MixedNetworkCaseContext, setup: MixedNetworkSetup): Promise<CaseResult> {
  const [local, sameNetwork, otherNetwork] = context.lab.clusters;
  const seconds = context.quick ? 3 : 10;
  const rate = fixedRateOptions(context.quick);
  const keepAlive: WrkOptions = { connections: MIXED_KEEPALIVE_CONNECTIONS, durationSeconds: seconds };
  const newConnections: WrkOptions = { connections: NEW_CONNECTION_CLIENTS, durationSeconds: seconds, closeEachConnection: true };
  const measured = new Map<MixedVariant, Measured>(MIXED_VARIANTS.map((v) => [v, { values: {}, errors: [] }]));
  const placement = setup.targets.map((t) => `${t.variant}: Service ${t.service} only in ${t.cluster.name}, its nginx pod on ${t.server.node}`).join('; ');
  // Each measurement over the three targets in turn, so that they run under the same conditions.
  await measureEach(context, setup, measured, `latency at ${FIXED_RATE} req/s`, async (target) => {
    const r = await runFixedRateLoad(setup.client.place, target.address, rate);
    context.log(`  ${target.variant}: ${fixedRateSummary(r)}`);
    return { ...fixedRateValues(r), rateErrors: r.errors };
  });
  await measureEach(context, setup, measured, `keep-alive c=${MIXED_KEEPALIVE_CONNECTIONS}`, async (target) => {
    const sampler = target.variant === GATEWAY ? new CostSampler([setup.gateway]) : undefined;
    let gateway: GroupCost | undefined;
    let r: WrkResult;
    try {
      r = await runWrk(setup.client.place, target.address, keepAlive);
    } finally {
      gateway = sampler?.stop()[0];
    }
    context.log(`  ${target.variant}: ${Math.round(r.requestsPerSecond)} req/s keep-alive, p99 ${r.latencyMs.p99?.toFixed(2)} ms, ${r.errors} errors`);
    return {
      rps: r.requestsPerSecond,
      rpsP50: r.latencyMs.p50 ?? null,
      rpsP99: r.latencyMs.p99 ?? null,
      rpsErrors: r.errors,
      gatewayCpuPer1k: gateway ? cpuSecondsPer1kRequests(gateway.cpuSeconds, r.requests) : null,
    };
  });
  await measureEach(context, setup, measured, 'new connections', async (target) => {
    // One second first: certificates, pooled outer sessions and TCP state are not part of the rate.
    await runWrk(setup.client.place, target.address, { ...newConnections, durationSeconds: 1 });
    const r = await runWrk(setup.client.place, target.address, newConnections);
    context.log(`  ${target.variant}: ${Math.round(r.requestsPerSecond)} conn/s, ${r.errors} errors`);
    return { cps: r.requestsPerSecond, cpsP50: r.latencyMs.p50 ?? null, cpsP99: r.latencyMs.p99 ?? null, cpsErrors: r.errors };
  });

  const rows: CaseRow[] = MIXED_VARIANTS.map((variant) => {
    const { values, errors } = measured.get(variant)!;
    const total = ['rateErrors', 'rpsErrors', 'cpsErrors'].reduce((sum, key) => sum + (values[key] ?? 0), 0);
    return { path: 'ambit', variant, values: { ...values, errors: total }, ...(errors.length ? { error: errors.join('; ') } : {}) };
  });
  const dial = (service: string) => `http://<${service}>:${HTTP_PORT}/`;
  return {
    id: 'mixed',
    title: MIXED_TITLE,
    method:
      `A client pod on ${local.name}/${setup.client.node} (ambient namespace bench-mixed, in every cluster) and three nginx servers, each behind a global Service (istio.io/global=true) that exists only in its own cluster, so that each has exactly one path: ${placement}. ` +
      `In-cluster: HBONE between the ztunnels of two nodes (the baseline); same network: ${sameNetwork.name} shares ${local.network}, so ztunnel tunnels straight to the remote pod's ztunnel (same hops as in-cluster); ` +
      `other network: ${otherNetwork.name} is on ${otherNetwork.network}, so the connection is double HBONE through its east-west gateway (${otherNetwork.gatewayAddress}), inner sessions pooled (the default). ` +
      `${MIXED_SERVICES[IN_CLUSTER]} is dialled at its cluster IP, the other two at the address ztunnel's DNS proxy gives their names. ` +
      `Before measuring, each path is checked: in-cluster and same network reach the server's ztunnel over HBONE (it reports the client's identity) and ${sameNetwork.name}'s gateway forwards nothing; the gateway path is counted by ${otherNetwork.name}'s gateway. ` +
      `Measured for the three targets in turn: latency \`node --import tsx bench/tools/fixed-rate.ts ${shellQuote(fixedRateArgv({ host: '<target>', port: HTTP_PORT }, rate).slice(4))}\` (open loop, ${rate.connections} keep-alive connections, as the latency case); ` +
      `keep-alive \`${shellQuote(wrkArgv(dial('target'), keepAlive))}\`; new connections \`${shellQuote(wrkArgv(dial('target'), newConnections))}\` (after 1 s of the same). ` +
      `Ratios are to the in-cluster row; "added over same network" is the gateway row's latency minus the same-network row's. Gateway CPU: utime + stime of ${otherNetwork.name}'s gateway process over the keep-alive run, per 1,000 requests. ` +
      `The target (same-network p50 ≤ ${SAME_NETWORK_P50_LIMIT}× in-cluster) is reported, not asserted`,
    params: {
      rate: rate.rate,
      rateSeconds: rate.durationSeconds,
      rateConnections: rate.connections,
      seconds,
      keepAliveConnections: MIXED_KEEPALIVE_CONNECTIONS,
      newConnectionClients: NEW_CONNECTION_CLIENTS,
    },
    metrics: [
      { key: 'p50', label: 'p50', unit: 'ms', digits: 3 },
      { key: 'p99', label: 'p99', unit: 'ms', digits: 3 },
      { key: 'p999', label: 'p99.9', unit: 'ms', digits: 3 },
      { key: 'achievedRate', label: 'achieved', unit: 'req/s', digits: 0 },
      { key: 'rps', label: 'keep-alive req/s', unit: '', digits: 0 },
      { key: 'cps', label: 'connections/s', unit: '', digits: 0 },
      { key: 'errors', label: 'errors', unit: '', digits: 0 },
      { key: 'p50VsInCluster', label: 'p50 × in-cluster', unit: '', digits: 2 },
      { key: 'rpsVsInCluster', label: 'req/s × in-cluster', unit: '', digits: 2 },
      { key: 'cpsVsInCluster', label: 'conn/s × in-cluster', unit: '', digits: 2 },
      { key: 'p50OverSameNetworkMs', label: 'p50 added over same network', unit: 'ms', digits: 3 },
      { key: 'p99OverSameNetworkMs', label: 'p99 added over same network', unit: 'ms', digits: 3 },
      { key: 'gatewayCpuPer1k', label: 'gateway CPU-s / 1k req', unit: '', digits: 4 },
    ],
    rows: withMixedComparisons(rows),
    notes: mixedNotes(rows),
  };
}

export const mixedNetworkCase: MixedNetworkCase = {
  id: 'mixed',
  title: MIXED_TITLE,
  async run(context) {
    const setup = await openMixedNetwork(context.lab, context.workDir, context.log);
    try {
      return await measureMixedNetwork(context, setup);
    } finally {
      await setup.close();
    }
  },
};
