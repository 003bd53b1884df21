import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { measureMixedNetwork, MIXED_KEEPALIVE_CONNECTIONS, type MixedNetworkCaseContext } from '../bench/cases/mixed.js';
import { MIXED_NEEDS_THE_LAB, MIXED_NOT_IN_QUICK, notMeasured } from '../bench/cases/not-measured.js';
import type { Place, RunResult } from '../bench/exec.js';
import { compareMixed, GATEWAY, gatewayCostSummary, IN_CLUSTER, MIXED_VARIANTS, mixedNotes, SAME_NETWORK, sameNetworkLatencyVerdict, withMixedComparisons } from '../bench/mixed/compare.js';
import { MIXED_TOPOLOGY_FILE, mixedNetworkClusters } from '../bench/mixed/lab.js';
import { MIXED_CLIENT, MIXED_NAMESPACE, MIXED_SERVICES, mixedManifests, type MixedNetworkSetup } from '../bench/mixed/setup.js';
import { listInWords, twoNetworkClusters, type LabCluster } from '../bench/multicluster-lab.js';
import { parseOptions } from '../bench/options.js';
import { renderMarkdown } from '../bench/report/markdown.js';
import { checkTargets } from '../bench/report/targets.js';
import { CASE_IDS, isMixedNetworkCase, isOneClusterCase, isTwoNetworkCase, type BenchReport, type CaseResult, type CaseRow } from '../bench/report/types.js';
import { planLab, type ClusterPlan } from '../src/lab/plan.js';
import { loadTopology } from '../src/lab/topology.js';
import { percentiles, wrkOutput } from './helpers/bench-fakes.js';

const repoRoot = fileURLToPath(new URL('../', import.meta.url));

describe('bench mixed-network case: the lab', () => {
  const lab = (clusters: Array<[string, string, number]>) => ({
    plan: { networks: [], clusters: clusters.map(([name, network, nodes]) => ({ name, network, nodes: Array.from({ length: nodes }, (_, i) => ({ name: `${name}-node${i + 1}` })) }) as unknown as ClusterPlan) },
  });
  const names = (picked: ClusterPlan[] | undefined) => picked?.map((c) => c.name);

  it('its topology file gives a two-node cluster, another cluster on its network and one on another network', () => {
    const plan = planLab(loadTopology(join(repoRoot, MIXED_TOPOLOGY_FILE)));
    const picked = mixedNetworkClusters({ plan });
    assert.deepEqual(names(picked), ['cluster1', 'cluster2', 'cluster3']);
    assert.deepEqual(picked![0].nodes.map((n) => n.name), ['cluster1-node1', 'cluster1-node2']);
    assert.equal(picked![0].network, picked![1].network);
    assert.notEqual(picked![0].network, picked![2].network);
    // The two-network phase never mistakes it for its own lab (its first two clusters share a network).
    assert.equal(twoNetworkClusters({ plan }), undefined);
  });

  it('recognises a lab that fits, and refuses the others', () => {
    assert.deepEqual(names(mixedNetworkClusters(lab([['cluster1', 'east', 2], ['cluster2', 'east', 1], ['cluster3', 'west', 1]]))), ['cluster1', 'cluster2', 'cluster3']);
    assert.deepEqual(names(mixedNetworkClusters(lab([['a', 'west', 1], ['b', 'east', 1], ['c', 'east', 2]]))), ['c', 'b', 'a']);
    // topologies/three-clusters-mixed.yaml: one node in each cluster, so no in-cluster path across nodes.
    const seed001 = planLab(loadTopology(join(repoRoot, 'topologies/three-clusters-mixed.yaml')));
    assert.equal(mixedNetworkClusters({ plan: seed001 }), undefined);
    assert.equal(mixedNetworkClusters(lab([['cluster1', 'network1', 2], ['cluster2', 'network2', 2]])), undefined, 'two-networks.yaml: nothing on the same network');
    assert.equal(mixedNetworkClusters(lab([['cluster1', 'east', 2], ['cluster2', 'east', 1]])), undefined, 'nothing on another network');
  });

  it('describes clusters in words', () => {
    assert.equal(listInWords(['a']), 'a');
    assert.equal(listInWords(['a', 'b']), 'a and b');
    assert.equal(listInWords(['a', 'b', 'c']), 'a, b and c');
  });
});

