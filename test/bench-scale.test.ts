import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { hasConverged, scaleSyntheticUid } from '../bench/cases/controlplane.js';
import { crossNetworkVariant, controlPlaneVariant, READY_TO_LOCAL_ZTUNNEL, READY_TO_REMOTE_ZTUNNEL } from '../bench/cases/two-network-variants.js';
import { crossNetworkManifests } from '../bench/crossnet/setup.js';
import { prefixPlace, stopAllSpawned } from '../bench/exec.js';
import { eastWestGatewayManifest, twoNetworkClusters, type LabCluster } from '../bench/multicluster-lab.js';
import { parseOptions } from '../bench/options.js';
import { sumMetric } from '../bench/parsers/prometheus.js';
import { renderMarkdown } from '../bench/report/markdown.js';
import { checkTargets } from '../bench/report/targets.js';
import type { BenchReport, CaseResult } from '../bench/report/types.js';
import { coreApiFor, forEachLimited, isTransient } from '../bench/scale/kube-api.js';
import { summarizeLatency } from '../bench/scale/latency-summary.js';
import { ScaleCluster } from '../bench/scale/population.js';
import { fakeNode, fakeNodeStatus, fakePodIp, fakePodStatus, scalePod, scalePodName, scaleService, scaleSizes, startsNotReady } from '../bench/scale/objects.js';
import { firstBurst, formatXdsEvent, parseXdsEvent, XdsRecorder, type XdsEvent } from '../bench/scale/xds-events.js';
import { watchArgv, XdsWatcher } from '../bench/scale/xds-watcher.js';
import { aggregatedDiscoveryService } from '../src/api/grpc.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../src/api/resources.js';
import { createXdsMetrics } from '../src/controlplane/xds/metrics.js';
import { ResourceCache } from '../src/controlplane/xds/resource-cache.js';
import { DeltaXdsServer } from '../src/controlplane/xds/server.js';
import { AuthorizationSchema } from '../src/gen/istio/security/authorization_pb.js';
import { AddressSchema, WorkloadSchema, WorkloadStatus } from '../src/gen/istio/workload/workload_pb.js';
import type { ClusterPlan } from '../src/lab/plan.js';
import { createRootCa, issueLeaf } from '../src/util/pki.js';
import { ztunnelSettingsFromEnv } from '../src/ztunnel/settings.js';

const cluster = (name: string, network: string): LabCluster => ({ name, context: `lab-${name}`, network, nodes: [], gatewayAddress: '' });
const C1 = cluster('cluster1', 'network1');
const C2 = cluster('cluster2', 'network2');

describe('bench scale: fake nodes and pods', () => {
  it('keeps the ztunnel DaemonSet and the scheduler off fake nodes, and reports them Ready', () => {
    const node = fakeNode('scale-node-0', { region: 'region1', zone: 'scale' });
    assert.equal(node.metadata?.labels?.['kubernetes.io/os'], undefined, 'the DaemonSet selects kubernetes.io/os=linux');
    assert.deepEqual(node.spec?.taints?.map((t) => t.effect), ['NoSchedule']);
    assert.equal(node.metadata?.labels?.['topology.kubernetes.io/region'], 'region1');
    const now = new Date();
    const ready = fakeNodeStatus(now, now).conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.status, 'True');
    assert.equal(ready?.lastHeartbeatTime, now);
  });

  it('binds pods to their node, selected by the global headless scale Service', () => {
    const pod = scalePod(scalePodName(7), 'scale-node-1');
    assert.equal(pod.metadata?.name, 'scale-00007');
    assert.equal(pod.spec?.nodeName, 'scale-node-1');
    const svc = scaleService();
    assert.equal(svc.metadata?.labels?.['istio.io/global'], 'true');
    assert.equal(svc.spec?.clusterIP, 'None');
    for (const [k, v] of Object.entries(svc.spec!.selector!)) assert.equal(pod.metadata?.labels?.[k], v);
  });

  it('gives every pod of both clusters its own address, outside the lab\'s 198.18.0.0/15', () => {
    const seen = new Set<string>();
    for (const c of [0, 1]) for (let i = 0; i < 5000; i++) seen.add(fakePodIp(c, i));
    assert.equal(seen.size, 10_000);
    for (const ip of seen) {
      assert.match(ip, /^10\.20[01]\.\d+\.\d+$/);
      const last = Number(ip.split('.')[3]);
      assert.ok(last >= 1 && last <= 250);
    }
    assert.throws(() => fakePodIp(0, 64_000), RangeError);
  });

  it('posts Running with the address, Ready or not', () => {
    const now = new Date();
    const ready = fakePodStatus('10.200.0.1', true, now);
    assert.equal(ready.phase, 'Running');
    assert.deepEqual(ready.podIPs, [{ ip: '10.200.0.1' }]);
    assert.equal(ready.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    assert.equal(fakePodStatus('10.200.0.1', false, now).conditions?.find((c) => c.type === 'Ready')?.status, 'False');
  });

  it('sizes: 5,000 pods over two clusters in full runs, the last pods of each start not Ready', () => {
    const full = scaleSizes(false);
    assert.equal(full.podsPerCluster * 2, 5000);
    const quick = scaleSizes(true);
    assert.ok(quick.podsPerCluster < full.podsPerCluster && quick.latencySamples < quick.podsPerCluster);
    const notReady = Array.from({ length: full.podsPerCluster }, (_, i) => i).filter((i) => startsNotReady(i, full));
    assert.equal(notReady.length, full.latencySamples);
    assert.equal(notReady[0], full.podsPerCluster - full.latencySamples);
  });
});

