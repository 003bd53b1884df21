// relayHttp1, shared by the waypoint and the ingress: a stale kept-alive connection is retried once for an idempotent request only, failures get Envoy's 503 and flags, a client that leaves is DC.
import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { relayHttp1, UPSTREAM_FAILED, type Http1Outcome } from '../src/l7/forward-http1.js';
import { forwardableHeaders, HttpUpstreams, type TunnelTarget } from '../src/l7/upstream.js';

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/**
 * The upstream app: answers `<method> <path> <body length>`; `/hang` answers headers and never ends;
 * `/reset-reused` resets the connection when it is not the connection's first request, as a
 * kept-alive connection the far side closed looks when it is used.
 */
let upstreamPort = 0;
const servedOn = new WeakMap<Socket, number>();
/** Every path the upstream app was asked for. */
const upstreamPaths: string[] = [];
const upstream = createServer((req, res) => {
  upstreamPaths.push(req.url ?? '');
  const served = (servedOn.get(req.socket) ?? 0) + 1;
  servedOn.set(req.socket, served);
  if (req.url === '/reset-reused' && served > 1) return void req.socket.resetAndDestroy();
  let length = 0;
  req.on('data', (chunk: Buffer) => (length += chunk.length));
  req.on('end', () => {
    if (req.url === '/hang') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      return;
    }
    res.end(`${req.method} ${req.url} ${length}`);
  });
});

let opened = 0;
const tunnel: TunnelTarget = {
  key: 'test upstream',
  open: () =>
    new Promise((resolve, reject) => {
      opened++;
      const socket = connect(upstreamPort, '127.0.0.1');
      socket.once('connect', () => resolve(socket));
      socket.once('error', reject);
    }),
};
const refused: TunnelTarget = { key: 'refused', open: () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })) };

let upstreams: HttpUpstreams;
let proxyPort = 0;
let target = tunnel;
let delayMs = 0;
const outcomes: Http1Outcome[] = [];
const proxy = createServer((req: IncomingMessage, res: ServerResponse) => {
  relayHttp1({ upstreams, tunnel: target, req, res, headers: forwardableHeaders(req.headers), delayMs, onDone: (outcome) => outcomes.push(outcome) });
});

function send(method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: proxyPort, method, path, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const lastOutcome = async (): Promise<Http1Outcome> => {
  for (let i = 0; i < 100 && outcomes.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  const outcome = outcomes.pop();
  assert.ok(outcome, 'the request reported how it ended');
  return outcome;
};

describe('relayHttp1', () => {
  before(async () => {
    upstreamPort = await listen(upstream);
    proxyPort = await listen(proxy);
  });
  after(() => {
    upstreams?.close();
    upstream.close();
    proxy.close();
  });

  it('relays a request with its body and counts the bytes both ways', async () => {
    upstreams = new HttpUpstreams();
    outcomes.length = 0;
    assert.deepEqual(await send('POST', '/orders', 'x'.repeat(1000)), { status: 200, body: 'POST /orders 1000' });
    const outcome = await lastOutcome();
    assert.equal(outcome.status, 200);
    assert.equal(outcome.flags, '-');
    assert.equal(outcome.requestBytes, 1000);
    assert.equal(outcome.responseBytes, 'POST /orders 1000'.length);
  });

  it('an idempotent request on a kept-alive connection the upstream reset is tried once more on a new one', async () => {
    upstreams = new HttpUpstreams();
    outcomes.length = 0;
    await send('GET', '/first');
    await lastOutcome();
    const before = opened;
    assert.deepEqual(await send('GET', '/reset-reused'), { status: 200, body: 'GET /reset-reused 0' });
    assert.equal((await lastOutcome()).flags, '-');
    assert.equal(opened, before + 1, 'one new connection, for the retry');
  });

  it('a request with a body on a reset connection is not retried: 503 UF with Envoy\'s words', async () => {
    upstreams = new HttpUpstreams();
    outcomes.length = 0;
    await send('GET', '/first');
    await lastOutcome();
    const reply = await send('POST', '/reset-reused', 'body');
    assert.equal(reply.status, 503);
    assert.equal(reply.body, `${UPSTREAM_FAILED}. reset reason: connection termination`);
    const outcome = await lastOutcome();
    assert.equal(outcome.flags, 'UF');
    assert.equal(outcome.error?.code, 'ECONNRESET');
  });

  it('an upstream that cannot be reached: 503 UF, reset reason connection failure', async () => {
    upstreams = new HttpUpstreams();
    outcomes.length = 0;
    target = refused;
    try {
      const reply = await send('GET', '/');
      assert.equal(reply.status, 503);
      assert.equal(reply.body, `${UPSTREAM_FAILED}. reset reason: connection failure`);
      const outcome = await lastOutcome();
      assert.equal(outcome.flags, 'UF');
      assert.match(outcome.error?.message ?? '', /ECONNREFUSED/);
    } finally {
      target = tunnel;
    }
  });

  it('a fault delay holds the request back, the body included; a client that leaves during it is DC and nothing is sent', async () => {
    upstreams = new HttpUpstreams();
    outcomes.length = 0;
    delayMs = 300;
    try {
      const started = performance.now();
      assert.deepEqual(await send('POST', '/late', 'abc'), { status: 200, body: 'POST /late 3' });
      assert.ok(performance.now() - started >= 295, 'answered after the delay');
      await lastOutcome();
      await new Promise<void>((resolve) => {
        const req = request({ host: '127.0.0.1', port: proxyPort, method: 'GET', path: '/gone', agent: false });
        req.on('error', () => resolve());
        req.end();
        setTimeout(() => req.destroy(), 50);
      });
      const outcome = await lastOutcome();
      assert.deepEqual([outcome.status, outcome.flags], [0, 'DC']);
      await new Promise((resolve) => setTimeout(resolve, 400));
      assert.ok(!upstreamPaths.includes('/gone'), 'the request that left during the delay never reached the upstream');
    } finally {
      delayMs = 0;
    }
  });

  it('a client that leaves mid-response: DC, and the upstream request is cut', async () => {
    upstreams = new HttpUpstreams();
    outcomes.length = 0;
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: proxyPort, method: 'GET', path: '/hang', agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.once('error', reject);
      req.end();
    });
    const outcome = await lastOutcome();
    assert.equal(outcome.flags, 'DC');
    assert.equal(outcome.status, 0);
  });
});