describe('bench mixed-network case: pods and services', () => {
  type Item = { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: { nodeName?: string; selector?: Record<string, string> } };
  type List = { items: Item[] };
  const m = mixedManifests(['cluster1-node1', 'cluster1-node2'], ['cluster2-node1'], ['cluster3-node1']) as { local: List; sameNetwork: List; otherNetwork: List };
  const pods = (list: List) => list.items.filter((i) => i.kind === 'Pod').map((i) => `${i.metadata.name}@${i.spec?.nodeName}`);
  const services = (list: List) => list.items.filter((i) => i.kind === 'Service').map((i) => `${i.metadata.name}:${i.metadata.labels?.['istio.io/global']}:${i.spec?.selector?.app}`);

  it('puts the client and the in-cluster server on different nodes, and each server on its own cluster', () => {
    assert.deepEqual(pods(m.local), [`${MIXED_CLIENT}@cluster1-node1`, 'mixed-local@cluster1-node2']);
    assert.deepEqual(pods(m.sameNetwork), ['mixed-east@cluster2-node1']);
    assert.deepEqual(pods(m.otherNetwork), ['mixed-west@cluster3-node1']);
  });

  it('gives each target a global Service that exists only in its cluster, in the same ambient namespace everywhere', () => {
    assert.deepEqual(services(m.local), ['mixed-local:true:mixed-local']);
    assert.deepEqual(services(m.sameNetwork), ['mixed-east:true:mixed-east']);
    assert.deepEqual(services(m.otherNetwork), ['mixed-west:true:mixed-west']);
    for (const list of [m.local, m.sameNetwork, m.otherNetwork]) {
      const ns = list.items.find((i) => i.kind === 'Namespace')!;
      assert.equal(ns.metadata.name, MIXED_NAMESPACE);
      assert.equal(ns.metadata.labels?.['istio.io/dataplane-mode'], 'ambient');
      assert.ok(list.items.filter((i) => i.kind !== 'Namespace').every((i) => i.metadata.namespace === MIXED_NAMESPACE));
    }
  });

  it('refuses a local cluster of one node: the in-cluster baseline must cross nodes', () => {
    assert.throws(() => mixedManifests(['cluster1-node1'], ['cluster2-node1'], ['cluster3-node1']), /two nodes/);
    assert.throws(() => mixedManifests(['cluster1-node1', 'cluster1-node2'], [], ['cluster3-node1']), /needs a node/);
  });
});

const row = (variant: string, values: Record<string, number | null>, error?: string): CaseRow => ({ path: 'ambit', variant, values, ...(error ? { error } : {}) });
const rows = (sameP50: number, options: { gatewayError?: string } = {}): CaseRow[] => [
  row(IN_CLUSTER, { p50: 0.4, p99: 1.0, p999: 2.0, rps: 10_000, cps: 2_000, gatewayCpuPer1k: null }),
  row(SAME_NETWORK, { p50: sameP50, p99: 1.1, p999: 2.5, rps: 9_000, cps: 1_800, gatewayCpuPer1k: null }),
  row(GATEWAY, { p50: 0.9, p99: 2.6, p999: 4.0, rps: 5_000, cps: 800, gatewayCpuPer1k: 0.05 }, options.gatewayError),
];
const near = (a: number | null | undefined, b: number) => assert.ok(a != null && Math.abs(a - b) < 1e-9, `${a} ≈ ${b}`);

describe('bench mixed-network case: comparisons', () => {
  it('same network and gateway relative to in-cluster, and the gateway\'s latency added over same network', () => {
    const c = compareMixed(rows(0.42));
    near(c.sameNetwork.p50, 1.05);
    near(c.sameNetwork.rps, 0.9);
    near(c.sameNetwork.cps, 0.9);
    near(c.gateway.p50, 2.25);
    near(c.gateway.rps, 0.5);
    near(c.gateway.cps, 0.4);
    near(c.gatewayAddedMs.p50, 0.48);
    near(c.gatewayAddedMs.p99, 1.5);
    near(c.gatewayAddedMs.p999, 1.5);
  });

  it('puts the comparisons in the rows (in-cluster at 1×, the added latency on the gateway row only), leaving failed rows alone', () => {
    const out = withMixedComparisons(rows(0.42));
    assert.deepEqual(out.map((r) => r.variant), [...MIXED_VARIANTS]);
    const [inCluster, same, gateway] = out;
    assert.equal(inCluster!.values.p50VsInCluster, 1);
    assert.equal(inCluster!.values.p50OverSameNetworkMs, null);
    near(same!.values.p50VsInCluster, 1.05);
    assert.equal(same!.values.p50OverSameNetworkMs, null);
    near(gateway!.values.p50OverSameNetworkMs, 0.48);
    near(gateway!.values.cpsVsInCluster, 0.4);
    const failed = withMixedComparisons(rows(0.42, { gatewayError: 'wrk exited 1' }));
    assert.equal(failed[2]!.values.p50VsInCluster, undefined);
    assert.equal(compareMixed(failed).gateway.p50, null, 'a failed row is not compared');
    assert.equal(compareMixed(failed).gatewayAddedMs.p50, null);
  });

  it('says the ratios in words under the table', () => {
    const notes = mixedNotes(rows(0.42));
    assert.match(notes[0]!, /^Same network \/ in-cluster: latency p50 1\.05×, p99 1\.10×, p99\.9 1\.25×; keep-alive requests\/s 0\.90×; new connections\/s 0\.90×\.$/);
    assert.match(notes[1]!, /^Gateway \/ in-cluster: latency p50 2\.25×/);
    assert.match(notes[2]!, /p50 \+0\.480 ms, p99 \+1\.500 ms, p99\.9 \+1\.500 ms; the east-west gateway spent 0\.0500 CPU-s per 1,000 keep-alive requests\.$/);
    assert.match(mixedNotes([])[0]!, /p50 –/);
  });
});