describe('bench scale: bounded concurrency and retries', () => {
  it('runs every task, never more than the limit at once, and reports the first failure', async () => {
    let running = 0;
    let peak = 0;
    const done: number[] = [];
    await forEachLimited([...Array(50).keys()], 4, async (item) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 1));
      done.push(item);
      running--;
    });
    assert.equal(peak, 4);
    assert.deepEqual([...done].sort((a, b) => a - b), [...Array(50).keys()]);
    await assert.rejects(forEachLimited([1, 2, 3], 2, async (i) => {
      if (i === 2) throw new Error('two');
    }), /two/);
  });

  it('retries throttling and server errors, not client errors', () => {
    assert.equal(isTransient({ code: 429 }), true);
    assert.equal(isTransient({ code: 503 }), true);
    assert.equal(isTransient({ code: 409 }), false);
    assert.equal(isTransient(new Error('read ECONNRESET')), true);
  });
});

describe('bench scale: latency percentiles', () => {
  it('nearest-rank p50/p99/max; a missed sample counts as the timeout', () => {
    const samples = Array.from({ length: 100 }, (_, i) => ({ pod: `p${i}`, ms: i + 1 }));
    assert.deepEqual(summarizeLatency(samples, 10_000), { p50Ms: 50, p99Ms: 99, maxMs: 100, samples: 100, missed: 0 });
    const withMisses = [...samples.slice(0, 98), { pod: 'a', ms: null }, { pod: 'b', ms: null }];
    const s = summarizeLatency(withMisses, 10_000);
    assert.equal(s.missed, 2);
    assert.equal(s.p99Ms, 10_000, 'two misses in 100 put p99 at the timeout');
    assert.deepEqual(summarizeLatency([], 1000), { p50Ms: null, p99Ms: null, maxMs: null, samples: 0, missed: 0 });
  });
});

