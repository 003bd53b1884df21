// Moving bytes: TCP dials, the splice of two duplexes (backpressure, half-close, abort) and its byte counts.
import { type Http2Stream } from 'node:http2';
import { connect, Socket } from 'node:net';
import type { Duplex } from 'node:stream';

import type { Logger } from '../util/log.js';
import type { TcpConnectionMetrics } from './metrics.js';

/** Byte counters for the two directions of a spliced connection. */
export interface SpliceCounters {
  /** Bytes read from the downstream (client) side and written upstream. */
  upstreamBytes(bytes: number): void;
  /** Bytes read from the upstream (server) side and written downstream. */
  downstreamBytes(bytes: number): void;
}

const ignore = (): void => undefined;

/** node:http2 does not export its stream class; its streams are the duplexes with an RST code. */
function isHttp2Stream(stream: Duplex): stream is Duplex & Http2Stream {
  return 'rstCode' in stream && typeof (stream as Partial<Http2Stream>).close === 'function';
}

/**
 * Tears one side down abruptly so the peer sees a failure rather than a clean end:
 * RST for TCP, RST_STREAM for an HTTP/2 stream. The stream is destroyed rather than closed with a
 * code: `close(code)` first ends our side (an empty DATA frame with END_STREAM) and only then resets,
 * so the peer's stream emits 'end' and the far side would see a clean FIN where the connection was
 * cut (a policy revoked, an upstream reset). A TCP socket whose end of data was already
 * sent is destroyed instead: libuv refuses to reset a socket it has shut down (EINVAL), and Node
 * then never closes the handle (the socket and the splice leaked).
 */
export function abort(stream: Duplex): void {
  if (stream.destroyed) return;
  try {
    if (isHttp2Stream(stream)) {
      stream.on('error', ignore);
      stream.destroy(new Error('connection aborted'));
    } else if (stream instanceof Socket && !stream.connecting && !stream.writableEnded) {
      stream.resetAndDestroy();
    } else {
      stream.destroy();
    }
  } catch {
    stream.destroy();
  }
}

/**
 * How much a splice lets queue in front of a side that does not keep up before it stops reading
 * the other side. Above an HTTP/2 stream's 16 KiB high-water mark on purpose: pausing at every
 * 64 KiB socket read costs a read-stop/read-start and an event-loop turn per read, and caps one
 * tunnel at one read per write completion.
 */
export const SPLICE_BUFFER_BYTES = 256 * 1024;

/**
 * Copies `from` into `to` with backpressure and propagates the end of data as a half-close.
 *
 * Data out of an HTTP/2 stream arrives in pieces of at most a TLS record, often split further where
 * frames and records do not line up (16 KiB records, 16 KiB + 9 byte frames): written one by one,
 * that was five write(2)s per 64 KiB, half of them a few bytes long. The first piece of a turn of
 * the event loop is written at once (a request or an answer goes out without delay); further pieces
 * of the same turn are gathered (cork) and go out together in the check phase, as one writev(2).
 */
function forward(from: Duplex, to: Duplex, count: (bytes: number) => void): void {
  const gather = isHttp2Stream(from);
  // 0: nothing written this turn of the event loop; 1: one chunk written; 2: corked until the check phase.
  let turn = 0;
  let paused = false;
  const endTurn = () => {
    if (turn === 2) to.uncork();
    turn = 0;
  };
  from.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (gather) {
      if (turn === 0) {
        turn = 1;
        setImmediate(endTurn);
      } else if (turn === 1) {
        turn = 2;
        to.cork();
      }
    }
    if (!to.write(chunk) && !paused && to.writableLength >= SPLICE_BUFFER_BYTES) {
      paused = true;
      from.pause();
    }
  });
  to.on('drain', () => {
    if (!paused) return;
    paused = false;
    from.resume();
  });
  // The end of data may have come before the splice did (a client that connects and half-closes
  // at once, while the tunnel is still being set up): 'end' has fired already.
  if (from.readableEnded) to.end();
  else from.on('end', () => to.end());
}

/** True when a stream finished both directions normally (as opposed to being reset or destroyed early). */
function endedCleanly(stream: Duplex): boolean {
  return stream.readableEnded && stream.writableFinished;
}

/** Splices of this process: started ever, and open now (for the idle memory release). */
export const spliceActivity = { started: 0, open: 0 };

/**
 * Joins two duplex streams until both directions are done. Each end of data is passed on as a
 * half-close; an error or an abrupt close on one side aborts the other. Resolves (never rejects)
 * once both sides are closed, with the first error seen.
 */
export function splice(downstream: Duplex, upstream: Duplex, counters: SpliceCounters): Promise<Error | undefined> {
  spliceActivity.started++;
  spliceActivity.open++;
  return new Promise((resolve) => {
    let firstError: Error | undefined;
    let open = 2;
    const watch = (side: Duplex, other: Duplex) => {
      side.on('error', (error: Error) => {
        firstError ??= error;
        abort(other);
      });
      let done = false;
      const closed = () => {
        if (done) return;
        done = true;
        if (!endedCleanly(side)) abort(other);
        if (--open === 0) {
          spliceActivity.open--;
          resolve(firstError);
        }
      };
      side.on('close', closed);
      if (side.destroyed) closed();
    };
    watch(downstream, upstream);
    watch(upstream, downstream);
    forward(downstream, upstream, counters.upstreamBytes);
    forward(upstream, downstream, counters.downstreamBytes);
  });
}

/** Splices two sides and reports their bytes and close to `tracked`; errors are logged at debug. */
export function spliceCounted(downstream: Duplex, upstream: Duplex, tracked: TcpConnectionMetrics, log: Logger, fields: Record<string, unknown>): void {
  splice(downstream, upstream, {
    upstreamBytes: (bytes) => tracked.addReceived(bytes),
    downstreamBytes: (bytes) => tracked.addSent(bytes),
  }).then(
    (error) => {
      tracked.close();
      if (error) log.debug({ ...fields, err: error.message }, 'proxied connection ended with an error');
    },
    () => tracked.close(),
  );
}

export interface DialTarget {
  host: string;
  port: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Opens a TCP connection; rejects on error or when it is not established within the timeout. */
export function dialTcp(target: DialTarget, log: Logger, timeoutMs = DEFAULT_CONNECT_TIMEOUT_MS): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    const fail = (error: Error) => {
      socket.destroy();
      reject(error);
    };
    socket.setTimeout(timeoutMs, () => fail(new Error(`connect to ${target.host}:${target.port} timed out after ${timeoutMs} ms`)));
    socket.once('error', fail);
    socket.once('connect', () => {
      socket.setTimeout(0);
      socket.off('error', fail);
      // Errors after this point are handled by whoever splices the socket; this one only keeps
      // a late error from becoming an uncaught exception.
      socket.on('error', (error) => log.debug({ err: error.message, upstream: `${target.host}:${target.port}` }, 'upstream socket error'));
      resolve(socket);
    });
  });
}

/** `a.b.c.d:port` of the remote end of an accepted socket, for logs. */
export function peerOf(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}
