import assert from 'node:assert/strict';
import { connect, createServer, type ClientHttp2Session, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';

import { createProxyMetrics } from '../src/ztunnel/metrics.js';
import { SessionPool } from '../src/hbone/session-pool.js';

/** A plain HTTP/2 server answering every CONNECT with 200: the pool's logic, not TLS, is under test. */
describe('HBONE session pool: session age', () => {
  let server: Http2Server;
  let port = 0;
  before(async () => {
    server = createServer();
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.on('data', () => undefined);
      stream.on('end', () => stream.end());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  test('a session older than maxSessionAgeMs takes no new stream: the next one dials anew, the old one closes when done', async () => {
    let clock = 0;
    const sessions: ClientHttp2Session[] = [];
    const pool = new SessionPool({
      log: pino({ level: 'silent' }),
      metrics: createProxyMetrics(),
      maxStreamsPerSession: 100,
      idleTimeoutMs: 60_000,
      maxSessionAgeMs: 1_000,
      now: () => clock,
      onSizeChange: () => undefined,
    });
    const request = {
      key: 'k',
      certChainPem: 'cert',
      headers: { ':authority': 'svc.ns.svc.cluster.local:80' },
      describe: 'test',
      dial: () => {
        const session = connect(`http://127.0.0.1:${port}`);
        sessions.push(session);
        return { ready: new Promise<ClientHttp2Session>((resolve, reject) => session.once('connect', () => resolve(session)).once('error', reject)), destroy: () => session.destroy() };
      },
    };
    const first = await pool.open(request);
    const second = await pool.open(request);
    assert.equal(sessions.length, 1, 'young session reused');
    clock = 2_000;
    const third = await pool.open(request);
    assert.equal(sessions.length, 2, 'an old session is not given new streams');
    const oldSession = sessions[0]!;
    assert.equal(oldSession.closed, false, 'still carrying its streams');
    for (const stream of [first, second]) stream.end();
    await new Promise<void>((resolve) => (oldSession.closed ? resolve() : oldSession.once('close', () => resolve())));
    third.end();
    pool.destroy();
  });
});
