// The shared HBONE server on real sockets: per-peer limits on handshakes and sessions, rate-limited refusal logs, handler failures, pruned TLS state.
import assert from 'node:assert/strict';
import { connect as http2Connect, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

import { HboneServer, type ConnectHandler, type HboneServerOptions } from '../src/hbone/server.js';
import { createRootCa, issueLeaf, type CertificateAuthority, type KeyPairPem } from '../src/util/pki.js';
import type { WorkloadCertificate } from '../src/ztunnel/identity/types.js';
import { createProxyMetrics, type ProxyMetrics } from '../src/ztunnel/metrics.js';
import { captureLog, metricValue, waitFor, type CapturedLog } from './helpers/proxy-fakes.js';

const SERVER_IDENTITY = 'spiffe://cluster.local/ns/sample/sa/helloworld';
const CLIENT_IDENTITY = 'spiffe://cluster.local/ns/sample/sa/sleep';

interface Running {
  server: HboneServer<string>;
  listener: Server;
  port: number;
  log: CapturedLog;
  metrics: ProxyMetrics;
}

describe('HBONE server', () => {
  let ca: CertificateAuthority;
  let clientPair: KeyPairPem;
  let certificate: WorkloadCertificate;
  const running: Running[] = [];
  const sockets: Socket[] = [];

  before(async () => {
    ca = await createRootCa('hbone server test root');
    clientPair = await issueLeaf(ca, { commonName: 'sleep', uris: [CLIENT_IDENTITY], client: true });
    const serverPair = await issueLeaf(ca, { commonName: 'helloworld', uris: [SERVER_IDENTITY], server: true, client: true });
    certificate = { identity: SERVER_IDENTITY, certChainPem: serverPair.certPem, keyPem: serverPair.keyPem, rootsPem: ca.certPem, notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000) };
  });

  after(() => {
    for (const socket of sockets) socket.destroy();
    for (const { server, listener, metrics } of running) {
      server.destroy();
      listener.close();
      metrics.close();
    }
  });

  async function start(options: Partial<HboneServerOptions<string>> & { onConnect: ConnectHandler<string> }): Promise<Running> {
    const log = captureLog('hbone-server-test');
    const metrics = createProxyMetrics();
    const server = new HboneServer<string>({ name: 'test HBONE', log: log.log, metrics, ...options });
    const listener = createServer((socket) => server.accept(socket, certificate, ca.certPem, 'test-context'));
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const started = { server, listener, port: (listener.address() as AddressInfo).port, log, metrics };
    running.push(started);
    return started;
  }

  function rawTcp(port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: '127.0.0.1', port }, () => resolve(socket));
      socket.on('error', reject);
      sockets.push(socket);
    });
  }

  function closed(socket: Socket): Promise<void> {
    return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
  }

  async function session(port: number): Promise<{ session: ClientHttp2Session; tls: TLSSocket }> {
    const tls = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, cert: clientPair.certPem, key: clientPair.keyPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    tls.on('error', () => undefined);
    sockets.push(tls);
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', resolve);
      tls.once('error', reject);
    });
    const client = http2Connect(`https://127.0.0.1:${port}`, { createConnection: () => tls });
    client.on('error', () => undefined);
    return { session: client, tls };
  }

  function request(client: ClientHttp2Session, headers: OutgoingHttpHeaders): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const stream = client.request(headers, { endStream: false });
      const chunks: Buffer[] = [];
      stream.on('response', (response) => {
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => resolve({ status: Number(response[':status']), body: Buffer.concat(chunks).toString() }));
      });
      stream.on('error', reject);
    });
  }

  const refuseAll: ConnectHandler<string> = () => ({ kind: 'reject', status: 401, reason: 'policy_denied', message: 'denied' });

  test('handshakes in flight per peer are bounded: one more TCP connection is closed at once and counted', async () => {
    const { port, metrics, log } = await start({ onConnect: refuseAll, limits: { maxHandshakesPerPeer: 3 } });
    // Connections that never send a ClientHello hold a handshake slot until the handshake timeout.
    const silent = await Promise.all([rawTcp(port), rawTcp(port), rawTcp(port)]);
    const extra = await rawTcp(port);
    await closed(extra);
    assert.equal(await metricValue(metrics, 'ambit_hbone_peer_limit_rejections_total', { limit: 'handshakes' }), 1);
    assert.ok(log.lines.some((line) => String(line.msg).includes('over its handshakes limit')));
    assert.ok(silent.every((socket) => !socket.destroyed), 'the connections within the limit stay');
    // A slot frees as soon as one of them goes.
    silent[0]?.destroy();
    await waitFor('the freed slot', async () => {
      const next = await rawTcp(port);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const kept = !next.destroyed;
      next.destroy();
      return kept;
    });
  });

  test('sessions per peer are bounded: the session over the limit is closed after its handshake; the others keep working', async () => {
    const { port, metrics } = await start({ onConnect: refuseAll, limits: { maxSessionsPerPeer: 2 } });
    const first = await session(port);
    const second = await session(port);
    assert.equal((await request(first.session, { ':method': 'CONNECT', ':authority': '10.0.0.1:80' })).status, 401);
    const third = await session(port).catch(() => undefined);
    if (third) await closed(third.tls);
    await waitFor('the refusal to be counted', async () => (await metricValue(metrics, 'ambit_hbone_peer_limit_rejections_total', { limit: 'sessions' })) === 1);
    assert.equal((await request(second.session, { ':method': 'CONNECT', ':authority': '10.0.0.1:80' })).status, 401, 'the sessions within the limit still serve');
    first.session.destroy();
    await waitFor('a new session once one closed', async () => {
      const next = await session(port).catch(() => undefined);
      if (!next) return false;
      try {
        return (await request(next.session, { ':method': 'CONNECT', ':authority': '10.0.0.1:80' })).status === 401;
      } catch {
        return false;
      } finally {
        next.session.destroy();
      }
    });
  });

  test('a flood of rejected streams is logged at a bounded rate, with the number suppressed', async () => {
    const { port, log, metrics } = await start({ onConnect: refuseAll });
    const { session: client } = await session(port);
    for (let i = 0; i < 200; i++) assert.equal((await request(client, { ':method': 'CONNECT', ':authority': '10.0.0.1:80' })).status, 401);
    const logged = log.lines.filter((line) => line.msg === 'HBONE CONNECT rejected');
    assert.ok(logged.length < 40, `${logged.length} log lines for 200 rejections`);
    assert.equal(await metricValue(metrics, 'ambit_hbone_rejected_streams_total', { code: '401', reason: 'policy_denied' }), 200, 'the metric counts every one');
    client.destroy();
  });

  test('a handler that throws answers 503 and the server carries on; a non-CONNECT is 400 without reaching the handler', async () => {
    let calls = 0;
    const { port } = await start({
      onConnect: () => {
        calls++;
        throw new Error('boom');
      },
    });
    const { session: client } = await session(port);
    const failed = await request(client, { ':method': 'CONNECT', ':authority': '10.0.0.1:80' });
    assert.equal(failed.status, 503);
    assert.doesNotMatch(failed.body, /boom/, 'internal errors stay in the log');
    const get = await request(client, { ':method': 'GET', ':path': '/', ':authority': '10.0.0.1:80' });
    assert.equal(get.status, 400);
    assert.equal(calls, 1);
    client.destroy();
  });

  test('a rejection that says the session is stale (destination no longer served) answers, then sends GOAWAY so the client opens a new session; other rejections keep the session', async () => {
    let stale = false;
    const { port } = await start({ onConnect: () => ({ kind: 'reject', status: stale ? 503 : 401, reason: stale ? 'destination_gone' : 'policy_denied', message: 'no', closeSession: stale }) });
    const { session: client } = await session(port);
    let goaway = false;
    client.on('goaway', () => (goaway = true));
    assert.equal((await request(client, { ':method': 'CONNECT', ':authority': '10.0.0.1:80' })).status, 401);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(goaway, false, 'a policy denial keeps the session');
    stale = true;
    assert.equal((await request(client, { ':method': 'CONNECT', ':authority': '10.0.0.1:80' })).status, 503);
    for (let i = 0; i < 50 && !goaway; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(goaway, true, 'GOAWAY after the stale-session rejection');
    client.destroy();
  });

  test('TLS servers of identities no longer served are pruned', async () => {
    const { server, port } = await start({ onConnect: refuseAll });
    const { session: client } = await session(port);
    assert.deepEqual(server.identities, [SERVER_IDENTITY]);
    server.retainIdentities(new Set(['spiffe://cluster.local/ns/sample/sa/someone-else']));
    assert.deepEqual(server.identities, []);
    // The established session keeps its TLS; a new connection builds the server again.
    assert.equal((await request(client, { ':method': 'CONNECT', ':authority': '10.0.0.1:80' })).status, 401);
    const { session: again } = await session(port);
    assert.deepEqual(server.identities, [SERVER_IDENTITY]);
    client.destroy();
    again.destroy();
  });
});
