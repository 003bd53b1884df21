import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { Packet, Question, StringAnswer } from 'dns-packet';
import { Registry } from 'prom-client';
import { DnsProxy, upstreamsFromResolvConf } from '../src/ztunnel/dns/proxy.js';
import { FrameReader, frame } from '../src/ztunnel/dns/framing.js';
import { createLogger } from '../src/util/log.js';

const LOOPBACK = '127.0.0.1';
const MESH_NAME = 'hello-remote.sample.svc.cluster.local';
const MESH_VIP = '240.240.0.5';
const EXAMPLE_IP = '93.184.216.34';
/** Only bounds a test that would otherwise hang; never asserted on. */
const CLIENT_TIMEOUT_MS = 5000;
const FLAG_AA = dnsPacket.AUTHORITATIVE_ANSWER;
const FLAG_TC = dnsPacket.TRUNCATED_RESPONSE;

const log = createLogger('ztunnel-dns-test');

// ------------------------------------------------------------------------------ fake upstream

/** A recursive resolver stand-in on one port (UDP and TCP): example.com has an A record, every other name is NXDOMAIN. */
class FakeUpstream {
  readonly seen: Array<{ transport: 'udp' | 'tcp'; name: string; type: string }> = [];
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly conns = new Set<net.Socket>();
  port = 0;

  async start(): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => udp.bind(0, LOOPBACK, () => resolve()));
      const port = udp.address().port;
      const tcp = net.createServer((c) => this.onTcp(c));
      const ok = await new Promise<boolean>((resolve) => {
        tcp.once('error', () => resolve(false));
        tcp.listen(port, LOOPBACK, () => resolve(true));
      });
      if (!ok) {
        udp.close();
        continue;
      }
      udp.on('message', (msg, rinfo) => udp.send(this.reply(msg, 'udp'), rinfo.port, rinfo.address));
      this.udp = udp;
      this.tcp = tcp;
      this.port = port;
      return;
    }
    throw new Error('fake upstream: no port free for both UDP and TCP');
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await Promise.all([
      new Promise<void>((resolve) => (this.udp ? this.udp.close(() => resolve()) : resolve())),
      new Promise<void>((resolve) => (this.tcp ? this.tcp.close(() => resolve()) : resolve())),
    ]);
  }

  private onTcp(c: net.Socket): void {
    this.conns.add(c);
    c.on('close', () => this.conns.delete(c));
    const reader = new FrameReader();
    c.on('data', (chunk: Buffer) => {
      for (const msg of reader.push(chunk)) c.write(frame(this.reply(msg, 'tcp')));
    });
  }

  private reply(msg: Buffer, transport: 'udp' | 'tcp'): Buffer {
    const query = dnsPacket.decode(msg);
    const q = query.questions?.[0];
    this.seen.push({ transport, name: q?.name ?? '', type: q?.type ?? '' });
    const known = q?.name.toLowerCase() === 'example.com';
    return dnsPacket.encode({
      id: query.id,
      type: 'response',
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (known ? 0 : 3),
      questions: query.questions ?? [],
      answers: known && q?.type === 'A' ? [{ name: q.name, type: 'A', ttl: 300, data: EXAMPLE_IP }] : [],
    });
  }
}

// ---------------------------------------------------------------------------------- clients

function query(id: number, question: Question, edns?: number): Buffer {
  const packet: Packet = { id, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [question] };
  if (edns) {
    packet.additionals = [
      { name: '.', type: 'OPT', udpPayloadSize: edns, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] },
    ];
  }
  return dnsPacket.encode(packet);
}

function udpExchange(port: number, msg: Buffer): Promise<Buffer> {
  const sock = dgram.createSocket('udp4');
  return new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no UDP reply')), CLIENT_TIMEOUT_MS);
    sock.on('message', (reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
    sock.send(msg, port, LOOPBACK);
  }).finally(() => sock.close());
}

function udpSend(port: number, msg: Buffer): Promise<void> {
  const sock = dgram.createSocket('udp4');
  return new Promise<void>((resolve) => sock.send(msg, port, LOOPBACK, () => resolve())).finally(() => sock.close());
}

/** Sends raw bytes on one TCP connection and collects `expected` framed replies. */
function tcpExchange(port: number, chunks: Buffer[], expected: number): Promise<Buffer[]> {
  const sock = net.connect(port, LOOPBACK);
  const replies: Buffer[] = [];
  const reader = new FrameReader();
  return new Promise<Buffer[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`got ${replies.length} of ${expected} TCP replies`)), CLIENT_TIMEOUT_MS);
    sock.on('error', reject);
    sock.on('data', (chunk: Buffer) => {
      replies.push(...reader.push(chunk));
      if (replies.length >= expected) {
        clearTimeout(timer);
        resolve(replies);
      }
    });
    sock.on('connect', () => {
      // Separate writes, each flushed, to exercise reassembly across segments.
      const writeNext = (i: number): void => {
        const chunk = chunks[i];
        if (chunk) sock.write(chunk, () => setImmediate(() => writeNext(i + 1)));
      };
      writeNext(0);
    });
  }).finally(() => sock.destroy());
}

