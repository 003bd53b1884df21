import { constants as http2Constants, type Http2Stream } from 'node:http2';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** Byte counters for the two directions of a spliced connection. */
export interface SpliceCounters {
  /** Bytes read from the downstream (client) side and written upstream. */
  upstreamBytes(bytes: number): void;
  /** Bytes read from the upstream (server) side and written downstream. */
  downstreamBytes(bytes: number): void;
}

/** node:http2 does not export its stream class; its streams are the duplexes with an RST code. */
function isHttp2Stream(stream: Duplex): stream is Duplex & Http2Stream {
  return 'rstCode' in stream && typeof (stream as Partial<Http2Stream>).close === 'function';
}

/**
 * Tears one side down abruptly so the peer sees a failure rather than a clean end:
 * RST for TCP, RST_STREAM(CANCEL) for an HTTP/2 stream.
 */
export function abort(stream: Duplex): void {
  if (stream.destroyed) return;
  try {
    if (isHttp2Stream(stream)) {
      stream.close(http2Constants.NGHTTP2_CANCEL);
    } else if (stream instanceof Socket && !stream.connecting) {
      stream.resetAndDestroy();
    } else {
      stream.destroy();
    }
  } catch {
    stream.destroy();
  }
}

/** Copies `from` into `to` with backpressure and propagates the end of data as a half-close. */
function forward(from: Duplex, to: Duplex, count: (bytes: number) => void): void {
  from.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
}

/** True when a stream finished both directions normally (as opposed to being reset or destroyed early). */
function endedCleanly(stream: Duplex): boolean {
  return stream.readableEnded && stream.writableFinished;
}

/**
 * Joins two duplex streams until both directions are done. Each end of data is passed on as a
 * half-close; an error or an abrupt close on one side aborts the other. Resolves (never rejects)
 * once both sides are closed, with the first error seen.
 */
export function splice(downstream: Duplex, upstream: Duplex, counters: SpliceCounters): Promise<Error | undefined> {
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
        if (--open === 0) resolve(firstError);
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