describe('bench scale: the xDS watcher\'s events', () => {
  const workload = (t: number, name: string, status: 'HEALTHY' | 'UNHEALTHY', capacity?: number): XdsEvent => ({ ev: 'upsert', t, type: 'address', name, kind: 'workload', status, ...(capacity !== undefined ? { capacity } : {}) });

  it('reads its own lines back and ignores log lines', () => {
    const event = workload(5, 'cluster1//Pod/scale/scale-00001', 'HEALTHY');
    assert.deepEqual(parseXdsEvent(formatXdsEvent(event)), event);
    assert.equal(parseXdsEvent('{"level":40,"msg":"control plane unreachable"}'), undefined);
    assert.equal(parseXdsEvent('{"ev":"upsert",'), undefined);
  });

  it('keeps the current state, counts workloads by health and finds the first matching arrival after a time', () => {
    const r = new XdsRecorder();
    r.add({ ev: 'start', t: 1000, processStart: 400 });
    r.add(workload(1100, 'cluster1//Pod/scale/a', 'HEALTHY'));
    r.add(workload(1100, 'cluster1//Pod/scale/b', 'UNHEALTHY'));
    r.add(workload(1100, 'cluster1//Pod/other/c', 'HEALTHY'));
    r.add(workload(1150, 'network2/SyntheticGateway/scale/x', 'HEALTHY', 3));
    r.add({ ev: 'synced', t: 1200, resources: 4 });
    r.add(workload(5000, 'network2/SyntheticGateway/scale/x', 'HEALTHY', 4));
    r.add(workload(5100, 'cluster1//Pod/scale/b', 'HEALTHY'));
    r.add({ ev: 'remove', t: 5200, type: 'address', name: 'cluster1//Pod/scale/a' });
    assert.deepEqual(r.countWorkloads('cluster1//Pod/scale/'), { healthy: 1, unhealthy: 0 });
    assert.equal(r.state.get('network2/SyntheticGateway/scale/x')?.capacity, 4);
    assert.equal(r.firstUpsert('network2/SyntheticGateway/scale/x', 1000, (e) => (e.capacity ?? 0) >= 4)?.t, 5000);
    assert.equal(r.firstUpsert('network2/SyntheticGateway/scale/x', 5001, () => true), undefined);
    const first = r.firstFullConfig(1000);
    assert.deepEqual(first, { syncedMs: 200, fromProcessStartMs: 800, resources: 4, burstResources: 4, burstEndMs: 150 });
  });

  it('the first burst ends at the first quiet gap', () => {
    assert.deepEqual(firstBurst([], 1000), { count: 0 });
    assert.deepEqual(firstBurst([0, 10, 20, 1500, 1510], 1000), { count: 3, lastAt: 20 });
    assert.deepEqual(firstBurst([0, 999, 1998], 1000), { count: 3, lastAt: 1998 });
  });

  it('converged: every local pod with its health, the other network\'s synthetic workload at full capacity', () => {
    const sizes = { podsPerCluster: 3, fakeNodesPerCluster: 1, latencySamples: 1 };
    const r = new XdsRecorder();
    r.add(workload(1, 'cluster1//Pod/scale/scale-00000', 'HEALTHY'));
    r.add(workload(1, 'cluster1//Pod/scale/scale-00001', 'HEALTHY'));
    assert.equal(hasConverged(r, C1, C2, sizes), false);
    r.add(workload(2, 'cluster1//Pod/scale/scale-00002', 'UNHEALTHY'));
    r.add(workload(2, scaleSyntheticUid('network2'), 'HEALTHY', 1));
    assert.equal(hasConverged(r, C1, C2, sizes), false);
    r.add(workload(3, scaleSyntheticUid('network2'), 'HEALTHY', 2));
    assert.equal(hasConverged(r, C1, C2, sizes), true);
    assert.equal(scaleSyntheticUid('network2'), 'network2/SyntheticGateway/scale/scale.scale.svc.cluster.local');
  });
});