async function tcpQuery(port: number, msg: Buffer): Promise<Buffer> {
  const [reply] = await tcpExchange(port, [frame(msg)], 1);
  assert.ok(reply);
  return reply;
}

/** Resolves once the server closes the connection (after sending `bytes`). */
function tcpSendExpectClose(port: number, bytes: Buffer): Promise<Buffer> {
  const sock = net.connect(port, LOOPBACK);
  const received: Buffer[] = [];
  return new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not close the connection')), CLIENT_TIMEOUT_MS);
    sock.on('data', (c: Buffer) => received.push(c));
    sock.on('error', () => undefined); // a reset is a close too
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(received));
    });
    sock.on('connect', () => sock.write(bytes));
  }).finally(() => sock.destroy());
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, () => resolve()));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

/** dns-packet decodes the RCODE name, but its types leave it out. */
type Reply = Packet & { rcode?: string };

function decode(msg: Buffer): Reply {
  return dnsPacket.decode(msg) as Reply;
}

function firstTtl(packet: Packet): number | undefined {
  const first = packet.answers?.[0];
  return first && 'ttl' in first ? first.ttl : undefined;
}

function aData(packet: Packet): string[] {
  return (packet.answers ?? []).filter((a): a is StringAnswer => a.type === 'A').map((a) => a.data);
}

// ------------------------------------------------------------------------------------- tests

