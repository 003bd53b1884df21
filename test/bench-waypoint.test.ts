// The waypoint bench case's pieces that need no lab: its objects, HAProxy in mode http, the comparisons, path check and goals, and the measurement with a fake client pod.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CaseContext } from '../bench/cases/case.js';
import { CASES } from '../bench/cases/index.js';
import { measureWaypoint, WAYPOINT_TITLE } from '../bench/cases/waypoint.js';
import type { Place, RunResult } from '../bench/exec.js';
import { parseOptions } from '../bench/options.js';
import { haproxy, haproxyHttp } from '../bench/paths/haproxy.js';
import type { TunnelLayout } from '../bench/paths/native-tunnel.js';
import type { PathContext } from '../bench/paths/path.js';
import { renderMarkdown } from '../bench/report/markdown.js';
import { checkTargets } from '../bench/report/targets.js';
import { CASE_IDS, isOneClusterCase, ONE_CLUSTER_CASE_IDS, type BenchReport, type CaseResult, type CaseRow } from '../bench/report/types.js';
import { HAPROXY_HTTP, L4, mibToMb, ROUTES, pathCheckProblem, pathCheckSentence, WAYPOINT, WAYPOINT_VARIANTS, waypointNotes, waypointVerdicts, withWaypointComparisons } from '../bench/waypoint/compare.js';
import { hasWaypointApply, TARGET_LABEL_KEY, waypointApplyArgs, waypointGateway, waypointService, WAYPOINT_NAME, WAYPOINT_SERVICE } from '../bench/waypoint/manifests.js';
import { sendRequests, type WaypointSetup } from '../bench/waypoint/setup.js';
import { percentiles, wrkOutput } from './helpers/bench-fakes.js';

const near = (actual: number | null | undefined, expected: number, what = '') => assert.ok(actual != null && Math.abs(actual - expected) < 1e-9, `${what} ${actual} ≈ ${expected}`);

describe('bench waypoint case: objects', () => {
  it('the Gateway is a waypoint for services: class istio-waypoint, listener mesh on 15008 HBONE', () => {
    const gw = waypointGateway('bench-mesh') as { apiVersion: string; kind: string; metadata: { name: string; namespace: string; labels: Record<string, string> }; spec: { gatewayClassName: string; listeners: unknown[] } };
    assert.equal(gw.apiVersion, 'gateway.networking.k8s.io/v1');
    assert.equal(gw.kind, 'Gateway');
    assert.deepEqual(gw.metadata, { name: WAYPOINT_NAME, namespace: 'bench-mesh', labels: { 'istio.io/waypoint-for': 'service' } });
    assert.equal(gw.spec.gatewayClassName, 'istio-waypoint');
    assert.deepEqual(gw.spec.listeners, [{ name: 'mesh', port: 15008, protocol: 'HBONE' }]);
  });

  it('the Service is enrolled in the waypoint and selects only the labelled server pod (not app=bench-server, which the policy case\'s second server shares)', () => {
    const svc = waypointService('bench-mesh', 8080) as { metadata: { name: string; labels: Record<string, string> }; spec: { selector: Record<string, string>; ports: Array<{ port: number; targetPort: number; appProtocol: string }> } };
    assert.equal(svc.metadata.name, WAYPOINT_SERVICE);
    assert.deepEqual(svc.metadata.labels, { 'istio.io/use-waypoint': WAYPOINT_NAME });
    assert.deepEqual(svc.spec.selector, { [TARGET_LABEL_KEY]: 'true' });
    assert.equal(svc.spec.ports[0]!.port, 8080);
    assert.equal(svc.spec.ports[0]!.targetPort, 8080);
    assert.equal(svc.spec.ports[0]!.appProtocol, 'http');
  });

  it('`ambit waypoint apply` is used only when its own help comes back (a build without it prints the top-level help)', () => {
    assert.equal(hasWaypointApply('Usage: ambit waypoint apply [options]\n\napply a waypoint Gateway\n'), true);
    assert.equal(hasWaypointApply('Usage: ambit [options] [command]\n\nCommands:\n  waypoint-proxy   run a waypoint proxy\n'), false);
  });

  it('`ambit waypoint apply` names the namespace and the waypoint, and the context when the command takes one', () => {
    assert.deepEqual(waypointApplyArgs('bench-mesh', undefined), ['waypoint', 'apply', '-n', 'bench-mesh', '--name', 'bench-waypoint']);
    assert.deepEqual(waypointApplyArgs('bench-mesh', 'lab-cluster1'), ['waypoint', 'apply', '--context', 'lab-cluster1', '-n', 'bench-mesh', '--name', 'bench-waypoint']);
  });
});

