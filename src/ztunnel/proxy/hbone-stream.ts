import { constants as http2Constants, type ServerHttp2Stream } from 'node:http2';

import type { HandshakeFailureReason } from '../metrics.js';

/** Servers terminating HBONE (ztunnel inbound, the east-west gateway) share these limits. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * A session with no frame at all for this long gets a graceful GOAWAY (its streams run on).
 * Clients release idle sessions after 5 minutes, so this only catches clients that do not.
 */
export const SESSION_IDLE_TIMEOUT_MS = 10 * 60_000;
/** How long a rejected stream may linger half-open after its error response. */
export const REJECTED_STREAM_LINGER_MS = 10_000;

/** OpenSSL errors that have a reason of their own. */
export const HANDSHAKE_ERROR_REASONS: Readonly<Record<string, HandshakeFailureReason>> = {
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'missing_peer_certificate',
  // The client offered ALPN protocols, none of them h2.
  ERR_SSL_NO_APPLICATION_PROTOCOL: 'not_h2',
};

/** Header values that may become log fields or metric labels: short, label-safe names. */
const LABEL_SAFE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** The value when it is short, label-safe text (nothing a client could flood a metric registry with), else nothing. */
export function labelSafe(value: string | undefined): string | undefined {
  return value !== undefined && LABEL_SAFE.test(value) ? value : undefined;
}

/** The first value of a request header. */
export function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Answers a CONNECT stream with an error status and a plain-text reason, unless it already has an
 * answer or is gone.
 */
export function respondRejected(stream: ServerHttp2Stream, status: number, message: string): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  try {
    stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8' });
    stream.end(`${message}\n`);
    // A client that keeps its side open must not hold the stream slot forever.
    stream.setTimeout(REJECTED_STREAM_LINGER_MS, () => stream.close(http2Constants.NGHTTP2_CANCEL));
  } catch {
    stream.destroy();
  }
}
