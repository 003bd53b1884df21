import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { BOTH_ENDS } from '../bench/cases/cost.js';
import { OptionsError, parseOptions } from '../bench/options.js';
import { parseIperf3, Iperf3ParseError } from '../bench/parsers/iperf3.js';
import { parseProcStat, parseVmRssKiB } from '../bench/parsers/proc.js';
import { parseWrk, parseWrkTimeMs, WrkParseError } from '../bench/parsers/wrk.js';
import { haproxy } from '../bench/paths/haproxy.js';
import type { TunnelLayout } from '../bench/paths/native-tunnel.js';
import { stunnel } from '../bench/paths/stunnel.js';
import { withComparisons } from '../bench/report/compare.js';
import { renderMarkdown } from '../bench/report/markdown.js';
import { checkTargets } from '../bench/report/targets.js';
import type { BenchReport, CaseResult } from '../bench/report/types.js';
import { resultFileName } from '../bench/report/write.js';
import { nginxConfig } from '../bench/servers.js';
import { percentileOfSorted, summarize } from '../bench/stats.js';
import { runFixedRate } from '../bench/tools/fixed-rate.js';
import { HttpParseError, parseResponseHead } from '../bench/tools/http1.js';

const WRK_KEEPALIVE = `Running 10s test @ http://10.250.2.2:8080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us  301.55us  15.02ms   91.20%
    Req/Sec    39.41k     1.02k   41.23k    76.00%
  Latency Distribution
     50%  760.00us
     75%    0.91ms
     90%    1.10ms
     99%    2.00s
  392131 requests in 10.01s, 58.71MB read
Requests/sec:  39173.93
Transfer/sec:      5.87MB
`;

const WRK_WITH_ERRORS = `Running 3s test @ http://10.250.0.1:18080/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.28ms    6.97ms    1.00m   74.73%
    Req/Sec   774.87    110.36     0.96k    70.00%
  Latency Distribution
     50%   19.73ms
     75%   23.79ms
     90%   28.26ms
     99%   44.82ms
  2336 requests in 1.00m, 353.59KB read
  Socket errors: connect 3, read 2, write 1, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:    769.95
Transfer/sec:    116.55KB
`;

describe('bench: wrk output', () => {
  it('converts every time unit wrk prints to milliseconds', () => {
    assert.equal(parseWrkTimeMs('812.00us'), 0.812);
    assert.equal(parseWrkTimeMs('1.5ms'), 1.5);
    assert.equal(parseWrkTimeMs('2.00s'), 2000);
    assert.equal(parseWrkTimeMs('1.00m'), 60_000);
    assert.throws(() => parseWrkTimeMs('12 parsecs'), WrkParseError);
  });

  it('reads requests/s, totals and the latency distribution', () => {
    const r = parseWrk(WRK_KEEPALIVE);
    assert.equal(r.requestsPerSecond, 39173.93);
    assert.equal(r.requests, 392131);
    assert.equal(r.durationSeconds, 10.01);
    assert.deepEqual(r.latencyMs, { avg: 0.812, stdev: 0.30155, max: 15.02, p50: 0.76, p75: 0.91, p90: 1.1, p99: 2000 });
    assert.equal(r.errors, 0);
  });

  it('counts socket errors and non-2xx/3xx answers as errors', () => {
    const r = parseWrk(WRK_WITH_ERRORS);
    assert.deepEqual(r.socketErrors, { connect: 3, read: 2, write: 1, timeout: 4 });
    assert.equal(r.non2xx3xx, 5);
    assert.equal(r.errors, 15);
    assert.equal(r.durationSeconds, 60);
    assert.equal(r.latencyMs.max, 60_000);
    assert.equal(r.latencyMs.p99, 44.82);
  });

  it('rejects output without totals (wrk failed)', () => {
    assert.throws(() => parseWrk('unable to connect to 10.250.2.2:8080 Connection refused\n'), WrkParseError);
  });
});