describe('DnsProxy', () => {
  const upstream = new FakeUpstream();
  const lookups: Array<{ name: string; clientIp: string }> = [];
  const registry = new Registry();
  let meshAddresses: string[] = [MESH_VIP];
  let proxy: DnsProxy;
  let ports: { udp: number; tcp: number };

  before(async () => {
    await upstream.start();
    proxy = new DnsProxy({
      resolve: (name, clientIp) => {
        lookups.push({ name, clientIp });
        return name === MESH_NAME ? meshAddresses : undefined;
      },
      upstreams: [{ host: LOOPBACK, port: upstream.port }],
      log,
      host: LOOPBACK,
      port: 0,
      registry,
    });
    await proxy.start();
    ports = proxy.port();
  });

  after(async () => {
    await proxy.stop();
    await upstream.stop();
  });

  beforeEach(() => {
    upstream.seen.length = 0;
    lookups.length = 0;
    meshAddresses = [MESH_VIP];
  });

  it('answers a mesh name over UDP authoritatively, case-insensitively, echoing ID and question', async () => {
    const reply = await udpExchange(ports.udp, query(4242, { type: 'A', name: 'Hello-Remote.sample.svc.cluster.local.' }));
    const packet = decode(reply);
    assert.equal(packet.id, 4242);
    assert.equal(packet.rcode, 'NOERROR');
    assert.ok((packet.flags ?? 0) & FLAG_AA, 'AA set');
    assert.equal(packet.questions?.[0]?.name, 'Hello-Remote.sample.svc.cluster.local');
    assert.deepEqual(aData(packet), [MESH_VIP]);
    assert.equal(firstTtl(packet), 30);
    assert.deepEqual(lookups, [{ name: MESH_NAME, clientIp: LOOPBACK }]);
    assert.deepEqual(upstream.seen, [], 'mesh names are not forwarded');
  });

  it('answers a mesh name over TCP', async () => {
    const packet = decode(await tcpQuery(ports.tcp, query(7, { type: 'A', name: MESH_NAME })));
    assert.equal(packet.id, 7);
    assert.equal(packet.rcode, 'NOERROR');
    assert.deepEqual(aData(packet), [MESH_VIP]);
    assert.deepEqual(upstream.seen, []);
  });

  it('returns NOERROR with no data for AAAA of a mesh name, without forwarding', async () => {
    const packet = decode(await udpExchange(ports.udp, query(8, { type: 'AAAA', name: MESH_NAME })));
    assert.equal(packet.rcode, 'NOERROR');
    assert.ok((packet.flags ?? 0) & FLAG_AA);
    assert.deepEqual(packet.answers, []);
    assert.deepEqual(upstream.seen, []);
  });

  it('forwards other types of a mesh name', async () => {
    const packet = decode(await udpExchange(ports.udp, query(9, { type: 'TXT', name: MESH_NAME })));
    assert.equal(packet.rcode, 'NXDOMAIN'); // what the fake upstream says
    assert.deepEqual(upstream.seen, [{ transport: 'udp', name: MESH_NAME, type: 'TXT' }]);
  });

  it('forwards example.com over UDP and relays the upstream answer with the client ID', async () => {
    const packet = decode(await udpExchange(ports.udp, query(0xbeef, { type: 'A', name: 'example.com' })));
    assert.equal(packet.id, 0xbeef);
    assert.equal(packet.rcode, 'NOERROR');
    assert.equal((packet.flags ?? 0) & FLAG_AA, 0, 'not authoritative: the upstream answered');
    assert.deepEqual(aData(packet), [EXAMPLE_IP]);
    assert.equal(firstTtl(packet), 300);
    assert.deepEqual(upstream.seen, [{ transport: 'udp', name: 'example.com', type: 'A' }]);
  });

  it('forwards example.com over TCP to the upstream over TCP', async () => {
    const packet = decode(await tcpQuery(ports.tcp, query(0x1234, { type: 'A', name: 'example.com' })));
    assert.equal(packet.id, 0x1234);
    assert.deepEqual(aData(packet), [EXAMPLE_IP]);
    assert.deepEqual(upstream.seen, [{ transport: 'tcp', name: 'example.com', type: 'A' }]);
  });

  it('relays NXDOMAIN for an unknown name over UDP and TCP', async () => {
    const udp = decode(await udpExchange(ports.udp, query(11, { type: 'A', name: 'nope.invalid' })));
    const tcp = decode(await tcpQuery(ports.tcp, query(12, { type: 'A', name: 'nope.invalid' })));
    assert.equal(udp.id, 11);
    assert.equal(udp.rcode, 'NXDOMAIN');
    assert.equal(tcp.id, 12);
    assert.equal(tcp.rcode, 'NXDOMAIN');
    assert.deepEqual(
      upstream.seen.map((s) => s.transport),
      ['udp', 'tcp'],
    );
  });

  it('forwards a query with two questions even when one is a mesh name', async () => {
    const msg = dnsPacket.encode({
      id: 13,
      type: 'query',
      questions: [
        { type: 'A', name: MESH_NAME },
        { type: 'A', name: 'example.com' },
      ],
    });
    const packet = decode(await udpExchange(ports.udp, msg));
    assert.equal(packet.id, 13);
    assert.equal(upstream.seen.length, 1);
    assert.deepEqual(lookups, []);
  });

  it('handles two queries on one TCP connection, the second split across writes', async () => {
    const first = frame(query(21, { type: 'A', name: MESH_NAME }));
    const second = frame(query(22, { type: 'A', name: 'example.com' }));
    const replies = await tcpExchange(ports.tcp, [Buffer.concat([first, second.subarray(0, 5)]), second.subarray(5)], 2);
    const byId = new Map(replies.map((r) => decode(r)).map((p) => [p.id, p]));
    assert.deepEqual(aData(byId.get(21) ?? {}), [MESH_VIP]);
    assert.deepEqual(aData(byId.get(22) ?? {}), [EXAMPLE_IP]);
  });

  it('drops UDP garbage and keeps answering', async () => {
    await udpSend(ports.udp, Buffer.from('garbage'));
    // A header that promises a question the message does not contain.
    await udpSend(ports.udp, Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, 0x61]));
    // A response (QR set) is not a query.
    await udpSend(ports.udp, dnsPacket.encode({ id: 3, type: 'response', questions: [{ type: 'A', name: MESH_NAME }] }));
    const packet = decode(await udpExchange(ports.udp, query(31, { type: 'A', name: MESH_NAME })));
    assert.equal(packet.id, 31);
    assert.deepEqual(aData(packet), [MESH_VIP]);
    assert.deepEqual(upstream.seen, []);
  });

  it('closes a TCP connection that sends garbage and keeps answering on new ones', async () => {
    const tooShort = await tcpSendExpectClose(ports.tcp, frame(Buffer.from('garbage')));
    assert.equal(tooShort.length, 0, 'no reply to garbage');
    const badName = await tcpSendExpectClose(ports.tcp, frame(Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, 0x61])));
    assert.equal(badName.length, 0);
    const packet = decode(await tcpQuery(ports.tcp, query(32, { type: 'A', name: 'example.com' })));
    assert.deepEqual(aData(packet), [EXAMPLE_IP]);
  });

  it('sets TC on a UDP mesh answer over 512 bytes, unless EDNS allows it or over TCP', async () => {
    meshAddresses = Array.from({ length: 40 }, (_, i) => `240.240.1.${i}`);
    const truncated = decode(await udpExchange(ports.udp, query(41, { type: 'A', name: MESH_NAME })));
    assert.ok((truncated.flags ?? 0) & FLAG_TC, 'TC set');
    assert.deepEqual(truncated.answers, []);

    const edns = decode(await udpExchange(ports.udp, query(42, { type: 'A', name: MESH_NAME }, 4096)));
    assert.equal((edns.flags ?? 0) & FLAG_TC, 0);
    assert.equal(aData(edns).length, 40);
    assert.ok(edns.additionals?.some((a) => a.type === 'OPT'), 'EDNS answered with an OPT record');

    const tcp = decode(await tcpQuery(ports.tcp, query(43, { type: 'A', name: MESH_NAME })));
    assert.equal((tcp.flags ?? 0) & FLAG_TC, 0);
    assert.equal(aData(tcp).length, 40);
  });

  it('counts requests by result', async () => {
    const before = await counts(registry);
    await udpExchange(ports.udp, query(51, { type: 'A', name: MESH_NAME }));
    await udpExchange(ports.udp, query(52, { type: 'A', name: 'example.com' }));
    const now = await counts(registry);
    assert.equal((now.answered ?? 0) - (before.answered ?? 0), 1);
    assert.equal((now.forwarded ?? 0) - (before.forwarded ?? 0), 1);
  });
});