describe('bench waypoint case: the path check\'s requests', () => {
  const place = (reply: (argv: string[]) => RunResult, calls: string[][]): Place => ({
    label: 'fake client pod',
    run: async (argv) => {
      calls.push(argv);
      return reply(argv);
    },
    spawn: () => {
      throw new Error('not used');
    },
  });

  it('one curl, every URL with its own -o /dev/null (so only status codes come back), all 200', async () => {
    const calls: string[][] = [];
    await sendRequests(place(() => ({ code: 0, stdout: '200\n200\n200\n', stderr: '' }), calls), { host: '10.96.0.7', port: 8080 }, 3);
    assert.equal(calls.length, 1);
    const argv = calls[0]!;
    assert.equal(argv.filter((a) => a === 'http://10.96.0.7:8080/').length, 3);
    argv.forEach((a, i) => {
      if (a === 'http://10.96.0.7:8080/') assert.deepEqual(argv.slice(i - 2, i), ['-o', '/dev/null']);
    });
  });

  it('throws on a status other than 200, a missing answer or curl failing', async () => {
    const run = (stdout: string, code = 0) => sendRequests(place(() => ({ code, stdout, stderr: code ? 'connection reset' : '' }), []), { host: '10.96.0.7', port: 8080 }, 2);
    await assert.rejects(run('200\n503\n'), /status codes 200 503/);
    await assert.rejects(run('200\n'), /status codes 200$/);
    await assert.rejects(run('200\n', 56), /exit 56, status codes 200: connection reset/);
  });
});

describe('bench waypoint case: HAProxy in mode http', () => {
  const layout: TunnelLayout = {
    clientNodeIp: '10.250.0.1',
    serverNodeIp: '10.250.0.2',
    serverPodIp: '10.250.2.2',
    serverPorts: [8080],
    offset: haproxyHttp.offset,
    certs: { caCert: '/c/ca.crt', serverCert: '/c/s.crt', serverKey: '/c/s.key', serverPem: '/c/s.pem', clientCert: '/c/c.crt', clientKey: '/c/c.key', clientPem: '/c/c.pem', serverName: 'server.bench', clientName: 'client.bench' },
  };

  it('parses HTTP at both ends with keep-alive on every hop, TLS 1.3 verified both ways between the nodes, on ports of its own', () => {
    const client = haproxyHttp.clientConfig(layout);
    const server = haproxyHttp.serverConfig(layout);
    for (const conf of [client, server]) {
      assert.match(conf, /\n {2}mode http\n/);
      assert.match(conf, /option http-keep-alive/);
      assert.match(conf, /timeout http-keep-alive 300s/);
      assert.match(conf, /http-reuse always/);
      assert.match(conf, /ssl-default-bind-options ssl-min-ver TLSv1\.3/);
      assert.match(conf, /ssl-default-server-options ssl-min-ver TLSv1\.3/);
      assert.doesNotMatch(conf, /mode tcp/);
    }
    assert.match(client, /bind 10\.250\.0\.1:38080\n[\s\S]*server peer 10\.250\.0\.2:39080 ssl crt \/c\/c\.pem ca-file \/c\/ca\.crt verify required verifyhost server\.bench alpn http\/1\.1\n/);
    assert.match(server, /bind 10\.250\.0\.2:39080 ssl crt \/c\/s\.pem ca-file \/c\/ca\.crt verify required alpn http\/1\.1\n[\s\S]*server pod 10\.250\.2\.2:8080\n/);
    assert.equal(haproxyHttp.name, 'haproxy');
    assert.equal(haproxyHttp.instance, 'haproxy-http', 'its own directory and process labels, apart from the haproxy path\'s');
    assert.notEqual(haproxyHttp.offset, haproxy.offset);
  });

  it('the haproxy path stays in mode tcp, without the HTTP options', () => {
    const client = haproxy.clientConfig({ ...layout, offset: haproxy.offset });
    assert.match(client, /\n {2}mode tcp\n/);
    assert.doesNotMatch(client, /http-reuse|http-keep-alive|alpn/);
    assert.equal(haproxy.instance, undefined);
  });
});

