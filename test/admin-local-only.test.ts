// Debug routes answer only clients on this host (issue 11, finding 7), on the real HTTP server and for addresses no test can dial from.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';

import pino from 'pino';

import { localOnly, startHttpEndpoint, text } from '../src/ztunnel/admin/server.js';

const secretish = () => text('the mesh layout\n');
const from = (remoteAddress: string) => ({ socket: { remoteAddress } }) as unknown as IncomingMessage;

test('a local-only route refuses clients that are not on loopback, and answers those that are', async () => {
  const route = localOnly(secretish);
  for (const address of ['10.1.2.3', '198.18.0.5', '::ffff:10.0.0.1', 'fd00::1', '']) {
    const answer = await route(from(address));
    assert.equal(answer.status, 403, address);
    assert.doesNotMatch(answer.body, /mesh layout/);
  }
  for (const address of ['127.0.0.1', '127.5.6.7', '::1', '::ffff:127.0.0.1']) assert.equal((await route(from(address))).status, 200, address);
});

test('on a real endpoint listening on every address, a loopback client gets the debug route', async () => {
  const server = await startHttpEndpoint('0.0.0.0', 0, { '/debug/x': localOnly(secretish) }, pino({ level: 'silent' }));
  try {
    const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/debug/x`);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), 'the mesh layout\n');
  } finally {
    server.close();
  }
});
