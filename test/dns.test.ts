import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { V1Endpoints, V1Service } from '@kubernetes/client-node';
import { ClusterDnsRecords, type DnsAnswer } from '../src/lab/agent/dns-records.js';
import { ClusterDnsServer } from '../src/lab/agent/dns-server.js';
import { createLogger } from '../src/util/log.js';

// ------------------------------------------------------------------------------------ fixtures

type Port = { name?: string; port: number; protocol?: string };

function clusterIPService(ns: string, name: string, ip: string, ports: Port[] = []): V1Service {
  return { metadata: { namespace: ns, name }, spec: { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], ports } };
}

function headlessService(ns: string, name: string, ports: Port[] = []): V1Service {
  return { metadata: { namespace: ns, name }, spec: { type: 'ClusterIP', clusterIP: 'None', clusterIPs: ['None'], ports } };
}

function endpoints(
  ns: string,
  name: string,
  addresses: { ip: string; hostname?: string }[],
  ports: Port[] = [],
  notReadyAddresses: { ip: string; hostname?: string }[] = [],
): V1Endpoints {
  return { metadata: { namespace: ns, name }, subsets: [{ addresses, notReadyAddresses, ports }] };
}

function data(answers: DnsAnswer[], type?: string): string[] {
  return answers
    .filter((a) => type === undefined || a.type === type)
    .map((a) => (typeof a.data === 'string' ? a.data : JSON.stringify(a.data)))
    .sort();
}

function srvData(answers: DnsAnswer[]): { port: number; target: string }[] {
  return answers
    .filter((a): a is Extract<DnsAnswer, { type: 'SRV' }> => a.type === 'SRV')
    .map((a) => ({ port: a.data.port, target: a.data.target }))
    .sort((x, y) => x.target.localeCompare(y.target) || x.port - y.port);
}

// ----------------------------------------------------------------------------------- unit tests

