import { connect as http2Connect, constants as http2Constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';

import type { Logger } from '../../util/log.js';
import type { CertificateSource, WorkloadCertificate } from '../identity/types.js';
import type { HandshakeFailureReason, ProxyMetrics } from '../metrics.js';
import { formatAuthority } from './hbone-headers.js';
import { expectIdentities, UnexpectedPeerIdentityError } from './peer-identity.js';
import type { DialTarget } from './tcp.js';
import {
  CONNECTION_WINDOW_BYTES,
  HBONE_ALPN,
  HBONE_HTTP2_SETTINGS,
  HBONE_TLS_MIN_VERSION,
  MAX_SESSION_MEMORY_MIB,
  MAX_STREAMS_PER_SESSION,
  SecureContextCache,
} from './transport.js';

export interface HboneConnectRequest {
  /** SPIFFE identity the client presents (the source workload's). */
  sourceIdentity: string;
  /** The server must present one of these SPIFFE identities. */
  expectedIdentities: string[];
  /** IP address to dial; the connection goes to its HBONE port. */
  destination: string;
  /** CONNECT target, `ip:port`. */
  authority: string;
  /** Extra request headers (baggage, forwarded, traceparent). */
  headers: Record<string, string>;
}

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

export interface HbonePoolOptions {
  certificates: CertificateSource;
  log: Logger;
  metrics: ProxyMetrics;
  /** Port dialled on the destination address. */
  hbonePort: number;
  dialAddress(ip: string, port: number): DialTarget;
  maxStreamsPerSession?: number;
  /** A session with no stream for this long is closed. Default 5 minutes. */
  idleTimeoutMs?: number;
  /** TCP + TLS + HTTP/2 setup must finish within this. Default 10 s. */
  connectTimeoutMs?: number;
}

const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

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

function handshakeFailureReason(error: Error & { code?: string }): HandshakeFailureReason {
  if (error instanceof UnexpectedPeerIdentityError) return 'unexpected_peer_identity';
  if (error.code !== undefined && UNTRUSTED_CERTIFICATE_CODES.has(error.code)) return 'untrusted_peer_certificate';
  return 'tls_error';
}

/** One HTTP/2 session to an HBONE server and the streams it carries. */
class PooledSession {
  /** Streams open or about to be opened on this session. */
  streams = 0;
  /** False once the session must take no new stream (GOAWAY, error, renewed certificate, pool closing). */
  usable = true;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly key: string,
    readonly certChainPem: string,
    readonly session: ClientHttp2Session,
    readonly ready: Promise<void>,
    private readonly maxStreams: number,
  ) {}

  hasRoom(): boolean {
    const peerLimit = this.session.remoteSettings?.maxConcurrentStreams ?? this.maxStreams;
    return this.usable && !this.session.closed && !this.session.destroyed && this.streams < Math.min(this.maxStreams, peerLimit);
  }

  reserve(): void {
    this.streams++;
    this.clearIdleTimer();
  }

  release(idleTimeoutMs: number): void {
    this.streams--;
    if (this.streams > 0) return;
    if (!this.usable || this.session.closed || this.session.destroyed) {
      this.retire();
      return;
    }
    this.clearIdleTimer();
    this.idleTimer = setTimeout(() => this.retire(), idleTimeoutMs);
    this.idleTimer.unref();
  }

  /** No new streams; close as soon as the current ones are done. */
  drain(): void {
    this.usable = false;
    if (this.streams === 0) this.retire();
  }

  retire(): void {
    this.usable = false;
    this.clearIdleTimer();
    if (!this.session.closed && !this.session.destroyed) this.session.close();
  }

  clearIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}

/**
 * Outbound HBONE: HTTP/2 sessions over mTLS pooled per (source identity, expected identities,
 * destination address), up to 100 streams each, closed after 5 idle minutes.
 */
export class HbonePool {
  private readonly pools = new Map<string, PooledSession[]>();
  private readonly contexts = new SecureContextCache();
  private readonly maxStreams: number;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private closed = false;