describe('bench scale: the xDS watcher against an in-process control plane', () => {
  const SERVER_NAME = 'ambit-controlplane.istio-system.svc';
  const dir = mkdtempSync(join(tmpdir(), 'ambit-bench-scale-'));
  const cache = new ResourceCache({ debounceMs: 5, maxDelayMs: 20 });
  const server = new Server();
  let port = 0;
  const workloadBytes = (uid: string, status: WorkloadStatus, capacity?: number) =>
    toBinary(AddressSchema, create(AddressSchema, { type: { case: 'workload', value: create(WorkloadSchema, { uid, name: uid, namespace: 'scale', status, ...(capacity !== undefined ? { capacity } : {}) }) } }));

  before(async () => {
    const ca = await createRootCa('bench test root');
    const leaf = await issueLeaf(ca, { commonName: SERVER_NAME, dnsNames: [SERVER_NAME], server: true });
    writeFileSync(join(dir, 'roots.pem'), ca.certPem);
    writeFileSync(join(dir, 'token'), 'test-token');
    for (let i = 0; i < 300; i++) cache.set(ADDRESS_TYPE_URL, `cluster1//Pod/scale/scale-${i}`, workloadBytes(`scale-${i}`, WorkloadStatus.HEALTHY));
    cache.set(ADDRESS_TYPE_URL, 'network2/SyntheticGateway/scale/scale.scale.svc.cluster.local', workloadBytes('synthetic', WorkloadStatus.HEALTHY, 10));
    cache.set(AUTHORIZATION_TYPE_URL, 'scale/deny', toBinary(AuthorizationSchema, create(AuthorizationSchema, { name: 'deny', namespace: 'scale' })));
    cache.flush();
    server.addService(aggregatedDiscoveryService, new DeltaXdsServer({ cache, log: pino({ level: 'silent' }), metrics: createXdsMetrics(new Registry()) }).handlers());
    const credentials = ServerCredentials.createSsl(null, [{ private_key: Buffer.from(leaf.keyPem), cert_chain: Buffer.from(leaf.certPem) }], false);
    port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))));
  });

  after(async () => {
    await stopAllSpawned();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('receives the full config, timestamps it, and then each change with its capacity', { timeout: 60_000 }, async () => {
    const target = { clusterId: 'cluster1', address: `127.0.0.1:${port}`, serverName: SERVER_NAME, tokenFile: join(dir, 'token'), rootsFile: join(dir, 'roots.pem'), netns: 'unused' };
    assert.deepEqual(watchArgv(target).slice(-10), ['--address', `127.0.0.1:${port}`, '--server-name', SERVER_NAME, '--cluster-id', 'cluster1', '--token-file', target.tokenFile, '--roots-file', target.rootsFile]);
    const watcher = XdsWatcher.start(target, dir, 'test', prefixPlace('this host', []));
    try {
      await watcher.waitFor('the full config', (r) => (r.events.some((e) => e.ev === 'synced') ? true : undefined), 30_000);
      const first = watcher.recorder.firstFullConfig(1000);
      assert.equal(first.resources, 302);
      assert.ok(first.syncedMs !== null && first.syncedMs >= 0 && first.syncedMs < 20_000);
      assert.ok(first.fromProcessStartMs! >= first.syncedMs!);
      assert.equal(watcher.recorder.countWorkloads('cluster1//Pod/scale/').healthy, 300);

      const t0 = Date.now();
      cache.set(ADDRESS_TYPE_URL, 'network2/SyntheticGateway/scale/scale.scale.svc.cluster.local', workloadBytes('synthetic', WorkloadStatus.HEALTHY, 11));
      const arrived = await watcher.waitFor('capacity 11', (r) => r.firstUpsert('network2/SyntheticGateway/scale/scale.scale.svc.cluster.local', t0, (e) => e.capacity === 11), 10_000);
      assert.ok(arrived.t >= t0 && arrived.t - t0 < 5000);
      cache.delete(ADDRESS_TYPE_URL, 'cluster1//Pod/scale/scale-0');
      await watcher.waitFor('the removal', (r) => (r.state.has('cluster1//Pod/scale/scale-0') ? undefined : true), 10_000);
    } finally {
      await watcher.stop();
    }
  });
});