async function counts(registry: Registry): Promise<Record<string, number>> {
  const metric = await registry.getSingleMetric('ambit_dns_requests_total')?.get();
  return Object.fromEntries((metric?.values ?? []).map((v) => [String(v.labels.result), v.value]));
}

describe('DnsProxy with failing upstreams', () => {
  const upstream = new FakeUpstream();
  let deadPort = 0;

  before(async () => {
    await upstream.start();
    deadPort = await closedPort();
  });
  after(() => upstream.stop());

  async function withProxy(upstreams: Array<{ host: string; port: number }>, fn: (ports: { udp: number; tcp: number }) => Promise<void>): Promise<void> {
    const proxy = new DnsProxy({ resolve: () => undefined, upstreams, log, host: LOOPBACK, port: 0, upstreamTimeoutMs: 200 });
    await proxy.start();
    try {
      await fn(proxy.port());
    } finally {
      await proxy.stop();
    }
  }

  it('returns SERVFAIL with the client ID when the only upstream is down, over UDP and TCP', async () => {
    await withProxy([{ host: LOOPBACK, port: deadPort }], async (ports) => {
      const udp = decode(await udpExchange(ports.udp, query(61, { type: 'A', name: 'example.com' })));
      assert.equal(udp.id, 61);
      assert.equal(udp.rcode, 'SERVFAIL');
      assert.equal(udp.questions?.[0]?.name, 'example.com');
      const tcp = decode(await tcpQuery(ports.tcp, query(62, { type: 'A', name: 'example.com' })));
      assert.equal(tcp.id, 62);
      assert.equal(tcp.rcode, 'SERVFAIL');
    });
  });

  it('returns SERVFAIL when there is no upstream at all', async () => {
    await withProxy([], async (ports) => {
      const udp = decode(await udpExchange(ports.udp, query(63, { type: 'A', name: 'example.com' })));
      assert.equal(udp.rcode, 'SERVFAIL');
    });
  });

  it('falls back to the next upstream when the first is down', async () => {
    await withProxy(
      [
        { host: LOOPBACK, port: deadPort },
        { host: LOOPBACK, port: upstream.port },
      ],
      async (ports) => {
        const udp = decode(await udpExchange(ports.udp, query(64, { type: 'A', name: 'example.com' })));
        assert.deepEqual(aData(udp), [EXAMPLE_IP]);
        const tcp = decode(await tcpQuery(ports.tcp, query(65, { type: 'A', name: 'example.com' })));
        assert.deepEqual(aData(tcp), [EXAMPLE_IP]);
      },
    );
  });
});

describe('upstreamsFromResolvConf', () => {
  it('reads nameserver lines in order, on port 53, skipping comments, other directives and duplicates', () => {
    const text = [
      '# generated by kubelet',
      'search sample.svc.cluster.local svc.cluster.local cluster.local',
      'nameserver 10.96.0.10',
      '; nameserver 10.0.0.99',
      'nameserver   10.96.0.11   # secondary',
      'nameserver 10.96.0.10',
      'options ndots:5',
      '',
    ].join('\n');
    assert.deepEqual(upstreamsFromResolvConf(text), [
      { host: '10.96.0.10', port: 53 },
      { host: '10.96.0.11', port: 53 },
    ]);
  });

  it('keeps IPv6 nameservers (with a zone too) and skips invalid addresses', () => {
    const text = 'nameserver fd00::a\r\nnameserver fe80::1%eth0\nnameserver not-an-ip\nnameserver\nnameserver 300.1.1.1\n';
    assert.deepEqual(upstreamsFromResolvConf(text), [
      { host: 'fd00::a', port: 53 },
      { host: 'fe80::1%eth0', port: 53 },
    ]);
  });

  it('returns nothing for an empty file', () => {
    assert.deepEqual(upstreamsFromResolvConf(''), []);
  });
});