describe('bench: iperf3 -J output', () => {
  it('takes the throughput the receiver saw', () => {
    const json = JSON.stringify({ start: {}, end: { sum_sent: { seconds: 10, bits_per_second: 9.5e9, retransmits: 12 }, sum_received: { seconds: 10.0004, bits_per_second: 9.4e9 } } });
    assert.deepEqual(parseIperf3(json), { receivedBitsPerSecond: 9.4e9, sentBitsPerSecond: 9.5e9, retransmits: 12, durationSeconds: 10.0004 });
  });

  it('reports iperf3 errors and non-JSON output', () => {
    assert.throws(() => parseIperf3(JSON.stringify({ start: {}, intervals: [], end: {}, error: 'unable to connect to server: Connection refused' })), /iperf3: unable to connect/);
    assert.throws(() => parseIperf3('iperf3: error - unable to connect'), Iperf3ParseError);
    assert.throws(() => parseIperf3(JSON.stringify({ end: {} })), Iperf3ParseError);
  });
});

describe('bench: /proc parsing', () => {
  it('reads ppid, utime and stime, even with spaces and parentheses in comm', () => {
    const line = '4242 (node (ztunnel) x) S 4200 4242 4200 0 -1 4194560 29105 0 0 0 1234 567 0 0 20 0 11 0 1000 1234567 8910 18446744073709551615 1 1 0 0 0 0 0 16781312 17922 0 0 0 17 1 0 0 0 0 0\n';
    assert.deepEqual(parseProcStat(line), { pid: 4242, comm: 'node (ztunnel) x', ppid: 4200, utimeTicks: 1234, stimeTicks: 567 });
    assert.throws(() => parseProcStat('garbage'));
  });

  it('reads VmRSS in KiB, and nothing for kernel threads', () => {
    assert.equal(parseVmRssKiB('Name:\tnode\nVmPeak:\t  999 kB\nVmRSS:\t   81234 kB\nRssAnon:\t 1 kB\n'), 81234);
    assert.equal(parseVmRssKiB('Name:\tkworker/0:1\nState:\tI (idle)\n'), undefined);
  });
});