describe('bench two-network cases: lab, manifests, targets', () => {
  it('recognises a two-network lab by its first two clusters', () => {
    const plan = (networks: string[]) => ({ plan: { networks: [], clusters: networks.map((network, i) => ({ name: `cluster${i + 1}`, network, nodes: [] }) as unknown as ClusterPlan) } });
    assert.equal(twoNetworkClusters(plan(['network1', 'network2']))?.[1].name, 'cluster2');
    assert.equal(twoNetworkClusters(plan(['network1'])), undefined);
    assert.equal(twoNetworkClusters(plan(['network1', 'network1'])), undefined);
    const gateway = eastWestGatewayManifest('network2') as { metadata: { labels: Record<string, string> }; spec: { gatewayClassName: string; listeners: Array<{ port: number; protocol: string }> } };
    assert.equal(gateway.metadata.labels['topology.istio.io/network'], 'network2');
    assert.deepEqual([gateway.spec.gatewayClassName, gateway.spec.listeners[0]?.port, gateway.spec.listeners[0]?.protocol], ['istio-east-west', 15008, 'HBONE']);
  });

  it('puts the same-network server on another node than the client, and the global service only in cluster 2', () => {
    type List = { items: Array<{ kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: { nodeName?: string } }> };
    const { cluster1, cluster2 } = crossNetworkManifests(['cluster1-node1', 'cluster1-node2'], ['cluster2-node1']) as { cluster1: List; cluster2: List };
    const nodeOf = (list: List, name: string) => list.items.find((i) => i.kind === 'Pod' && i.metadata.name === name)?.spec?.nodeName;
    assert.equal(nodeOf(cluster1, 'xnet-client'), 'cluster1-node1');
    assert.equal(nodeOf(cluster1, 'xnet-server'), 'cluster1-node2');
    const services = (list: List) => list.items.filter((i) => i.kind === 'Service').map((i) => `${i.metadata.name}:${i.metadata.labels?.['istio.io/global'] ?? ''}`);
    assert.deepEqual(services(cluster1), ['xnet-local:']);
    assert.deepEqual(services(cluster2), ['xnet-remote:true']);
    const single = crossNetworkManifests(['cluster1-node1'], ['cluster2-node1']) as { cluster1: List };
    assert.equal(nodeOf(single.cluster1, 'xnet-server'), 'cluster1-node1');
  });

  const crossnet = (sameOn: number, crossOn: number): CaseResult => ({
    id: 'crossnet', title: 'cross', method: '', params: {}, metrics: [],
    rows: [
      { path: 'ambit', variant: crossNetworkVariant('same network', true), values: { cps: sameOn } },
      { path: 'ambit', variant: crossNetworkVariant('cross network', true), values: { cps: crossOn } },
      { path: 'ambit', variant: crossNetworkVariant('same network', false), values: { cps: 1000 } },
      { path: 'ambit', variant: crossNetworkVariant('cross network', false), values: { cps: 400 } },
    ],
  });
  const controlplane = (totalPods: number, p99: number, rss: number[]): CaseResult => ({
    id: 'controlplane', title: 'cp', method: '', params: { totalPods }, metrics: [],
    rows: [
      ...rss.map((r, i) => ({ path: 'ambit' as const, variant: controlPlaneVariant(`cluster${i + 1}`), values: { rssMaxMiB: r } })),
      { path: 'ambit', variant: READY_TO_REMOTE_ZTUNNEL, values: { p50Ms: 40, p99Ms: p99, missed: 0, samples: 200 } },
      { path: 'ambit', variant: READY_TO_LOCAL_ZTUNNEL, values: { p50Ms: 20, p99Ms: 30, missed: 0, samples: 200 } },
    ],
  });

  it('cross-network target: pooled cross / pooled same ≥ 0.8, with the unpooled ratio shown', () => {
    const t = checkTargets([crossnet(1000, 850)]).find((x) => x.id === 'crossnet')!;
    assert.equal(t.met, true);
    assert.equal(t.value, 0.85);
    assert.match(t.measured!, /inner pooling off: 0\.40×/);
    assert.equal(checkTargets([crossnet(1000, 700)]).find((x) => x.id === 'crossnet')!.met, false);
  });

  it('control-plane targets are judged at 5,000 pods only; below that they are reported, not judged', () => {
    const full = new Map(checkTargets([controlplane(5000, 800, [300, 350])]).map((t) => [t.id, t]));
    assert.equal(full.get('controlplane-latency')?.met, true);
    assert.equal(full.get('controlplane-rss')?.value, 350);
    assert.match(full.get('controlplane-rss')!.measured!, /control plane of cluster2/);
    assert.equal(new Map(checkTargets([controlplane(5000, 1200, [500, 350])]).map((t) => [t.id, t])).get('controlplane-rss')?.met, false);
    const quick = new Map(checkTargets([controlplane(500, 800, [100, 120])]).map((t) => [t.id, t]));
    assert.equal(quick.get('controlplane-latency')?.met, null);
    assert.match(quick.get('controlplane-latency')!.measured!, /not judged/);
  });

  it('skipped cases give their reason to the targets, and the markdown says not judged / not measured', () => {
    const skipped: CaseResult[] = [
      { id: 'crossnet', title: 'Cross', method: '', params: {}, metrics: [], rows: [], skipped: 'needs the lab' },
      controlplane(500, 800, [100, 120]),
    ];
    const targets = checkTargets(skipped);
    assert.match(targets.find((t) => t.id === 'crossnet')!.note!, /not measured: needs the lab/);
    const report: BenchReport = {
      schema: 1, startedAt: '2025-01-02T03:04:05.678Z', finishedAt: '2025-01-02T03:05:00.000Z', command: 'npm run bench', quick: true,
      machine: { cpuModel: 'CPU', cores: 2, memoryGiB: 4, kernel: '6', os: 'Debian', node: 'v20', tools: {} },
      loadAverage: { start: '0 0 0', end: '0 0 0' }, topology: { kind: 'lab', description: 'two networks' }, paths: [], cases: skipped, targets, notes: [],
    };
    const md = renderMarkdown(report, { path: 'x.json', link: 'x.json' });
    assert.match(md, /\| control plane: pod Ready → remote ztunnel.* \| not judged \|/);
    assert.match(md, /\| cross-network new connections\/s .* \| not measured \|/);
  });

  it('options: --quick runs the two-network cases only when --cases names them', () => {
    assert.equal(parseOptions(['--quick']).casesNamed, false);
    assert.equal(parseOptions(['--quick', '--cases', 'crossnet,controlplane']).casesNamed, true);
    assert.deepEqual(parseOptions(['--skip-lab', '--cases', 'controlplane,crossnet']).cases, ['crossnet', 'controlplane']);
  });
});