  constructor(private readonly options: HbonePoolOptions) {
    this.maxStreams = options.maxStreamsPerSession ?? MAX_STREAMS_PER_SESSION;
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  }

  /** Opens a CONNECT tunnel; resolves with the stream once the server answered 200. */
  async connect(request: HboneConnectRequest): Promise<ClientHttp2Stream> {
    try {
      return await this.attempt(request);
    } catch (error) {
      // A session can start closing (GOAWAY) between being picked and carrying the request; the
      // server did not process such a stream, so one more try on another session is safe.
      if (error instanceof HboneConnectError && error.retryable) return this.attempt(request);
      throw error;
    }
  }

  private async attempt(request: HboneConnectRequest): Promise<ClientHttp2Stream> {
    if (this.closed) throw new HboneConnectError('HBONE pool is closed');
    const certificate = await this.options.certificates.certificateFor(request.sourceIdentity);
    if (this.closed) throw new HboneConnectError('HBONE pool is closed');
    const pooled = this.sessionFor(request, certificate);
    pooled.reserve();
    let stream: ClientHttp2Stream;
    try {
      await pooled.ready;
      stream = pooled.session.request({ ...request.headers, ':method': 'CONNECT', ':authority': request.authority }, { endStream: false });
    } catch (error) {
      pooled.release(this.idleTimeoutMs);
      if (error instanceof HboneConnectError) throw error;
      throw new HboneConnectError(`HBONE session to ${request.destination} could not take a stream: ${errorText(error)}`, undefined, true);
    }
    stream.once('close', () => pooled.release(this.idleTimeoutMs));
    stream.on('error', (error) => this.options.log.debug({ authority: request.authority, err: error.message }, 'outbound HBONE stream error'));
    await this.awaitResponse(stream, request);
    return stream;
  }

  /** Live sessions (all keys). */
  sessionCount(): number {
    let count = 0;
    for (const sessions of this.pools.values()) count += sessions.length;
    return count;
  }

  /** Stops taking streams and closes each session once its streams are done. */
  close(): void {
    this.closed = true;
    for (const sessions of this.pools.values()) for (const pooled of sessions) pooled.drain();
  }

  /** Closes every session now. */
  destroy(): void {
    this.closed = true;
    for (const sessions of [...this.pools.values()]) for (const pooled of sessions) pooled.session.destroy();
  }

  private sessionFor(request: HboneConnectRequest, certificate: WorkloadCertificate): PooledSession {
    const key = `${request.sourceIdentity}\n${[...request.expectedIdentities].sort().join(',')}\n${request.destination}`;
    const sessions = this.pools.get(key) ?? [];
    for (const pooled of sessions) {
      // A session made with a certificate that has since been renewed keeps its streams but gets no new ones.
      if (pooled.usable && pooled.certChainPem !== certificate.certChainPem) pooled.drain();
    }
    const available = sessions.find((pooled) => pooled.hasRoom());
    if (available) return available;
    const created = this.dial(key, request, certificate);
    sessions.push(created);
    this.pools.set(key, sessions);
    this.options.metrics.setPooledSessions(this.sessionCount());
    return created;
  }

  private forget(pooled: PooledSession): void {
    pooled.clearIdleTimer();
    const sessions = this.pools.get(pooled.key);
    if (!sessions) return;
    const remaining = sessions.filter((candidate) => candidate !== pooled);
    if (remaining.length) this.pools.set(pooled.key, remaining);
    else this.pools.delete(pooled.key);
    this.options.metrics.setPooledSessions(this.sessionCount());
  }