describe('bench: HTTP/1.1 response heads (fixed-rate client)', () => {
  it('finds status, head size and Content-Length once the head is complete', () => {
    const head = 'HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n';
    assert.equal(parseResponseHead(Buffer.from(head.slice(0, 20))), undefined);
    assert.deepEqual(parseResponseHead(Buffer.from(`${head}ambit bench\n`)), { status: 200, headBytes: head.length, contentLength: 12 });
    assert.throws(() => parseResponseHead(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n')), HttpParseError);
    assert.throws(() => parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')), /chunked/);
  });
});

describe('bench: percentiles', () => {
  it('uses nearest rank', () => {
    const sorted = Array.from({ length: 1000 }, (_, i) => i + 1);
    assert.equal(percentileOfSorted(sorted, 0.5), 500);
    assert.equal(percentileOfSorted(sorted, 0.99), 990);
    assert.equal(percentileOfSorted(sorted, 0.999), 999);
    assert.equal(percentileOfSorted(sorted, 1), 1000);
    assert.ok(Number.isNaN(percentileOfSorted([], 0.5)));
    const s = summarize([3, 1, 2]);
    assert.deepEqual([s.min, s.p50, s.max, s.mean, s.count], [1, 2, 3, 2, 3]);
  });
});

describe('bench: options', () => {
  it('defaults to every case and, without the lab, the native paths', () => {
    const o = parseOptions(['--skip-lab', '--quick']);
    assert.deepEqual(o.paths, ['direct', 'stunnel', 'haproxy']);
    assert.equal(o.cases.length, 10);
    assert.equal(o.out, 'docs/benchmarks.md');
    assert.equal(o.json, undefined);
    assert.deepEqual(parseOptions([]).paths, ['direct', 'ambit', 'stunnel', 'haproxy']);
  });

  it('keeps the canonical order of lists', () => {
    const o = parseOptions(['--cases', 'latency,throughput', '--paths', 'haproxy,direct']);
    assert.deepEqual(o.cases, ['throughput', 'latency']);
    assert.deepEqual(o.paths, ['direct', 'haproxy']);
  });

  it('rejects unknown options, cases and paths, and contradictions, with a clear message', () => {
    assert.throws(() => parseOptions(['--fast']), (err: Error) => err instanceof OptionsError && /Unknown option '--fast'/.test(err.message) && /usage:/.test(err.message));
    assert.throws(() => parseOptions(['extra']), OptionsError);
    assert.throws(() => parseOptions(['--cases', 'throughput,speed']), /unknown cases "speed"/);
    assert.throws(() => parseOptions(['--paths', 'linkerd']), /unknown paths "linkerd"/);
    assert.throws(() => parseOptions(['--skip-lab', '--paths', 'ambit,direct']), /needs the lab/);
    assert.throws(() => parseOptions(['--skip-lab', '--keep-lab']), OptionsError);
  });
});

describe('bench: generated configurations', () => {
  const layout: TunnelLayout = {
    clientNodeIp: '10.250.0.1',
    serverNodeIp: '10.250.0.2',
    serverPodIp: '10.250.2.2',
    serverPorts: [8080],
    offset: 10_000,
    certs: { caCert: '/c/ca.crt', serverCert: '/c/s.crt', serverKey: '/c/s.key', serverPem: '/c/s.pem', clientCert: '/c/c.crt', clientKey: '/c/c.key', clientPem: '/c/c.pem', serverName: 'server.bench', clientName: 'client.bench' },
  };

  it('stunnel: mutual verification with TLS 1.3, plaintext in on the client node, out to the pod', () => {
    const client = stunnel.clientConfig(layout);
    assert.match(client, /client = yes\naccept = 10\.250\.0\.1:18080\nconnect = 10\.250\.0\.2:19080\ncert = \/c\/c\.crt\nkey = \/c\/c\.key\nCAfile = \/c\/ca\.crt\nverifyChain = yes\ncheckHost = server\.bench\nsslVersionMin = TLSv1\.3/);
    const server = stunnel.serverConfig(layout);
    assert.match(server, /accept = 10\.250\.0\.2:19080\nconnect = 10\.250\.2\.2:8080\ncert = \/c\/s\.crt/);
    assert.match(server, /verifyChain = yes\ncheckHost = client\.bench/);
  });

  it('HAProxy: TLS with client certificates required on both sides', () => {
    const l = { ...layout, offset: 20_000 };
    assert.match(haproxy.clientConfig(l), /bind 10\.250\.0\.1:28080\n[\s\S]*server peer 10\.250\.0\.2:29080 ssl crt \/c\/c\.pem ca-file \/c\/ca\.crt verify required verifyhost server\.bench/);
    assert.match(haproxy.serverConfig(l), /bind 10\.250\.0\.2:29080 ssl crt \/c\/s\.pem ca-file \/c\/ca\.crt verify required\n[\s\S]*server pod 10\.250\.2\.2:8080/);
    assert.match(haproxy.clientConfig(l), /ssl-min-ver TLSv1\.3/);
  });

  it('nginx keeps keep-alive connections open far beyond its default 1,000 requests', () => {
    const conf = nginxConfig('/tmp/x', 8080);
    assert.match(conf, /keepalive_requests 100000000;/);
    assert.match(conf, /listen 8080 /);
  });
});

const row = (path: 'direct' | 'ambit' | 'stunnel' | 'haproxy', values: Record<string, number>, variant?: string) => ({ path, values, ...(variant ? { variant } : {}) });

function sampleCases(): CaseResult[] {
  const base = { method: 'm', params: {} };
  return [
    { ...base, id: 'throughput', title: 'Throughput', metrics: [{ key: 'gbps', label: 'throughput', unit: 'Gbit/s', digits: 2 }], compare: 'gbps', rows: [row('direct', { gbps: 10 }), row('ambit', { gbps: 4 }), row('stunnel', { gbps: 3.2 })] },
    {
      ...base,
      id: 'keepalive',
      title: 'Keep-alive',
      metrics: [{ key: 'rps', label: 'requests/s', unit: '', digits: 0 }],
      compare: 'rps',
      rows: [row('direct', { rps: 40_000 }, '1 conn'), row('ambit', { rps: 15_000 }, '1 conn'), row('stunnel', { rps: 10_000 }, '1 conn'), row('direct', { rps: 50_000 }, '32 conn'), row('ambit', { rps: 20_000 }, '32 conn'), row('stunnel', { rps: 17_000 }, '32 conn')],
    },
    { ...base, id: 'newconns', title: 'New connections', metrics: [{ key: 'cps', label: 'connections/s', unit: '', digits: 0 }], compare: 'cps', rows: [row('direct', { cps: 9000 }), { path: 'ambit', values: {}, error: 'wrk exited 1' }, row('stunnel', { cps: 600 })] },
    {
      ...base,
      id: 'latency',
      title: 'Latency',
      metrics: [{ key: 'p50', label: 'p50', unit: 'ms', digits: 3 }, { key: 'p99', label: 'p99', unit: 'ms', digits: 3 }],
      addedOver: ['p50', 'p99'],
      rows: [row('direct', { p50: 0.1, p99: 1.2 }), row('ambit', { p50: 0.5, p99: 2.0 })],
    },
    {
      ...base,
      id: 'cost',
      title: 'Cost',
      metrics: [{ key: 'cpuPer1kAtRate', label: 'CPU', unit: '', digits: 4 }, { key: 'rssIdleMiB', label: 'RSS', unit: 'MiB', digits: 1 }],
      rows: [row('ambit', { cpuPer1kAtRate: 0.1, rssIdleMiB: 70 }, 'ztunnel on node1'), row('ambit', { cpuPer1kAtRate: 0.13, rssIdleMiB: 60 }, 'ztunnel on node2'), row('ambit', { cpuPer1kAtRate: 0.23, rssIdleMiB: 130 }, BOTH_ENDS)],
    },
  ];
}

describe('bench: report', () => {
  const cases = sampleCases().map(withComparisons);

  it('computes ratios to direct and stunnel within the same variant, and added latency over direct', () => {
    const keepalive = cases.find((c) => c.id === 'keepalive')!;
    const ambit32 = keepalive.rows.find((r) => r.path === 'ambit' && r.variant === '32 conn')!;
    assert.equal(ambit32.ratios?.vsDirect, 0.4);
    assert.equal(ambit32.ratios?.vsStunnel, 20_000 / 17_000);
    const latency = cases.find((c) => c.id === 'latency')!;
    const added = latency.rows.find((r) => r.path === 'ambit')!.added!;
    assert.ok(Math.abs(added.p50! - 0.4) < 1e-9 && Math.abs(added.p99! - 0.8) < 1e-9);
    const failed = cases.find((c) => c.id === 'newconns')!.rows.find((r) => r.path === 'ambit')!;
    assert.equal(failed.ratios, undefined);
  });

  it('checks the targets: met, not met, and not measured with the reason', () => {
    const targets = new Map(checkTargets(cases).map((t) => [t.id, t]));
    assert.equal(targets.get('throughput')?.met, true);
    assert.equal(targets.get('throughput')?.value, 4 / 3.2);
    assert.equal(targets.get('keepalive')?.met, false, 'peak 20,000 vs 17,000 is below 1.3×');
    assert.match(targets.get('keepalive')!.measured!, /at 32 conn/);
    assert.equal(targets.get('newconns')?.met, null);
    assert.match(targets.get('newconns')!.note!, /no ambit result/);
    assert.equal(targets.get('latency-p50')?.met, false);
    assert.equal(targets.get('latency-p99')?.met, true);
    assert.equal(targets.get('ztunnel-cpu')?.met, false, 'the busiest ztunnel counts, not the sum');
    assert.equal(targets.get('ztunnel-cpu')?.value, 0.13);
    assert.equal(targets.get('ztunnel-rss')?.met, true);
    assert.equal(targets.get('crossnet')?.met, null);
    assert.equal(targets.get('controlplane-rss')?.met, null);
  });

  it('renders the markdown from the JSON: machine, command, targets, tables, failures, skipped cases', () => {
    const report: BenchReport = {
      schema: 1,
      startedAt: '2025-01-02T03:04:05.678Z',
      finishedAt: '2025-01-02T03:08:00.000Z',
      command: 'npm run bench -- --quick',
      quick: true,
      machine: { cpuModel: 'Test CPU', cores: 2, memoryGiB: 24, kernel: '6.1.0', os: 'Debian GNU/Linux 12 (bookworm)', node: 'v20.0.0', tools: { wrk: '4.1.0' } },
      loadAverage: { start: '0.10 0.20 0.30', end: '1.00 0.90 0.80' },
      topology: { kind: 'lab', description: 'lab one-cluster.yaml' },
      paths: [{ name: 'direct', description: 'no mesh' }, { name: 'ambit', description: 'ambient', error: 'no lab' }],
      cases: [...cases, { id: 'controlplane', title: 'Control plane', method: '', params: {}, metrics: [], rows: [], skipped: 'later' }],
      targets: checkTargets(cases),
      notes: ['a note'],
    };
    const md = renderMarkdown(report, { path: 'bench/results/x.json', link: '../bench/results/x.json' });
    assert.match(md, /^# ambit benchmarks/);
    assert.match(md, /\[`bench\/results\/x\.json`\]\(\.\.\/bench\/results\/x\.json\)/);
    assert.match(md, /\| command \| `npm run bench -- --quick` \|/);
    assert.match(md, /\| CPU \| Test CPU, 2 cores \|/);
    assert.match(md, /Quick mode/);
    assert.match(md, /\*\*ambit\*\*: ambient — \*\*not measured\*\*: no lab/);
    assert.match(md, /\| L4 throughput \| ≥ 1\.0× stunnel \| 1\.25× stunnel .* \| \*\*met\*\* \|/);
    assert.match(md, /\| keep-alive .* \| \*\*not met\*\* \|/);
    assert.match(md, /\| ambit \| 32 conn \| 20,000 \| 0\.40× \| 1\.18× \|/);
    assert.match(md, /\| ambit \| failed: wrk exited 1 \|/);
    assert.match(md, /\| ambit \| 0\.500 \| 2\.000 \| \+0\.400 \| \+0\.800 \|/);
    assert.match(md, /\| direct \| 0\.100 \| 1\.200 \| baseline \| baseline \|/);
    assert.match(md, /## Control plane\n\nNot measured: later/);
    assert.match(md, /- a note/);
  });

  it('names result files after the start time, safe for file systems', () => {
    assert.equal(resultFileName('2025-01-02T03:04:05.678Z'), '2025-01-02T03-04-05Z.json');
  });
});

describe('bench: fixed-rate client', () => {
  async function withServer(handler: Parameters<typeof createServer>[1], body: (url: string) => Promise<void>) {
    const server: Server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      await body(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }

  it('issues requests at the set rate and measures them', async () => {
    await withServer(
      (_req, res) => res.end('ok'),
      async (url) => {
        const r = await runFixedRate({ url, rate: 200, durationSeconds: 1, connections: 2, warmupSeconds: 0.2 });
        assert.equal(r.issued, 200);
        assert.equal(r.completed, 200);
        assert.equal(r.errors, 0);
        assert.ok(r.latencyUs.p50 > 0 && r.latencyUs.p50 < 50_000, `p50 ${r.latencyUs.p50} µs`);
      },
    );
  });

  it('counts the time requests wait behind a stalled server (no coordinated omission)', async () => {
    let stalled = false;
    await withServer(
      (_req, res) => {
        if (!stalled) {
          stalled = true;
          setTimeout(() => res.end('slow'), 300);
        } else res.end('ok');
      },
      async (url) => {
        // One connection, 100 req/s: the 300 ms stall holds back the ~30 requests scheduled behind it.
        const r = await runFixedRate({ url, rate: 100, durationSeconds: 1, connections: 1, warmupSeconds: 0 });
        assert.equal(r.completed, 100);
        assert.ok(r.latencyUs.p90 > 50_000, `p90 ${r.latencyUs.p90} µs should include the wait behind the stall`);
        assert.ok(r.latencyUs.max >= 280_000, `max ${r.latencyUs.max} µs`);
      },
    );
  });

  it('counts refused connections as errors', async () => {
    let url = '';
    await withServer((_req, res) => res.end(), async (u) => void (url = u));
    const r = await runFixedRate({ url, rate: 50, durationSeconds: 0.2, connections: 1, warmupSeconds: 0 });
    assert.equal(r.completed, 0);
    assert.equal(r.errors, r.issued);
  });
});