describe('bench: Prometheus text and the pooling switch', () => {
  it('sums a metric over its label sets, and not metrics that merely start with its name', () => {
    const text = [
      '# HELP ambit_hbone_inner_sessions_opened_total Inner sessions',
      '# TYPE ambit_hbone_inner_sessions_opened_total counter',
      'ambit_hbone_inner_sessions_opened_total 7',
      'ambit_hbone_inner_sessions_opened_total_extra 100',
      'ambit_gateway_cross_network_connections_total{source_network="network1",destination_service="a{b}"} 3',
      'ambit_gateway_cross_network_connections_total{source_network="network1",destination_service="c"} 4',
    ].join('\n');
    assert.equal(sumMetric(text, 'ambit_hbone_inner_sessions_opened_total'), 7);
    assert.equal(sumMetric(text, 'ambit_gateway_cross_network_connections_total'), 7);
    assert.equal(sumMetric(text, 'missing_total'), 0);
  });

  it('INNER_HBONE_POOLING: on by default, off with "false", a bad value refused by name', () => {
    const env = { NODE_NAME: 'n1', INSTANCE_IP: '198.18.16.2', CLUSTER_ID: 'cluster1' };
    assert.equal(ztunnelSettingsFromEnv(env).innerHbonePooling, true);
    assert.equal(ztunnelSettingsFromEnv({ ...env, INNER_HBONE_POOLING: 'false' }).innerHbonePooling, false);
    assert.equal(ztunnelSettingsFromEnv({ ...env, INNER_HBONE_POOLING: 'true' }).innerHbonePooling, true);
    assert.throws(() => ztunnelSettingsFromEnv({ ...env, INNER_HBONE_POOLING: 'sometimes' }), /INNER_HBONE_POOLING/);
  });
});