describe('ClusterDnsRecords', () => {
  it('answers A for a ClusterIP service, case-insensitively, with a trailing dot, TTL 5', () => {
    const r = new ClusterDnsRecords();
    r.upsertService(clusterIPService('default', 'web', '10.96.0.10', [{ name: 'http', port: 80, protocol: 'TCP' }]));
    const res = r.lookup('web.default.svc.cluster.local', 'A');
    assert.equal(res.rcode, 'NOERROR');
    assert.deepEqual(data(res.answers), ['10.96.0.10']);
    assert.equal(res.answers[0]?.ttl, 5);
    const upper = r.lookup('WEB.Default.SVC.cluster.LOCAL.', 'A');
    assert.equal(upper.rcode, 'NOERROR');
    assert.deepEqual(data(upper.answers), ['10.96.0.10']);
    assert.equal(upper.answers[0]?.name, 'WEB.Default.SVC.cluster.LOCAL', 'owner name echoes the query spelling');
  });

  it('distinguishes NODATA from NXDOMAIN', () => {
    const r = new ClusterDnsRecords();
    r.upsertService(clusterIPService('default', 'web', '10.96.0.10'));
    const aaaa = r.lookup('web.default.svc.cluster.local', 'AAAA');
    assert.equal(aaaa.rcode, 'NOERROR');
    assert.equal(aaaa.answers.length, 0);
    assert.equal(aaaa.authorities[0]?.type, 'SOA', 'negative answers carry the SOA');
    // Empty non-terminals exist.
    assert.equal(r.lookup('default.svc.cluster.local', 'A').rcode, 'NOERROR');
    assert.equal(r.lookup('svc.cluster.local', 'A').rcode, 'NOERROR');
    assert.equal(r.lookup('cluster.local', 'A').rcode, 'NOERROR');
    assert.equal(r.lookup('cluster.local', 'SOA').answers[0]?.type, 'SOA');
    // Things that do not exist.
    assert.equal(r.lookup('nope.default.svc.cluster.local', 'A').rcode, 'NXDOMAIN');
    assert.equal(r.lookup('web.other.svc.cluster.local', 'A').rcode, 'NXDOMAIN');
    assert.equal(r.lookup('x.web.default.svc.cluster.local', 'A').rcode, 'NXDOMAIN');
    assert.equal(r.lookup('example.com', 'A').rcode, 'NXDOMAIN');
    assert.equal(r.lookup('example.com.default.svc.cluster.local', 'A').rcode, 'NXDOMAIN');
    assert.equal(r.lookup('example.com', 'A').authorities.length, 0, 'no SOA for names outside our zones');
  });

  it('serves SRV for named ports with the A record as additional', () => {
    const r = new ClusterDnsRecords();
    r.upsertService(
      clusterIPService('default', 'web', '10.96.0.10', [
        { name: 'http', port: 80, protocol: 'TCP' },
        { name: 'dns', port: 53, protocol: 'UDP' },
        { port: 9000 },
      ]),
    );
    const res = r.lookup('_http._tcp.web.default.svc.cluster.local', 'SRV');
    assert.equal(res.rcode, 'NOERROR');
    assert.deepEqual(srvData(res.answers), [{ port: 80, target: 'web.default.svc.cluster.local' }]);
    assert.deepEqual(data(res.additionals, 'A'), ['10.96.0.10']);
    assert.deepEqual(srvData(r.lookup('_dns._udp.web.default.svc.cluster.local', 'SRV').answers), [
      { port: 53, target: 'web.default.svc.cluster.local' },
    ]);
    assert.equal(r.lookup('_dns._tcp.web.default.svc.cluster.local', 'SRV').rcode, 'NXDOMAIN');
    assert.equal(r.lookup('_tcp.web.default.svc.cluster.local', 'SRV').rcode, 'NOERROR', 'empty non-terminal');
    assert.equal(r.lookup('_http._tcp.web.default.svc.cluster.local', 'A').rcode, 'NOERROR');
    // SRV at the service name lists every port.
    assert.deepEqual(
      srvData(r.lookup('web.default.svc.cluster.local', 'SRV').answers).map((s) => s.port),
      [53, 80, 9000],
    );
  });

  it('serves PTR for ClusterIPs', () => {
    const r = new ClusterDnsRecords();
    r.upsertService(clusterIPService('default', 'web', '10.96.0.10'));
    const res = r.lookup('10.0.96.10.in-addr.arpa.', 'PTR');
    assert.equal(res.rcode, 'NOERROR');
    assert.deepEqual(data(res.answers), ['web.default.svc.cluster.local']);
    assert.equal(r.lookup('11.0.96.10.in-addr.arpa', 'PTR').rcode, 'NXDOMAIN');
  });

  it('resolves headless services to ready endpoints, with hostnames, dashed IPs, SRV and PTR', () => {
    const r = new ClusterDnsRecords();
    r.upsertService(headlessService('db', 'pg', [{ name: 'pg', port: 5432, protocol: 'TCP' }]));
    r.upsertEndpoints(
      endpoints(
        'db',
        'pg',
        [
          { ip: '10.244.1.5', hostname: 'pg-0' },
          { ip: '10.244.2.7', hostname: 'pg-1' },
          { ip: '10.244.3.9' },
        ],
        [{ name: 'pg', port: 5432, protocol: 'TCP' }],
        [{ ip: '10.244.4.4', hostname: 'pg-2' }],
      ),
    );
    const base = 'pg.db.svc.cluster.local';
    assert.deepEqual(data(r.lookup(base, 'A').answers), ['10.244.1.5', '10.244.2.7', '10.244.3.9']);
    assert.deepEqual(data(r.lookup(`pg-0.${base}`, 'A').answers), ['10.244.1.5']);
    assert.deepEqual(data(r.lookup(`pg-1.${base}`, 'A').answers), ['10.244.2.7']);
    assert.equal(r.lookup(`pg-2.${base}`, 'A').rcode, 'NXDOMAIN', 'not-ready endpoints are not published');
    assert.deepEqual(data(r.lookup(`10-244-3-9.${base}`, 'A').answers), ['10.244.3.9']);
    assert.deepEqual(data(r.lookup(`10-244-1-5.${base}`, 'A').answers), ['10.244.1.5']);

    const srv = r.lookup(`_pg._tcp.${base}`, 'SRV');
    assert.deepEqual(srvData(srv.answers), [
      { port: 5432, target: `10-244-3-9.${base}` },
      { port: 5432, target: `pg-0.${base}` },
      { port: 5432, target: `pg-1.${base}` },
    ]);
    assert.deepEqual(data(srv.additionals, 'A'), ['10.244.1.5', '10.244.2.7', '10.244.3.9']);

    assert.deepEqual(data(r.lookup('5.1.244.10.in-addr.arpa', 'PTR').answers), [`pg-0.${base}`]);
    assert.deepEqual(data(r.lookup('9.3.244.10.in-addr.arpa', 'PTR').answers), [`10-244-3-9.${base}`]);
  });

  it('publishes not-ready addresses when publishNotReadyAddresses is set', () => {
    const r = new ClusterDnsRecords();
    const svc = headlessService('db', 'pg');
    svc.spec!.publishNotReadyAddresses = true;
    r.upsertService(svc);
    r.upsertEndpoints(endpoints('db', 'pg', [], [], [{ ip: '10.244.4.4', hostname: 'pg-2' }]));
    assert.deepEqual(data(r.lookup('pg-2.pg.db.svc.cluster.local', 'A').answers), ['10.244.4.4']);
  });

  it('serves hostname records of endpoints under a ClusterIP service', () => {
    const r = new ClusterDnsRecords();
    r.upsertService(clusterIPService('default', 'web', '10.96.0.10'));
    r.upsertEndpoints(endpoints('default', 'web', [{ ip: '10.244.1.5', hostname: 'web-0' }]));
    assert.deepEqual(data(r.lookup('web-0.web.default.svc.cluster.local', 'A').answers), ['10.244.1.5']);
    assert.deepEqual(data(r.lookup('web.default.svc.cluster.local', 'A').answers), ['10.96.0.10']);
  });

  it('answers ExternalName services with a CNAME, chasing in-cluster targets', () => {
    const r = new ClusterDnsRecords();
    r.upsertService({
      metadata: { namespace: 'default', name: 'ext' },
      spec: { type: 'ExternalName', externalName: 'db.example.com.' },
    });
    const res = r.lookup('ext.default.svc.cluster.local', 'A');
    assert.equal(res.rcode, 'NOERROR');
    assert.deepEqual(res.answers.map((a) => [a.type, a.data]), [['CNAME', 'db.example.com']]);

    r.upsertService(clusterIPService('default', 'web', '10.96.0.10'));
    r.upsertService({
      metadata: { namespace: 'default', name: 'alias' },
      spec: { type: 'ExternalName', externalName: 'web.default.svc.cluster.local' },
    });
    const chased = r.lookup('alias.default.svc.cluster.local', 'A');
    assert.deepEqual(chased.answers.map((a) => [a.type, a.data]), [
      ['CNAME', 'web.default.svc.cluster.local'],
      ['A', '10.96.0.10'],
    ]);
    // A CNAME loop does not hang.
    r.upsertService({ metadata: { namespace: 'default', name: 'l1' }, spec: { type: 'ExternalName', externalName: 'l2.default.svc.cluster.local' } });
    r.upsertService({ metadata: { namespace: 'default', name: 'l2' }, spec: { type: 'ExternalName', externalName: 'l1.default.svc.cluster.local' } });
    assert.ok(r.lookup('l1.default.svc.cluster.local', 'A').answers.length <= 9);
  });

  it('synthesizes pod A records', () => {
    const r = new ClusterDnsRecords();
    assert.deepEqual(data(r.lookup('10-244-1-5.default.pod.cluster.local', 'A').answers), ['10.244.1.5']);
    const aaaa = r.lookup('10-244-1-5.default.pod.cluster.local', 'AAAA');
    assert.equal(aaaa.rcode, 'NOERROR');
    assert.equal(aaaa.answers.length, 0);
    assert.equal(r.lookup('10-244-1-999.default.pod.cluster.local', 'A').rcode, 'NXDOMAIN');
    assert.equal(r.lookup('x.10-244-1-5.default.pod.cluster.local', 'A').rcode, 'NXDOMAIN');
  });

  it('supports IPv6 ClusterIPs (AAAA and ip6.arpa PTR)', () => {
    const r = new ClusterDnsRecords();
    r.upsertService({
      metadata: { namespace: 'default', name: 'v6' },
      spec: { type: 'ClusterIP', clusterIP: 'fd00:10:96::a', clusterIPs: ['fd00:10:96::a'] },
    });
    assert.deepEqual(data(r.lookup('v6.default.svc.cluster.local', 'AAAA').answers), ['fd00:10:96::a']);
    assert.equal(r.lookup('v6.default.svc.cluster.local', 'A').answers.length, 0);
    const ptr = 'a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa';
    assert.deepEqual(data(r.lookup(ptr, 'PTR').answers), ['v6.default.svc.cluster.local']);
  });

  it('applies updates and deletes', () => {
    const r = new ClusterDnsRecords();
    const base = 'web.default.svc.cluster.local';
    r.upsertService(clusterIPService('default', 'web', '10.96.0.10'));
    r.upsertService(clusterIPService('default', 'web', '10.96.0.11'));
    assert.deepEqual(data(r.lookup(base, 'A').answers), ['10.96.0.11']);
    assert.equal(r.lookup('10.0.96.10.in-addr.arpa', 'PTR').rcode, 'NXDOMAIN');
    r.deleteService('default', 'web');
    assert.equal(r.lookup(base, 'A').rcode, 'NXDOMAIN');
    assert.equal(r.lookup('default.svc.cluster.local', 'A').rcode, 'NXDOMAIN', 'namespace gone with its last service');
    assert.equal(r.lookup('11.0.96.10.in-addr.arpa', 'PTR').rcode, 'NXDOMAIN');

    // Endpoints before the service: nothing until the service appears; then updates apply.
    const hb = 'pg.db.svc.cluster.local';
    r.upsertEndpoints(endpoints('db', 'pg', [{ ip: '10.244.1.5', hostname: 'pg-0' }]));
    assert.equal(r.lookup(hb, 'A').rcode, 'NXDOMAIN');
    r.upsertService(headlessService('db', 'pg'));
    assert.deepEqual(data(r.lookup(hb, 'A').answers), ['10.244.1.5']);
    r.upsertEndpoints(endpoints('db', 'pg', [{ ip: '10.244.1.6', hostname: 'pg-0' }, { ip: '10.244.2.7', hostname: 'pg-1' }]));
    assert.deepEqual(data(r.lookup(hb, 'A').answers), ['10.244.1.6', '10.244.2.7']);
    assert.deepEqual(data(r.lookup(`pg-0.${hb}`, 'A').answers), ['10.244.1.6']);
    assert.equal(r.lookup('5.1.244.10.in-addr.arpa', 'PTR').rcode, 'NXDOMAIN');
    r.deleteEndpoints('db', 'pg');
    const empty = r.lookup(hb, 'A');
    assert.equal(empty.rcode, 'NOERROR', 'a headless service without endpoints still exists');
    assert.equal(empty.answers.length, 0);
    assert.equal(r.lookup(`pg-0.${hb}`, 'A').rcode, 'NXDOMAIN');
    // Two services sharing a pod IP both get PTRs; deleting one keeps the other.
    r.upsertService(headlessService('db', 'a'));
    r.upsertService(headlessService('db', 'b'));
    r.upsertEndpoints(endpoints('db', 'a', [{ ip: '10.244.9.9' }]));
    r.upsertEndpoints(endpoints('db', 'b', [{ ip: '10.244.9.9' }]));
    assert.equal(r.lookup('9.9.244.10.in-addr.arpa', 'PTR').answers.length, 2);
    r.deleteService('db', 'a');
    assert.deepEqual(data(r.lookup('9.9.244.10.in-addr.arpa', 'PTR').answers), ['10-244-9-9.b.db.svc.cluster.local']);
  });

  it('answers ANY with every record at the name', () => {
    const r = new ClusterDnsRecords();
    r.upsertService(clusterIPService('default', 'web', '10.96.0.10', [{ name: 'http', port: 80 }]));
    const types = r.lookup('web.default.svc.cluster.local', 'ANY').answers.map((a) => a.type).sort();
    assert.deepEqual(types, ['A', 'SRV']);
  });

  it('honours a custom domain', () => {
    const r = new ClusterDnsRecords('east.local.');
    r.upsertService(clusterIPService('default', 'web', '10.96.0.10'));
    assert.deepEqual(data(r.lookup('web.default.svc.east.local', 'A').answers), ['10.96.0.10']);
    assert.equal(r.lookup('web.default.svc.cluster.local', 'A').rcode, 'NXDOMAIN');
  });
});

