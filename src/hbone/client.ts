// The client side of one HBONE connection: TLS 1.3 with SAN check, ALPN h2, the HTTP/2 session, and the CONNECT answer.
import { connect as http2Connect, constants as http2Constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type SecureContext, type TLSSocket } from 'node:tls';

import type { Logger } from '../util/log.js';
import type { HandshakeFailureReason, HboneMetrics, HboneTunnel } from './metrics.js';
import { expectIdentities, UnexpectedPeerIdentityError } from './peer-identity.js';
import { CONNECTION_WINDOW_BYTES, HBONE_ALPN, HBONE_HTTP2_SETTINGS, HBONE_TLS_MIN_VERSION, MAX_SESSION_MEMORY_MIB } from './transport.js';

/** A CONNECT that did not yield a tunnel; `status` is the server's answer when there was one. */
export class HboneConnectError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    /** The server never processed the request (refused stream, closing session). */
    readonly retryable = false,
  ) {
    super(message);
  }
}

const UNTRUSTED_CERTIFICATE_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'INVALID_CA',
]);

/** TLS alerts by which the peer says it does not accept our certificate. */
const CERTIFICATE_REJECTED_ALERTS = new Set([
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
]);

/** Why a TLS handshake failed, from its error code. */
export function handshakeFailureReason(error: Error & { code?: string }): HandshakeFailureReason {
  if (error instanceof UnexpectedPeerIdentityError) return 'unexpected_peer_identity';
  if (error.code !== undefined && UNTRUSTED_CERTIFICATE_CODES.has(error.code)) return 'untrusted_peer_certificate';
  if (error.code !== undefined && CERTIFICATE_REJECTED_ALERTS.has(error.code)) return 'certificate_rejected_by_peer';
  return 'tls_error';
}

/** The client's log message for a handshake failure; CA mismatches are debugged by grepping `untrusted peer certificate`. */
function handshakeFailureMessage(reason: HandshakeFailureReason): string {
  switch (reason) {
    case 'untrusted_peer_certificate':
    case 'missing_peer_certificate':
      return 'untrusted peer certificate';
    case 'certificate_rejected_by_peer':
      return 'HBONE server rejected our certificate';
    case 'unexpected_peer_identity':
      return 'HBONE server presented an unexpected identity';
    case 'not_h2':
      return 'HBONE server did not negotiate h2';
    default:
      return 'HBONE handshake failed';
  }
}

export interface HboneSessionDial {
  /** A TCP address to dial, or an established stream to run TLS over (the outer tunnel of double HBONE). */
  transport: { host: string; port: number } | { stream: Duplex };
  secureContext: SecureContext;
  /** The server must present one of these SPIFFE identities. */
  expectedIdentities: readonly string[];
  /** Names the server in logs and errors. */
  peer: string;
  tunnel: HboneTunnel;
  connectTimeoutMs: number;
  log: Logger;
  metrics: HboneMetrics;
}

export interface DialedSession {
  session: ClientHttp2Session;
  /** Resolves once TLS and the HTTP/2 preface are done; rejects with an HboneConnectError. */
  ready: Promise<void>;
}

/**
 * Client side of an HBONE connection: TLS 1.3 with the source identity's certificate (no SNI, ALPN h2,
 * the server's SPIFFE identity checked against the expected ones), then an HTTP/2 session. Handshake
 * failures are logged and counted with their reason and TLS layer.
 */
export function dialHboneSession(dial: HboneSessionDial): DialedSession {
  const { log, metrics, peer, tunnel } = dial;
  const overStream = 'stream' in dial.transport;
  const tlsSocket: TLSSocket = tlsConnect({
    ...('stream' in dial.transport ? { socket: dial.transport.stream } : { host: dial.transport.host, port: dial.transport.port }),
    secureContext: dial.secureContext,
    ALPNProtocols: HBONE_ALPN,
    minVersion: HBONE_TLS_MIN_VERSION,
    // HBONE sends no SNI; an empty servername keeps Node from setting one.
    servername: '',
    checkServerIdentity: expectIdentities(dial.expectedIdentities),
  });
  if (!overStream) tlsSocket.setNoDelay(true);
  // Over an established stream every failure is a handshake failure; over TCP only after connect.
  let transportUp = overStream;
  let established = false;
  tlsSocket.once('connect', () => {
    transportUp = true;
  });
  tlsSocket.once('secureConnect', () => {
    if (tlsSocket.alpnProtocol !== 'h2') tlsSocket.destroy(new Error(`HBONE server ${peer} negotiated ALPN ${JSON.stringify(tlsSocket.alpnProtocol)}, want "h2"`));
  });
  const session = http2Connect('https://hbone.invalid', {
    createConnection: () => tlsSocket,
    settings: HBONE_HTTP2_SETTINGS,
    maxSessionMemory: MAX_SESSION_MEMORY_MIB,
  });
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => session.destroy(new Error(`HBONE connection to ${peer} not established within ${dial.connectTimeoutMs} ms`)), dial.connectTimeoutMs);
    session.once('connect', () => {
      clearTimeout(timer);
      established = true;
      try {
        session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
      } catch (error) {
        log.debug({ err: errorText(error) }, 'could not enlarge the HBONE connection window');
      }
      resolve();
    });
    session.once('close', () => {
      clearTimeout(timer);
      reject(new HboneConnectError(`HBONE connection to ${peer} closed before it was established`));
    });
    session.on('error', (error: Error & { code?: string }) => {
      clearTimeout(timer);
      if (established) {
        log.debug({ peer, tunnel, err: error.message }, 'outbound HBONE session error');
        return;
      }
      if (transportUp) {
        const reason = handshakeFailureReason(error);
        metrics.hboneHandshakeFailed('outbound', reason, tunnel);
        log.warn({ peer, tunnel, expected: dial.expectedIdentities, reason, code: error.code, err: error.message }, handshakeFailureMessage(reason));
      } else {
        log.info({ peer, tunnel, code: error.code, err: error.message }, 'HBONE connect failed');
      }
      reject(new HboneConnectError(`HBONE ${tunnel === 'hbone' ? '' : `${tunnel} `}connection to ${peer} failed: ${error.message}`));
    });
  });
  ready.catch(() => undefined);
  return { session, ready };
}

/** Waits for the answer to a CONNECT: resolves on 200, rejects with the status (or the stream failure) otherwise. */
export function awaitConnectResponse(stream: ClientHttp2Stream, what: string, metrics: HboneMetrics): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (error?: HboneConnectError) => {
      stream.off('response', onResponse);
      stream.off('error', onError);
      stream.off('close', onClose);
      if (error) {
        metrics.hboneStreamRejected('outbound', error.status ?? 0, error.status ? 'status' : 'stream_failed');
        if (!stream.destroyed) stream.close(http2Constants.NGHTTP2_CANCEL);
        reject(error);
      } else {
        resolve();
      }
    };
    const onResponse = (headers: IncomingHttpHeaders) => {
      const status = Number(headers[':status']);
      if (status === 200) settle();
      else settle(new HboneConnectError(`HBONE CONNECT ${what} answered ${status}`, status));
    };
    const refused = () => stream.rstCode === http2Constants.NGHTTP2_REFUSED_STREAM;
    const onError = (error: Error) => settle(new HboneConnectError(`HBONE CONNECT ${what} failed: ${error.message}`, undefined, refused()));
    const onClose = () => settle(new HboneConnectError(`HBONE CONNECT ${what}: stream closed before a response (code ${stream.rstCode})`, undefined, refused()));
    stream.on('response', onResponse);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