const row = (variant: string, values: Record<string, number | null>, error?: string): CaseRow => ({ path: variant === HAPROXY_HTTP ? 'haproxy' : 'ambit', variant, values, ...(error ? { error } : {}) });

describe('bench waypoint case: comparisons, path check and goals', () => {
  const rows = [
    row(L4, { p50: 0.4, p90: 0.5, p99: 0.9, rps1: 5000, rps32: 20_000, cpuPer1kAtRate: 0.05 }),
    row(WAYPOINT, { p50: 0.75, p90: 1.0, p99: 2.1, rps1: 2500, rps32: 8000, cpuPer1kAtRate: 0.2, waypointCpuPer1kAtRate: 0.15, waypointCpuPer1kSaturated: 0.1, waypointRssIdleMiB: 50, waypointRssLoadMiB: 70 }),
    row(HAPROXY_HTTP, { p50: 0.5, p90: 0.6, p99: 1.2, rps1: 4000, rps32: 16_000, cpuPer1kAtRate: 0.08 }),
  ];

  it('every row gets its ratios to ambit L4 and the latency it adds over it', () => {
    const [l4, waypoint, http] = withWaypointComparisons(rows);
    near(l4!.values.rps32VsL4, 1);
    near(l4!.values.p50OverL4Ms, 0);
    near(waypoint!.values.rps1VsL4, 0.5);
    near(waypoint!.values.rps32VsL4, 0.4);
    near(waypoint!.values.p50VsL4, 1.875);
    near(waypoint!.values.p50OverL4Ms, 0.35);
    near(waypoint!.values.p90OverL4Ms, 0.5);
    near(waypoint!.values.p99OverL4Ms, 1.2);
    near(waypoint!.values.cpuVsL4, 4);
    near(http!.values.rps32VsL4, 0.8);
    near(http!.values.p50OverL4Ms, 0.1);
  });

  it('without an L4 result there is nothing to compare with: nulls, and failed rows stay as they are', () => {
    const failed = [row(L4, {}, 'wrk exited 1'), rows[1]!, row(HAPROXY_HTTP, {}, 'HAProxy (mode http): no listener')];
    const [l4, waypoint, http] = withWaypointComparisons(failed);
    assert.deepEqual(l4, failed[0]);
    assert.equal(waypoint!.values.rps32VsL4, null);
    assert.equal(waypoint!.values.p50OverL4Ms, null);
    assert.deepEqual(http, failed[2]);
    const verdicts = waypointVerdicts(failed);
    assert.equal(verdicts.addedP50, undefined, 'the added p50 needs L4');
    assert.equal(verdicts.cpu?.met, true, 'the waypoint\'s own cost does not');
  });

  it('the goals: CPU per 1,000 requests, RSS in MB (10^6 bytes) under load, added p50 over L4', () => {
    const v = waypointVerdicts(rows);
    assert.equal(v.cpu?.met, true);
    assert.match(v.cpu!.measured, /^0\.1500 CPU-s \(Istio's published waypoint: about 0\.25\)$/);
    near(v.rss?.value, mibToMb(70));
    assert.equal(v.rss?.met, true, '70 MiB is 73.4 MB');
    assert.match(v.rss!.measured, /^73\.4 MB \(70\.0 MiB; idle 52\.4 MB; Istio's published waypoint: about 60 MB\)$/);
    near(v.addedP50?.value, 0.35);
    assert.equal(v.addedP50?.met, true);

    const heavy = withWaypointComparisons([rows[0]!, row(WAYPOINT, { p50: 1.0, waypointCpuPer1kAtRate: 0.21, waypointRssLoadMiB: 77 }), rows[2]!]);
    const h = waypointVerdicts(heavy);
    assert.equal(h.cpu?.met, false);
    assert.equal(h.rss?.met, false, '77 MiB is 80.7 MB: over 80 MB though under 80 MiB');
    assert.equal(h.addedP50?.met, false);
  });

  it('the report\'s targets: judged from the case, not measured when it did not run or was skipped', () => {
    const result: CaseResult = { id: 'waypoint', title: WAYPOINT_TITLE, method: '', params: {}, metrics: [], rows: withWaypointComparisons(rows) };
    const byId = (cases: CaseResult[]) => new Map(checkTargets(cases).map((t) => [t.id, t]));
    const targets = byId([result]);
    assert.equal(targets.get('waypoint-cpu')?.met, true);
    assert.equal(targets.get('waypoint-cpu')?.target, '≤ 0.2 CPU-s');
    assert.equal(targets.get('waypoint-rss')?.target, '≤ 80 MB');
    assert.equal(targets.get('waypoint-latency-p50')?.target, '≤ 0.5 ms over ambit L4');
    assert.equal(targets.get('waypoint-latency-p50')?.met, true);
    const absent = byId([]);
    assert.equal(absent.get('waypoint-cpu')?.met, null);
    assert.match(absent.get('waypoint-cpu')!.note!, /case "waypoint" did not run/);
    const skipped = byId([{ ...result, rows: [], skipped: 'failed: no waypoint pod' }]);
    assert.match(skipped.get('waypoint-rss')!.note!, /not measured: failed: no waypoint pod/);
  });

  it('notes: the comparisons in words, the waypoint\'s cost with Istio\'s published one and the goals', () => {
    const notes = waypointNotes(rows, 'checked');
    assert.equal(notes.length, 4);
    assert.match(notes[0]!, /^ambit waypoint \/ ambit L4: keep-alive requests\/s 0\.50× at 1 connection, 0\.40× at 32; at 1,000 req\/s p50 1\.88×, p99 2\.33×, added p50 \+0\.350 ms, p90 \+0\.500 ms, p99 \+1\.200 ms; .*\(goal: added p50 ≤ 0\.5 ms\)\.$/);
    assert.match(notes[1]!, /^haproxy http \/ ambit L4: keep-alive requests\/s 0\.80× at 1 connection/);
    assert.match(notes[2]!, /0\.1500 CPU-s per 1,000 requests at 1,000 req\/s \(0\.1000 saturated\), RSS 70\.0 MiB \(73\.4 MB\) under load, 50\.0 MiB idle/);
    assert.match(notes[2]!, /about 0\.25 vCPU \(0\.25 CPU-s per 1,000 requests\) and 60 MB; the goals are ≤ 0\.2 CPU-s per 1,000 requests and ≤ 80 MB\.$/);
    assert.equal(notes[3], 'checked');
  });

  it('the path check: the pod IP must not cross the waypoint, the cluster IP must, every request', () => {
    assert.equal(pathCheckProblem({ sent: 20, countedForL4: 0, countedForWaypoint: 20 }), undefined);
    assert.equal(pathCheckProblem({ sent: 20, countedForL4: 0, countedForWaypoint: 23 }), undefined, 'a probe counted late is no problem');
    assert.match(pathCheckProblem({ sent: 20, countedForL4: 20, countedForWaypoint: 20 })!, /counted 20 request\(s\) while the client sent 20 to the server pod IP: the L4 row must not cross the waypoint/);
    assert.match(pathCheckProblem({ sent: 20, countedForL4: 0, countedForWaypoint: 0 })!, /counted 0 of the 20 requests sent to the Service's cluster IP: ztunnel does not send/);
    assert.match(pathCheckProblem({ sent: 20, countedForL4: 0, countedForWaypoint: 19 })!, /counted 19 of the 20/);
    assert.equal(pathCheckSentence({ sent: 20, countedForL4: 0, countedForWaypoint: 20 }), 'Path check before measuring: the waypoint\'s istio_requests_total grew by 20 while the client sent 20 requests to the Service\'s cluster IP, and by 0 while it sent 20 to the server pod IP.');
  });
});

describe('bench waypoint case: measuring (a fake client pod and waypoint)', () => {
  const hosts = { [L4]: '10.244.2.5', [WAYPOINT]: '10.96.0.77', [ROUTES]: '10.96.0.78', [HAPROXY_HTTP]: '10.250.0.1' } as const;
  const figures: Record<string, { p50Us: number; rps: number }> = {
    [hosts[L4]]: { p50Us: 400, rps: 10_000 },
    [hosts[WAYPOINT]]: { p50Us: 800, rps: 4_000 },
    [hosts[ROUTES]]: { p50Us: 850, rps: 3_800 },
    [hosts[HAPROXY_HTTP]]: { p50Us: 500, rps: 8_000 },
  };

  /** The client answers wrk and the fixed-rate tool by target host; requests to the Service VIP count at the waypoint. */
  function fakeClient(calls: string[][], counter: { n: number }, fail?: (argv: string[]) => boolean): Place {
    return {
      label: 'fake client pod',
      async run(argv: string[]): Promise<RunResult> {
        calls.push(argv);
        if (fail?.(argv)) return { code: 1, stdout: '', stderr: 'unable to connect' };
        const url = new URL(argv.includes('--url') ? argv[argv.indexOf('--url') + 1]! : argv[argv.length - 1]!);
        const f = figures[url.hostname]!;
        if (argv[0] === 'wrk') {
          const seconds = Number(argv[argv.indexOf('-d') + 1]!.replace('s', ''));
          if (url.hostname === hosts[WAYPOINT] || url.hostname === hosts[ROUTES]) counter.n += f.rps * seconds;
          return { code: 0, stdout: wrkOutput(f.rps, seconds), stderr: '' };
        }
        if (url.hostname === hosts[WAYPOINT] || url.hostname === hosts[ROUTES]) counter.n += 6000;
        const result = { url: url.href, rate: 1000, connections: 8, durationSeconds: 5, issued: 5000, completed: 5000, errors: 0, achievedRate: 1000, latencyUs: percentiles(f.p50Us), latencyFromScheduleUs: percentiles(f.p50Us), scheduleLagUs: percentiles(50) };
        return { code: 0, stdout: `${JSON.stringify(result)}\n`, stderr: '' };
      },
      spawn() {
        throw new Error('not used');
      },
    };
  }

  function fakeSetup(client: Place, counter: { n: number }, haproxyError?: string): WaypointSetup {
    const ztunnels = [{ label: 'ztunnel on cluster1-node1', pids: () => [process.pid] }, { label: 'ztunnel on cluster1-node2', pids: () => [process.pid] }];
    const waypoint = { label: 'waypoint bench-mesh/bench-waypoint on cluster1-node1', pids: () => [process.pid] };
    const haproxyPair = [{ label: 'haproxy-http client side (client node)', pids: () => [process.pid] }, { label: 'haproxy-http server side (server node)', pids: () => [process.pid] }];
    const address = (variant: keyof typeof hosts) => ({ host: hosts[variant], port: variant === HAPROXY_HTTP ? 38080 : 8080 });
    return {
      targets: [
        { variant: L4, client, address: address(L4), proxies: ztunnels },
        { variant: WAYPOINT, client, address: address(WAYPOINT), proxies: [waypoint, ...ztunnels] },
        { variant: ROUTES, client, address: address(ROUTES), proxies: [waypoint, ...ztunnels] },
        haproxyError ? { variant: HAPROXY_HTTP, error: haproxyError } : { variant: HAPROXY_HTTP, client, address: address(HAPROXY_HTTP), proxies: haproxyPair },
      ],
      waypoint,
      waypointRequests: async () => counter.n,
      pathCheck: { sent: 20, countedForL4: 0, countedForWaypoint: 20 },
      description: 'The waypoint is made by a test',
      close: async () => undefined,
    };
  }

  const context = (stopped = () => false): CaseContext => ({ quick: true, paths: [], workDir: '/tmp', pathContext: {} as PathContext, log: () => undefined, stopped });
  const target = (argv: string[]) => new URL(argv.includes('--url') ? argv[argv.indexOf('--url') + 1]! : argv[argv.length - 1]!).hostname;
  const kind = (argv: string[]) => (argv[0] === 'wrk' ? `c=${argv[argv.indexOf('-c') + 1]}` : 'rate');

  it('runs the fixed rate, then keep-alive at 1 and 32 connections, over the four rows in turn, and fills the rows', async () => {
    const calls: string[][] = [];
    const counter = { n: 100 };
    const result = await measureWaypoint(context(), fakeSetup(fakeClient(calls, counter), counter));
    const [l, w, r, h] = [hosts[L4], hosts[WAYPOINT], hosts[ROUTES], hosts[HAPROXY_HTTP]];
    assert.deepEqual(calls.map((a) => `${kind(a)} ${target(a)}`), ['c=8', 'rate', 'c=1', 'c=32'].flatMap((k) => [l, w, r, h].map((host) => `${k} ${host}`)));
    assert.equal(result.id, 'waypoint');
    assert.deepEqual(result.rows.map((row) => [row.path, row.variant, row.error]), [['ambit', L4, undefined], ['ambit', WAYPOINT, undefined], ['ambit', ROUTES, undefined], ['haproxy', HAPROXY_HTTP, undefined]]);
    const [l4, waypoint, routed, http] = result.rows;
    assert.equal(l4!.values.p50, 0.4);
    assert.equal(l4!.values.p90, 0.8);
    assert.equal(l4!.values.rps1, 10_000);
    assert.equal(l4!.values.rps32, 10_000);
    assert.equal(l4!.values.requests, 5000 + 1000 + 30_000 + 30_000, 'fixed-rate completed + its warm-up second + both wrk runs');
    assert.equal(l4!.values.waypointCounted, 0, 'the L4 row\'s runs leave the waypoint\'s counter alone');
    assert.equal(http!.values.waypointCounted, 0);
    assert.equal(waypoint!.values.waypointCounted, 6000 + 12_000 + 12_000);
    near(waypoint!.values.p50OverL4Ms, 0.4);
    near(waypoint!.values.rps32VsL4, 0.4);
    near(http!.values.p50OverL4Ms, 0.1);
    near(routed!.values.p50OverL4Ms, 0.45);
    assert.equal(routed!.values.waypointCounted, 6000 + 11_400 + 11_400);
    assert.equal(typeof routed!.values.waypointCpuPer1kAtRate, 'number', 'the waypoint\'s CPU on the routes row');
    for (const key of ['waypointCpuPer1kAtRate', 'waypointCpuPer1kSaturated', 'waypointRssIdleMiB', 'waypointRssLoadMiB', 'waypointIdleCpuPercent']) {
      assert.equal(typeof waypoint!.values[key], 'number', `${key} on the waypoint row`);
      assert.equal(l4!.values[key], null, `no ${key} on the L4 row`);
      assert.equal(http!.values[key], null, `no ${key} on the haproxy http row`);
    }
    assert.ok((waypoint!.values.waypointRssIdleMiB ?? 0) > 0, 'the waypoint process (here: this test) has an RSS');
    for (const r of result.rows) assert.equal(typeof r.values.cpuPer1kAtRate, 'number', `proxies' CPU on ${r.variant}`);
    assert.ok(result.metrics.every((m) => result.rows.every((r) => m.key in r.values)), 'every shown metric has a value (or null) in every row');
    assert.equal(result.notes?.length, 6);
    assert.match(result.notes![3]!, /^Path check before measuring: /);
    assert.match(result.notes![4]!, /^ambit waypoint\+routes \/ ambit waypoint \(what the 90\/10 route costs\): keep-alive requests\/s 0\.95× at 1 connection, 0\.95× at 32; at 1,000 req\/s p50 1\.06×.* added p50 \+0\.050 ms/);
    assert.match(result.notes![5]!, /the waypoint counted 30,000 requests during its row's runs \(the clients sent about 30,000\), and 0 during ambit L4's and 28,800 during ambit waypoint\+routes's and 0 during haproxy http's\./);
    assert.match(result.method, /--rate 1000 --duration 5/);
    assert.match(result.method, /`wrk --latency -t 1 -c <n> -d 3s --timeout 5s http:\/\/<target>\/` for n = 1 and 32/);
    assert.match(result.method, /The waypoint is made by a test\./);
    assert.match(result.method, /First, not counted, 2 s of wrk with 8 connections on each row/);
    assert.match(result.method, /waypoint bench-mesh\/bench-waypoint on cluster1-node1, ztunnel on cluster1-node1, ztunnel on cluster1-node2/);
    const targets = new Map(checkTargets([result]).map((t) => [t.id, t]));
    assert.equal(targets.get('waypoint-latency-p50')?.met, true, '+0.4 ms');
  });

  it('a row that could not be set up or failed a run is marked failed; the others are still measured and compared', async () => {
    const calls: string[][] = [];
    const counter = { n: 0 };
    const failWaypointC1 = (argv: string[]) => argv[0] === 'wrk' && argv.includes('1') && argv[argv.indexOf('-c') + 1] === '1' && target(argv) === hosts[WAYPOINT];
    const result = await measureWaypoint(context(), fakeSetup(fakeClient(calls, counter, failWaypointC1), counter, 'HAProxy (mode http): haproxy exited early'));
    assert.equal(calls.length, 12, 'nothing is run for the row that was not set up (warm-up, fixed rate, c=1, c=32 on the other three)');
    assert.ok(calls.every((a) => target(a) !== hosts[HAPROXY_HTTP]));
    const [l4, waypoint, , http] = result.rows;
    assert.equal(l4!.error, undefined);
    assert.match(waypoint!.error!, /^keep-alive c=1: wrk .* exited 1: unable to connect$/);
    assert.equal(http!.error, 'HAProxy (mode http): haproxy exited early');
    assert.equal(http!.values.rps32, null);
    const report = { ...sampleReport(), cases: [result] } as BenchReport;
    report.targets = checkTargets(report.cases);
    const md = renderMarkdown(report, { path: 'x.json', link: 'x.json' });
    assert.match(md, /\| haproxy \| http \| failed: HAProxy \(mode http\): haproxy exited early \|/);
    assert.match(md, /\| waypoint added latency at 1,000 req\/s, p50 \| ≤ 0\.5 ms over ambit L4 \| .* \| not measured \|/, 'a failed waypoint row is not judged');
  });

  it('an interrupted run measures nothing more', async () => {
    const calls: string[][] = [];
    const counter = { n: 0 };
    const result = await measureWaypoint(context(() => true), fakeSetup(fakeClient(calls, counter), counter));
    assert.equal(calls.length, 0);
    assert.ok(result.rows.every((r) => r.error === 'interrupted; interrupted; interrupted'));
  });
});

describe('bench waypoint case: options', () => {
  it('is the last one-cluster case (after policy), before the cases of labs of their own', () => {
    assert.equal(ONE_CLUSTER_CASE_IDS[ONE_CLUSTER_CASE_IDS.length - 1], 'waypoint');
    assert.ok(isOneClusterCase('waypoint'));
    assert.ok(CASE_IDS.indexOf('waypoint') < CASE_IDS.indexOf('crossnet'));
    assert.equal(CASES.waypoint.id, 'waypoint');
    assert.deepEqual(parseOptions(['--quick', '--cases', 'waypoint']).cases, ['waypoint']);
    assert.deepEqual(parseOptions(['--cases', 'waypoint,latency']).cases, ['latency', 'waypoint']);
    assert.deepEqual(WAYPOINT_VARIANTS, ['L4', 'waypoint', 'waypoint+routes', 'http']);
  });

  it('without the ambit path (e.g. --skip-lab) it is reported as not measured', async () => {
    const result = await CASES.waypoint.run({ quick: true, paths: [], workDir: '/tmp', pathContext: {} as PathContext, log: () => undefined, stopped: () => false });
    assert.match(result.skipped!, /needs the ambit path/);
  });
});

function sampleReport(): Omit<BenchReport, 'cases' | 'targets'> {
  return {
    schema: 1,
    startedAt: '2025-01-01T00:00:00.000Z',
    finishedAt: '2025-01-01T00:01:00.000Z',
    command: 'npm run bench -- --quick --cases waypoint',
    quick: true,
    machine: { cpuModel: 'cpu', cores: 2, memoryGiB: 4, kernel: '6', os: 'Debian', node: 'v22', tools: {} },
    loadAverage: { start: '0 0 0', end: '0 0 0' },
    topology: { kind: 'lab', description: 'lab' },
    paths: [],
    notes: [],
  };
}