describe('bench scale: fake nodes and pods through the Kubernetes API (a fake API server)', () => {
  interface Seen {
    method: string;
    path: string;
    contentType: string;
    body: { metadata?: { name?: string }; spec?: { nodeName?: string }; status?: { podIP?: string; conditions?: Array<{ type: string; status: string }> } };
  }
  const dir = mkdtempSync(join(tmpdir(), 'ambit-bench-api-'));
  const seen: Seen[] = [];
  let connections = 0;
  let namespaceExists = false;
  let server: HttpsServer;

  const status = (res: ServerResponse, code: number, body: object) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const notFound = { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 };

  before(async () => {
    const ca = await createRootCa('fake api server');
    const leaf = await issueLeaf(ca, { commonName: '127.0.0.1', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], server: true });
    server = createHttpsServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => {
      let text = '';
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => {
        const path = req.url!.split('?')[0]!;
        seen.push({ method: req.method!, path, contentType: String(req.headers['content-type'] ?? ''), body: text ? JSON.parse(text) : {} });
        const body = text ? JSON.parse(text) : {};
        if (req.method === 'GET' && path === '/api/v1/namespaces/scale') return namespaceExists ? status(res, 200, { kind: 'Namespace', apiVersion: 'v1', metadata: { name: 'scale' } }) : status(res, 404, notFound);
        if (req.method === 'GET' && path === '/api/v1/nodes') return status(res, 200, { kind: 'NodeList', apiVersion: 'v1', metadata: {}, items: [] });
        if (req.method === 'GET' && path.endsWith('/serviceaccounts/default')) return status(res, 200, { kind: 'ServiceAccount', apiVersion: 'v1', metadata: { name: 'default' } });
        if (req.method === 'POST' && path === '/api/v1/namespaces') namespaceExists = true;
        if (req.method === 'DELETE' && path === '/api/v1/namespaces/scale') namespaceExists = false;
        if (req.method === 'DELETE') return status(res, 200, { kind: 'Status', apiVersion: 'v1', status: 'Success' });
        return status(res, req.method === 'POST' ? 201 : 200, body);
      });
    });
    server.on('secureConnection', () => connections++);
    const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
    const kubeconfig = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: `https://127.0.0.1:${port}`, 'certificate-authority-data': Buffer.from(ca.certPem).toString('base64') } }],
      users: [{ name: 'bench', user: { token: 'test' } }],
      contexts: [{ name: 'lab-fake', context: { cluster: 'fake', user: 'bench' } }],
      'current-context': 'lab-fake',
    };
    writeFileSync(join(dir, 'kubeconfig'), JSON.stringify(kubeconfig));
  });

  after(() => {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates nodes, namespace, service and pods, posts statuses as merge patches over a few kept-alive connections, and removes it all', { timeout: 60_000 }, async () => {
    const sizes = { podsPerCluster: 40, fakeNodesPerCluster: 2, latencySamples: 3 };
    const lines: string[] = [];
    const population = new ScaleCluster({ ...C2, nodes: [] }, 1, sizes, (l) => lines.push(l), coreApiFor('lab-fake', join(dir, 'kubeconfig')));
    try {
      await population.removeLeftovers();
      await population.createNodes();
      await population.createNamespaceAndService();
      await population.createPods();
      await population.postPodStatus(39, true);
    } finally {
      await population.remove();
    }
    const of = (method: string, pattern: RegExp) => seen.filter((s) => s.method === method && pattern.test(s.path));
    assert.deepEqual(of('POST', /^\/api\/v1\/nodes$/).map((s) => s.body.metadata?.name), ['scale-node-0', 'scale-node-1']);
    assert.ok(of('PATCH', /^\/api\/v1\/nodes\/scale-node-\d\/status$/).every((s) => s.contentType === 'application/merge-patch+json'));
    const created = of('POST', /^\/api\/v1\/namespaces\/scale\/pods$/);
    assert.equal(created.length, 40);
    assert.equal(created.find((s) => s.body.metadata?.name === 'scale-00003')?.body.spec?.nodeName, 'scale-node-1');
    const statuses = of('PATCH', /^\/api\/v1\/namespaces\/scale\/pods\/scale-\d+\/status$/);
    assert.equal(statuses.length, 41);
    assert.ok(statuses.every((s) => s.contentType === 'application/merge-patch+json'));
    const readyOf = (s: Seen) => s.body.status?.conditions?.find((c) => c.type === 'Ready')?.status;
    const first = (name: string) => statuses.find((s) => s.path.endsWith(`/${name}/status`))!;
    assert.equal(first('scale-00000').body.status?.podIP, '10.201.0.1');
    assert.equal(readyOf(first('scale-00000')), 'True');
    assert.equal(readyOf(first('scale-00039')), 'False', 'the last latencySamples pods start not Ready');
    assert.equal(readyOf(statuses[statuses.length - 1]!), 'True');
    assert.equal(of('DELETE', /^\/api\/v1\/namespaces\/scale\/pods$/).length, 1);
    assert.equal(of('DELETE', /^\/api\/v1\/nodes\/scale-node-\d$/).length, 2);
    assert.ok(connections <= 33 && connections < seen.length / 2, `${connections} TLS connections for ${seen.length} requests`);
  });
});
