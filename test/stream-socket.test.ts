// StreamSocket as http's client and server use it: the idle timeout's listeners and timer.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';

import { StreamSocket } from '../src/l7/stream-socket.js';

test('setTimeout(0, callback) removes the listener http.ClientRequest added with it (one per request on a pooled connection)', () => {
  const socket = new StreamSocket(new PassThrough());
  const perRequest = () => undefined;
  for (let i = 0; i < 100; i++) {
    socket.setTimeout(60_000, perRequest);
    socket.setTimeout(0, perRequest);
  }
  assert.equal(socket.listenerCount('timeout'), 0);
  assert.equal(socket.timeout, 0);
  socket.destroy();
});

test('the idle timeout fires once per idle period, and not after destroy', async () => {
  const tunnel = new PassThrough();
  const socket = new StreamSocket(tunnel);
  socket.resume();
  let fired = 0;
  socket.setTimeout(20, () => fired++);
  assert.equal(socket.timeout, 20);
  for (let waited = 0; fired === 0 && waited < 5000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(fired, 1);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(fired, 1, 'no traffic, no second timeout');
  const other = new StreamSocket(new PassThrough());
  let late = 0;
  other.setTimeout(20, () => late++);
  other.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(late, 0);
  socket.destroy();
});