  private dial(key: string, request: HboneConnectRequest, certificate: WorkloadCertificate): PooledSession {
    const { log, metrics } = this.options;
    const target = this.options.dialAddress(request.destination, this.options.hbonePort);
    const destination = `${request.destination}:${this.options.hbonePort}`;
    const tlsSocket = tlsConnect({
      host: target.host,
      port: target.port,
      secureContext: this.contexts.get(certificate, this.options.certificates.roots()),
      ALPNProtocols: HBONE_ALPN,
      minVersion: HBONE_TLS_MIN_VERSION,
      // HBONE sends no SNI; an empty servername keeps Node from setting one.
      servername: '',
      checkServerIdentity: expectIdentities(request.expectedIdentities),
    });
    tlsSocket.setNoDelay(true);
    let tcpConnected = false;
    let established = false;
    tlsSocket.once('connect', () => {
      tcpConnected = true;
    });
    tlsSocket.once('secureConnect', () => {
      if (tlsSocket.alpnProtocol !== 'h2') {
        tlsSocket.destroy(new Error(`HBONE server ${destination} negotiated ALPN ${JSON.stringify(tlsSocket.alpnProtocol)}, want "h2"`));
      }
    });
    const session = http2Connect(`https://${formatAuthority(target.host, target.port)}`, {
      createConnection: () => tlsSocket,
      settings: HBONE_HTTP2_SETTINGS,
      maxSessionMemory: MAX_SESSION_MEMORY_MIB,
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => session.destroy(new Error(`HBONE connection to ${destination} not established within ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
      session.once('connect', () => {
        clearTimeout(timer);
        established = true;
        try {
          session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
        } catch (error) {
          log.debug({ err: errorText(error) }, 'could not enlarge the HBONE connection window');
        }
        metrics.hboneSessionOpened('outbound');
        resolve();
      });
      session.once('close', () => {
        clearTimeout(timer);
        reject(new HboneConnectError(`HBONE connection to ${destination} closed before it was established`));
      });
      session.on('error', (error: Error & { code?: string }) => {
        clearTimeout(timer);
        if (!established) {
          if (tcpConnected) {
            const reason = handshakeFailureReason(error);
            metrics.hboneHandshakeFailed('outbound', reason);
            log.warn(
              { destination, expected: request.expectedIdentities, reason, code: error.code, err: error.message },
              reason === 'unexpected_peer_identity' ? 'HBONE server presented an unexpected identity' : 'HBONE handshake failed',
            );
          } else {
            log.info({ destination, code: error.code, err: error.message }, 'HBONE connect failed');
          }
          reject(new HboneConnectError(`HBONE connection to ${destination} failed: ${error.message}`));
        } else {
          log.debug({ destination, err: error.message }, 'outbound HBONE session error');
        }
      });
    });
    ready.catch(() => undefined);
    const pooled = new PooledSession(key, certificate.certChainPem, session, ready, this.maxStreams);
    session.on('goaway', () => {
      pooled.usable = false;
    });
    session.once('close', () => {
      pooled.usable = false;
      this.forget(pooled);
    });
    return pooled;
  }

  private awaitResponse(stream: ClientHttp2Stream, request: HboneConnectRequest): Promise<void> {
    return new Promise((resolve, reject) => {
      const settle = (error?: HboneConnectError) => {
        stream.off('response', onResponse);
        stream.off('error', onError);
        stream.off('close', onClose);
        if (error) {
          this.options.metrics.hboneStreamRejected('outbound', error.status ?? 0, error.status ? 'status' : 'stream_failed');
          if (!stream.destroyed) stream.close(http2Constants.NGHTTP2_CANCEL);
          reject(error);
        } else {
          resolve();
        }
      };
      const onResponse = (headers: IncomingHttpHeaders) => {
        const status = Number(headers[':status']);
        if (status === 200) settle();
        else settle(new HboneConnectError(`HBONE CONNECT ${request.authority} via ${request.destination} answered ${status}`, status));
      };
      const refused = () => stream.rstCode === http2Constants.NGHTTP2_REFUSED_STREAM;
      const onError = (error: Error) =>
        settle(new HboneConnectError(`HBONE CONNECT ${request.authority} via ${request.destination} failed: ${error.message}`, undefined, refused()));
      const onClose = () =>
        settle(
          new HboneConnectError(
            `HBONE CONNECT ${request.authority} via ${request.destination}: stream closed before a response (code ${stream.rstCode})`,
            undefined,
            refused(),
          ),
        );
      stream.on('response', onResponse);
      stream.on('error', onError);
      stream.on('close', onClose);
    });
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