describe('bench mixed-network case: targets and report', () => {
  const mixed = (sameP50: number, options: { gatewayError?: string } = {}): CaseResult => ({ id: 'mixed', title: 'Mixed networks', method: 'm', params: {}, metrics: [{ key: 'p50', label: 'p50', unit: 'ms', digits: 3 }], rows: withMixedComparisons(rows(sameP50, options)), notes: mixedNotes(rows(sameP50, options)) });
  const targetsOf = (cases: CaseResult[]) => new Map(checkTargets(cases).map((t) => [t.id, t]));

  it('same-network p50 ≤ 1.1× in-cluster: met, not met, with the ratio and both latencies in the note', () => {
    const met = targetsOf([mixed(0.42)]).get('mixed-same-network')!;
    assert.equal(met.met, true);
    near(met.value, 1.05);
    assert.equal(met.target, '≤ 1.1× in-cluster');
    assert.equal(met.measured, '1.05× in-cluster (same network 0.420 ms, in-cluster 0.400 ms; p99 1.10×)');
    assert.equal(targetsOf([mixed(0.436)]).get('mixed-same-network')!.met, true);
    assert.equal(targetsOf([mixed(0.48)]).get('mixed-same-network')!.met, false);
    assert.equal(sameNetworkLatencyVerdict([]), undefined);
  });

  it('the gateway\'s extra cost is reported, never judged', () => {
    const t = targetsOf([mixed(0.42)]).get('mixed-gateway-cost')!;
    assert.equal(t.met, null);
    assert.equal(t.reported, true);
    assert.equal(t.target, 'reported');
    near(t.value, 0.48);
    assert.match(t.measured!, /^p50 \+0\.480 ms, p99 \+1\.500 ms over same network; vs in-cluster: p50 2\.25×, keep-alive req\/s 0\.50×, new conn\/s 0\.40×; gateway 0\.0500 CPU-s \/ 1k req$/);
    const failed = targetsOf([mixed(0.42, { gatewayError: 'boom' })]);
    assert.equal(failed.get('mixed-gateway-cost')!.measured, null);
    assert.match(failed.get('mixed-gateway-cost')!.note!, /no same-network and gateway result/);
    assert.equal(failed.get('mixed-same-network')!.met, true, 'the same-network target does not need the gateway row');
    assert.equal(gatewayCostSummary([]), undefined);
  });

  it('not measured with --skip-lab or --quick, with the reason; the markdown says reported / not measured and shows the notes', () => {
    const skipped = targetsOf([notMeasured('mixed', 'Mixed networks', MIXED_NOT_IN_QUICK)]);
    assert.equal(skipped.get('mixed-same-network')!.met, null);
    assert.match(skipped.get('mixed-same-network')!.note!, /case "mixed" not measured: not measured in --quick/);
    assert.match(targetsOf([]).get('mixed-gateway-cost')!.note!, /case "mixed" did not run/);
    assert.match(MIXED_NEEDS_THE_LAB, /needs the lab/);

    const cases = [mixed(0.42)];
    const report: BenchReport = {
      schema: 1, startedAt: '2025-01-02T03:04:05.678Z', finishedAt: '2025-01-02T03:05:00.000Z', command: 'npm run bench -- --cases mixed', quick: false,
      machine: { cpuModel: 'CPU', cores: 2, memoryGiB: 4, kernel: '6', os: 'Debian', node: 'v20', tools: {} },
      loadAverage: { start: '0 0 0', end: '0 0 0' }, topology: { kind: 'lab', description: 'mixed' }, paths: [], cases, targets: checkTargets(cases), notes: [],
    };
    const md = renderMarkdown(report, { path: 'x.json', link: 'x.json' });
    assert.match(md, /\| same-network p50 latency .* \| ≤ 1\.1× in-cluster \| 1\.05× in-cluster .* \| \*\*met\*\* \|/);
    assert.match(md, /\| gateway path's extra cost .* \| reported \| p50 \+0\.480 ms.* \| reported \|/);
    assert.match(md, /\| ambit \| in-cluster \| 0\.400 \|/);
    assert.match(md, /\n- Same network \/ in-cluster: latency p50 1\.05×/);
    const quick = { ...report, cases: [notMeasured('mixed', 'Mixed networks', MIXED_NOT_IN_QUICK)] };
    quick.targets = checkTargets(quick.cases);
    const quickMd = renderMarkdown(quick, { path: 'x.json', link: 'x.json' });
    assert.match(quickMd, /## Mixed networks\n\nNot measured: not measured in --quick/);
    assert.match(quickMd, /\| gateway path's extra cost .* \| reported \| .* \| not measured \|/);
  });

  it('options: mixed is a case of its own phase, last; --quick runs it only when --cases names it', () => {
    assert.equal(CASE_IDS[CASE_IDS.length - 1], 'mixed');
    assert.ok(isMixedNetworkCase('mixed') && !isOneClusterCase('mixed') && !isTwoNetworkCase('mixed'));
    assert.ok(isOneClusterCase('latency') && !isMixedNetworkCase('latency'));
    assert.equal(parseOptions(['--quick']).casesNamed, false);
    const named = parseOptions(['--skip-lab', '--quick', '--cases', 'mixed']);
    assert.deepEqual(named.cases, ['mixed']);
    assert.equal(named.casesNamed, true);
    assert.deepEqual(parseOptions(['--cases', 'mixed,crossnet,latency']).cases, ['latency', 'crossnet', 'mixed']);
  });
});

describe('bench mixed-network case: measuring (a fake client pod)', () => {
  const cluster = (name: string, network: string): LabCluster => ({ name, context: `lab-${name}`, network, nodes: [], gatewayAddress: '198.18.66.1' });
  const clusters = [cluster('cluster1', 'network-east'), cluster('cluster2', 'network-east'), cluster('cluster3', 'network-west')] as const;
  const hosts = { [IN_CLUSTER]: '10.96.0.10', [SAME_NETWORK]: '240.240.0.1', [GATEWAY]: '240.240.0.2' };
  /** Per target host: p50 in µs at the fixed rate, keep-alive req/s, new connections/s. */
  const figures: Record<string, { p50Us: number; rps: number; cps: number }> = {
    [hosts[IN_CLUSTER]]: { p50Us: 400, rps: 10_000, cps: 2_000 },
    [hosts[SAME_NETWORK]]: { p50Us: 420, rps: 9_000, cps: 1_800 },
    [hosts[GATEWAY]]: { p50Us: 900, rps: 5_000, cps: 800 },
  };

  function fakeClient(calls: string[][], fail?: (argv: string[]) => boolean): Place {
    return {
      label: 'fake client pod',
      async run(argv: string[]): Promise<RunResult> {
        calls.push(argv);
        if (fail?.(argv)) return { code: 1, stdout: '', stderr: 'unable to connect' };
        const url = argv.includes('--url') ? argv[argv.indexOf('--url') + 1]! : argv[argv.length - 1]!;
        const f = figures[new URL(url).hostname]!;
        if (argv[0] === 'wrk') return { code: 0, stdout: wrkOutput(argv.includes('Connection: close') ? f.cps : f.rps), stderr: '' };
        const result = { url, rate: 1000, connections: 8, durationSeconds: 5, issued: 5000, completed: 5000, errors: 0, achievedRate: 1000, latencyUs: percentiles(f.p50Us), latencyFromScheduleUs: percentiles(f.p50Us), scheduleLagUs: percentiles(50) };
        return { code: 0, stdout: `${JSON.stringify(result)}\n`, stderr: '' };
      },
      spawn() {
        throw new Error('not used');
      },
    };
  }

  function fakeSetup(place: Place): MixedNetworkSetup {
    const pod = (name: string, node: string) => ({ name, node, ip: '198.19.0.5', phase: 'Running', ready: true, pid: process.pid, place });
    return {
      client: pod(MIXED_CLIENT, 'cluster1-node1'),
      targets: MIXED_VARIANTS.map((variant, i) => ({ variant, service: MIXED_SERVICES[variant], cluster: clusters[i]!, server: pod(MIXED_SERVICES[variant], `${clusters[i]!.name}-node${i === 0 ? 2 : 1}`), address: { host: hosts[variant], port: 8080 } })),
      gateway: { label: 'east-west gateway of cluster3', pids: () => [process.pid] },
      close: async () => undefined,
    };
  }

  const context = (stopped = () => false): MixedNetworkCaseContext => ({
    quick: true,
    lab: { clusters, description: 'mixed', workDir: '/tmp', teardown: async () => undefined },
    workDir: '/tmp',
    log: () => undefined,
    stopped,
  });

  it('runs latency, keep-alive and new connections over the three targets in turn, and fills the rows with their comparisons', async () => {
    const calls: string[][] = [];
    const result = await measureMixedNetwork(context(), fakeSetup(fakeClient(calls)));
    const target = (argv: string[]) => new URL(argv.includes('--url') ? argv[argv.indexOf('--url') + 1]! : argv[argv.length - 1]!).hostname;
    const kind = (argv: string[]) => (argv[0] !== 'wrk' ? 'rate' : argv.includes('Connection: close') ? `close ${argv[argv.indexOf('-d') + 1]}` : `keep-alive c=${argv[argv.indexOf('-c') + 1]}`);
    const [l, e, w] = [hosts[IN_CLUSTER], hosts[SAME_NETWORK], hosts[GATEWAY]];
    assert.deepEqual(calls.map((a) => `${kind(a)} ${target(a)}`), [
      `rate ${l}`, `rate ${e}`, `rate ${w}`,
      `keep-alive c=${MIXED_KEEPALIVE_CONNECTIONS} ${l}`, `keep-alive c=32 ${e}`, `keep-alive c=32 ${w}`,
      `close 1s ${l}`, `close 3s ${l}`, `close 1s ${e}`, `close 3s ${e}`, `close 1s ${w}`, `close 3s ${w}`,
    ]);
    assert.equal(result.id, 'mixed');
    assert.deepEqual(result.rows.map((r) => [r.variant, r.error]), MIXED_VARIANTS.map((v) => [v, undefined]));
    const [inCluster, same, gateway] = result.rows;
    assert.equal(inCluster!.values.p50, 0.4);
    assert.equal(inCluster!.values.rps, 10_000);
    assert.equal(inCluster!.values.cps, 2_000);
    assert.equal(inCluster!.values.errors, 0);
    near(same!.values.p50VsInCluster, 1.05);
    near(gateway!.values.p50OverSameNetworkMs, 0.48);
    near(gateway!.values.cpsVsInCluster, 0.4);
    assert.equal(inCluster!.values.gatewayCpuPer1k, null);
    assert.equal(typeof gateway!.values.gatewayCpuPer1k, 'number', 'the gateway is sampled during the gateway keep-alive run');
    assert.equal(result.notes?.length, 3);
    assert.ok(result.metrics.every((m) => result.rows.every((r) => m.key in r.values)), 'every shown metric has a value (or null) in every row');
    assert.match(result.method, /`wrk --latency -t 1 -c 32 -d 3s --timeout 5s http:\/\/<target>:8080\/`/);
    assert.match(result.method, /-H 'Connection: close'/);
    assert.match(result.method, /--rate 1000 --duration 5/);
    assert.match(result.method, /mixed-local only in cluster1, its nginx pod on cluster1-node2/);
    assert.equal(checkTargets([result]).find((t) => t.id === 'mixed-same-network')?.met, true);
  });

  it('a failed measurement marks its target\'s row failed, and the others are still measured and compared', async () => {
    const calls: string[][] = [];
    const failKeepAliveWest = (argv: string[]) => argv[0] === 'wrk' && !argv.includes('Connection: close') && argv[argv.length - 1]!.includes(hosts[GATEWAY]);
    const result = await measureMixedNetwork(context(), fakeSetup(fakeClient(calls, failKeepAliveWest)));
    assert.equal(calls.length, 12, 'the new-connection runs still happen');
    const [, same, gateway] = result.rows;
    assert.match(gateway!.error!, /^keep-alive c=32: wrk .* exited 1: unable to connect$/);
    assert.equal(gateway!.values.cps, 800, 'what was measured stays in the JSON');
    assert.equal(same!.error, undefined);
    const targets = new Map(checkTargets([result]).map((t) => [t.id, t]));
    assert.equal(targets.get('mixed-same-network')?.met, true);
    assert.equal(targets.get('mixed-gateway-cost')?.measured, null);
  });

  it('measures nothing once the run is interrupted', async () => {
    const calls: string[][] = [];
    const result = await measureMixedNetwork(context(() => true), fakeSetup(fakeClient(calls)));
    assert.equal(calls.length, 0);
    assert.ok(result.rows.every((r) => r.error?.startsWith('interrupted')));
  });
});