// ---------------------------------------------------------------------------- integration tests

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

describe('ClusterDnsServer', () => {
  const log = createLogger('dns-test');
  if (!process.env.AMBIT_LOG_LEVEL) log.level = 'silent';
  const records = new ClusterDnsRecords();
  const server = new ClusterDnsServer({ records, address: '127.0.0.1', port: 0, log });
  let port = 0;

  const dig = (...args: string[]): Promise<string> =>
    run('/usr/bin/dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args]);
  const digShort = async (...args: string[]): Promise<string[]> =>
    (await dig('+short', ...args))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .sort();
  const status = async (...args: string[]): Promise<string> => {
    const out = await dig('+noall', '+comments', ...args);
    const m = /status: (\w+)/.exec(out);
    assert.ok(m, `no status in dig output:\n${out}`);
    return m[1] ?? '';
  };

  function udpExchange(msg: Buffer, timeoutMs = 1000): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const s = dgram.createSocket('udp4');
      const timer = setTimeout(() => {
        s.close();
        resolve(undefined);
      }, timeoutMs);
      s.on('message', (m) => {
        clearTimeout(timer);
        s.close();
        resolve(m);
      });
      s.send(msg, port, '127.0.0.1');
    });
  }

  /** Writes `data` on a fresh TCP connection; resolves with everything received until the server closes or timeout. */
  function tcpExchange(data: Buffer, timeoutMs = 1000): Promise<{ received: Buffer; closedByServer: boolean }> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      const c = net.connect(port, '127.0.0.1', () => c.write(data));
      const timer = setTimeout(() => {
        c.destroy();
        resolve({ received: Buffer.concat(chunks), closedByServer: false });
      }, timeoutMs);
      c.on('data', (d) => chunks.push(d));
      c.on('error', () => undefined);
      c.on('close', () => {
        clearTimeout(timer);
        resolve({ received: Buffer.concat(chunks), closedByServer: true });
      });
    });
  }

  before(async () => {
    records.upsertService(clusterIPService('default', 'web', '10.96.0.10', [{ name: 'http', port: 80, protocol: 'TCP' }]));
    records.upsertService(headlessService('db', 'pg', [{ name: 'pg', port: 5432 }]));
    records.upsertEndpoints(
      endpoints(
        'db',
        'pg',
        [
          { ip: '10.244.1.5', hostname: 'pg-0' },
          { ip: '10.244.2.7', hostname: 'pg-1' },
        ],
        [{ name: 'pg', port: 5432, protocol: 'TCP' }],
      ),
    );
    // A headless service with enough endpoints to overflow 512 bytes.
    records.upsertService(headlessService('default', 'big'));
    records.upsertEndpoints(
      endpoints(
        'default',
        'big',
        Array.from({ length: 60 }, (_, i) => ({ ip: `10.245.0.${i + 1}` })),
      ),
    );
    await server.start();
    port = server.port;
    assert.ok(port > 0);
  });

  after(async () => {
    await server.stop();
  });

  it('answers A, SRV and PTR over UDP via dig', async () => {
    assert.deepEqual(await digShort('web.default.svc.cluster.local', 'A'), ['10.96.0.10']);
    assert.deepEqual(await digShort('pg.db.svc.cluster.local', 'A'), ['10.244.1.5', '10.244.2.7']);
    assert.deepEqual(await digShort('pg-1.pg.db.svc.cluster.local', 'A'), ['10.244.2.7']);
    assert.deepEqual(await digShort('10-1-2-3.default.pod.cluster.local', 'A'), ['10.1.2.3']);
    assert.deepEqual(await digShort('_pg._tcp.pg.db.svc.cluster.local', 'SRV'), [
      '0 50 5432 pg-0.pg.db.svc.cluster.local.',
      '0 50 5432 pg-1.pg.db.svc.cluster.local.',
    ]);
    assert.deepEqual(await digShort('-x', '10.96.0.10'), ['web.default.svc.cluster.local.']);
    assert.deepEqual(await digShort('-x', '10.244.1.5'), ['pg-0.pg.db.svc.cluster.local.']);
  });

  it('answers over TCP via dig +tcp', async () => {
    assert.deepEqual(await digShort('+tcp', 'web.default.svc.cluster.local', 'A'), ['10.96.0.10']);
    assert.deepEqual(await digShort('+tcp', '_http._tcp.web.default.svc.cluster.local', 'SRV'), [
      '0 100 80 web.default.svc.cluster.local.',
    ]);
  });

  it('reports NOERROR/NODATA, NXDOMAIN and the AA flag', async () => {
    assert.equal(await status('web.default.svc.cluster.local', 'AAAA'), 'NOERROR');
    assert.deepEqual(await digShort('web.default.svc.cluster.local', 'AAAA'), []);
    assert.equal(await status('nope.default.svc.cluster.local', 'A'), 'NXDOMAIN');
    assert.equal(await status('example.com', 'A'), 'NXDOMAIN');
    assert.equal(await status('+tcp', 'example.com', 'A'), 'NXDOMAIN');
    const out = await dig('+noall', '+comments', 'web.default.svc.cluster.local');
    assert.match(out, /flags:[^;]*\baa\b/);
  });

  it('includes SRV targets as additional records', async () => {
    const out = await dig('+noall', '+additional', '_pg._tcp.pg.db.svc.cluster.local', 'SRV');
    assert.match(out, /pg-0\.pg\.db\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.244\.1\.5/);
  });

  it('truncates UDP answers over 512 bytes without EDNS, and not over TCP or with EDNS', async () => {
    const noEdns = await dig('+noedns', '+ignore', '+noall', '+comments', 'big.default.svc.cluster.local', 'A');
    assert.match(noEdns, /flags:[^;]*\btc\b/);
    const edns = await digShort('+bufsize=4096', '+ignore', 'big.default.svc.cluster.local', 'A');
    assert.equal(edns.length, 60);
    const tcp = await digShort('+noedns', '+tcp', 'big.default.svc.cluster.local', 'A');
    assert.equal(tcp.length, 60);
    // dig retries over TCP on its own after TC.
    const retried = await digShort('+noedns', 'big.default.svc.cluster.local', 'A');
    assert.equal(retried.length, 60);
  });

  it('echoes id and question, passes EDNS through and rejects unknown EDNS versions', async () => {
    const q = dnsPacket.encode({
      type: 'query',
      id: 4242,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: 'A', name: 'WeB.default.svc.cluster.local' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
    });
    const reply = await udpExchange(q);
    assert.ok(reply);
    const d = dnsPacket.decode(reply);
    assert.equal(d.id, 4242);
    assert.equal(d.flag_aa, true);
    assert.equal(d.flag_rd, true);
    assert.deepEqual(d.questions, [{ name: 'WeB.default.svc.cluster.local', type: 'A', class: 'IN' }]);
    assert.deepEqual(d.answers?.map((a) => a.type === 'A' && a.data), ['10.96.0.10']);
    assert.equal(d.additionals?.some((a) => a.type === 'OPT'), true);

    const v1 = Buffer.from(q);
    // OPT record is the last 11 bytes: name(1) type(2) size(2) ext-rcode(1) version(1) flags(2) rdlen(2).
    v1[v1.length - 11 + 6] = 1;
    const badvers = await udpExchange(v1);
    assert.ok(badvers);
    const bd = dnsPacket.decode(badvers);
    const opt = bd.additionals?.find((a) => a.type === 'OPT');
    assert.ok(opt && opt.type === 'OPT');
    assert.equal(opt.extendedRcode, 1, 'BADVERS');
  });

  it('answers NOTIMP to non-QUERY opcodes', async () => {
    const q = dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'A', name: 'web.default.svc.cluster.local' }] });
    q.writeUInt16BE(q.readUInt16BE(2) | (4 << 11), 2); // NOTIFY
    const reply = await udpExchange(q);
    assert.ok(reply);
    assert.equal(reply.readUInt16BE(0), 7);
    assert.equal(reply.readUInt16BE(2) & 0xf, 4);
    assert.equal((reply.readUInt16BE(2) >> 11) & 0xf, 4);
  });

  it('survives garbage over UDP', async () => {
    const garbage = [
      Buffer.alloc(0),
      Buffer.from([1, 2, 3]),
      Buffer.from('this is definitely not a DNS message at all, not even close'),
      Buffer.from('0001010000010000000000000a', 'hex'), // truncated question
      Buffer.from('000101000001000000000000c00c00010001', 'hex'), // pointer loop in question
      Buffer.from('00010100ffffffffffffffff00000100010000', 'hex'), // absurd counts
      Buffer.from('00018100000100000000000003777777000001 0001'.replace(/ /g, ''), 'hex'), // a response
    ];
    for (let i = 0; i < 50; i++) garbage.push(Buffer.from(Array.from({ length: 1 + ((i * 37) % 300) }, (_, j) => (i * 131 + j * 17) & 0xff)));
    for (const g of garbage) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => s.send(g, port, '127.0.0.1', () => resolve()));
      s.close();
    }
    assert.equal(await udpExchange(Buffer.from('garbage garbage garbage'), 300), undefined, 'garbage gets no reply');
    assert.deepEqual(await digShort('web.default.svc.cluster.local', 'A'), ['10.96.0.10']);
  });

  it('survives garbage over TCP and closes the connection', async () => {
    const frame = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
    const bad = [
      frame(Buffer.from('not dns, but long enough to look like a message')),
      Buffer.from([0, 3, 1, 2, 3]), // frame shorter than a header
      frame(Buffer.from('000101000001000000000000c00c00010001', 'hex')),
    ];
    for (const b of bad) {
      const { closedByServer, received } = await tcpExchange(b);
      assert.equal(closedByServer, true);
      assert.equal(received.length, 0);
    }
    // A half-sent frame then hang-up is fine too.
    await tcpExchange(Buffer.from([0, 200, 1, 2]), 100);
    assert.deepEqual(await digShort('+tcp', 'web.default.svc.cluster.local', 'A'), ['10.96.0.10']);
    assert.deepEqual(await digShort('web.default.svc.cluster.local', 'A'), ['10.96.0.10']);
  });

  it('answers several pipelined queries on one TCP connection', async () => {
    const q = (id: number, name: string): Buffer => dnsPacket.streamEncode({ type: 'query', id, questions: [{ type: 'A', name }] });
    const all = Buffer.concat([q(1, 'web.default.svc.cluster.local'), q(2, 'pg-0.pg.db.svc.cluster.local'), q(3, 'nope.cluster.local')]);
    const replies = await new Promise<Buffer[]>((resolve, reject) => {
      const out: Buffer[] = [];
      let buf = Buffer.alloc(0);
      const c = net.connect(port, '127.0.0.1', () => {
        // Split writes at odd boundaries to exercise reassembly.
        c.write(all.subarray(0, 1));
        setTimeout(() => c.write(all.subarray(1, 40)), 20);
        setTimeout(() => c.write(all.subarray(40)), 40);
      });
      c.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (out.length === 3) {
          c.end();
          resolve(out);
        }
      });
      c.on('error', reject);
      setTimeout(() => reject(new Error('timeout')), 3000);
    });
    const decoded = replies.map((r) => dnsPacket.decode(r));
    assert.deepEqual(decoded.map((d) => d.id), [1, 2, 3]);
    assert.deepEqual(decoded[0]?.answers?.map((a) => a.type === 'A' && a.data), ['10.96.0.10']);
    assert.deepEqual(decoded[1]?.answers?.map((a) => a.type === 'A' && a.data), ['10.244.1.5']);
    assert.equal((decoded[2] as { rcode?: string } | undefined)?.rcode, 'NXDOMAIN');
  });

  it('sees record updates immediately', async () => {
    records.upsertService(clusterIPService('default', 'late', '10.96.0.77'));
    assert.deepEqual(await digShort('late.default.svc.cluster.local', 'A'), ['10.96.0.77']);
    records.deleteService('default', 'late');
    assert.equal(await status('late.default.svc.cluster.local', 'A'), 'NXDOMAIN');
  });

  it('stops and can be restarted on another port', async () => {
    const other = new ClusterDnsServer({ records, address: '127.0.0.1', port: 0, log });
    await other.start();
    assert.notEqual(other.port, port);
    await other.stop();
    await other.stop();
  });
});
