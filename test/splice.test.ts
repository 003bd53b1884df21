import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect as http2Connect, createServer as createHttp2Server, type ClientHttp2Stream, type ServerHttp2Stream } from 'node:http2';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';

import { IdleMemoryRelease, memoryReleaseAvailable } from '../src/hbone/memory.js';
import { abort, splice, spliceActivity, SPLICE_BUFFER_BYTES } from '../src/hbone/io.js';
import { captureLog, readToEnd, waitFor, within } from './helpers/proxy-fakes.js';

const noCount = { upstreamBytes: () => undefined, downstreamBytes: () => undefined };

/** A connected pair of TCP sockets on loopback, both allowing half-open: [client end, server end]. */
async function socketPair(servers: Server[]): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const client = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise((resolve) => client.once('connect', resolve));
  const serverEnd = await accepted;
  for (const socket of [client, serverEnd]) socket.on('error', () => undefined);
  return [client, serverEnd];
}

/** Everything read until the peer's end of data (the socket stays open for writing). */
function readUntilEnd(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('splice', () => {
  const servers: Server[] = [];
  after(() => {
    for (const server of servers) server.close();
  });

  test('a half-close that came before the splice is passed on', async () => {
    const [client, proxyDownstream] = await socketPair(servers);
    const [proxyUpstream, app] = await socketPair(servers);
    const appGot = readUntilEnd(app);
    // The client connects and half-closes at once, while the proxy is still setting up its upstream.
    client.end();
    await new Promise((resolve) => proxyDownstream.once('end', resolve));
    assert.equal(proxyDownstream.readableEnded, true);
    const done = splice(proxyDownstream, proxyUpstream, noCount);
    assert.equal((await within(5000, 'the upstream sees the end of data', appGot)).length, 0);
    app.end('bye');
    const reply = await within(5000, 'the client gets the reply and the end', readToEnd(client));
    assert.equal(reply.data.toString(), 'bye');
    assert.equal(await within(5000, 'the splice ends', done), undefined);
  });

  test('aborting a socket that already sent its end of data closes it (no leaked handle)', async () => {
    const [client, server] = await socketPair(servers);
    // end() shuts the socket down on the next tick; libuv completes the shutdown later, in its
    // poll phase. In between, a reset fails (EINVAL).
    server.end();
    await new Promise((resolve) => process.nextTick(resolve));
    const closed = new Promise((resolve) => server.once('close', resolve));
    abort(server);
    await within(5000, 'the socket closes', closed);
    client.destroy();
  });

  test('carries bulk data both ways intact, with bounded buffering in front of a slow reader', async () => {
    const [client, proxyDownstream] = await socketPair(servers);
    const [proxyUpstream, app] = await socketPair(servers);
    const open = spliceActivity.open;
    const done = splice(proxyDownstream, proxyUpstream, noCount);
    assert.equal(spliceActivity.open, open + 1);
    const payload = randomBytes(8 * 1024 * 1024);
    // The app reads slowly at first: the splice must stop reading the client rather than buffer it all.
    app.pause();
    client.end(payload);
    let maxQueued = 0;
    const watcher = setInterval(() => {
      maxQueued = Math.max(maxQueued, proxyUpstream.writableLength);
    }, 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const reading = readUntilEnd(app);
    app.resume();
    const received = await within(10_000, 'the app gets everything', reading);
    clearInterval(watcher);
    assert.equal(received.length, payload.length);
    assert.equal(sha(received), sha(payload));
    assert.ok(maxQueued <= SPLICE_BUFFER_BYTES + 64 * 1024, `at most the splice buffer and one read queued (saw ${maxQueued})`);
    const answer = randomBytes(3 * 1024 * 1024);
    app.end(answer);
    const back = await within(10_000, 'the client gets the answer', readToEnd(client));
    assert.equal(sha(back.data), sha(answer));
    assert.equal(await within(5000, 'the splice ends', done), undefined);
    assert.equal(spliceActivity.open, open);
  });

  test('data out of an HTTP/2 stream reaches a socket intact and in order', async () => {
    const h2 = createHttp2Server();
    const [proxyUpstream, app] = await socketPair(servers);
    const streamReady = new Promise<ServerHttp2Stream>((resolve) => h2.on('stream', (stream) => resolve(stream)));
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
    const session = http2Connect(`http://127.0.0.1:${(h2.address() as AddressInfo).port}`);
    const request: ClientHttp2Stream = session.request({ ':method': 'POST' }, { endStream: false });
    const stream = await streamReady;
    stream.respond({ ':status': 200 });
    const done = splice(stream, proxyUpstream, noCount);
    // Many writes of odd sizes: chunks split across frames and reads.
    const parts: Buffer[] = [];
    for (let i = 0; i < 400; i++) parts.push(randomBytes(1 + ((i * 7919) % 40_000)));
    const payload = Buffer.concat(parts);
    for (const part of parts) request.write(part);
    request.end();
    const received = await within(10_000, 'the app gets everything', readUntilEnd(app));
    assert.equal(sha(received), sha(payload));
    app.end();
    await within(5000, 'the splice ends', done);
    session.close();
    h2.close();
  });
});

describe('idle memory release', () => {
  const servers: Server[] = [];
  after(() => {
    for (const server of servers) server.close();
  });

  test('runs once after a busy period, when no splice is open', { skip: !memoryReleaseAvailable() && 'no malloc_trim (not glibc)' }, async () => {
    const { log, lines } = captureLog('proxy');
    const released = () => lines.filter((line) => line.msg === 'idle: returned free malloc memory to the OS').length;
    const release = new IdleMemoryRelease(log, 20);
    release.start();
    try {
      const [client, proxyDownstream] = await socketPair(servers);
      const [proxyUpstream, app] = await socketPair(servers);
      const done = splice(proxyDownstream, proxyUpstream, noCount);
      // Busy: a splice is open, nothing is released.
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(released(), 0);
      client.end();
      await readUntilEnd(app);
      app.end();
      await readToEnd(client);
      await within(5000, 'the splice ends', done);
      await waitFor('the release after the busy period', () => released() === 1, 5000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(released(), 1, 'once per busy period');
    } finally {
      release.stop();
    }
  });
});
