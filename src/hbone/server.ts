// The HBONE server: TLS 1.3 per local identity, peer-certificate checks, the HTTP/2 session and its limits; CONNECTs go to a handler.
import { constants as http2Constants, performServerHandshake, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';

import { parseSpiffeUri } from '../api/identity.js';
import { normalizeIp } from '../api/ip.js';
import type { Logger } from '../util/log.js';
import type { WorkloadCertificate } from '../ztunnel/identity/types.js';
import { handshakeFailureReason } from './client.js';
import { abort, peerOf, spliceCounted } from './io.js';
import type { HandshakeFailureReason, HboneMetrics, TcpConnectionMetrics } from './metrics.js';
import { spiffeIdentities } from './peer-identity.js';
import { RateLimitedLog } from './rate-limited-log.js';
import { CONNECTION_WINDOW_BYTES, HBONE_ALPN, HBONE_HTTP2_SETTINGS, HBONE_TLS_MIN_VERSION, MAX_SESSION_MEMORY_MIB, MAX_STREAMS_PER_SESSION } from './transport.js';

export const HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * A session with no frame at all for this long gets a graceful GOAWAY (its streams run on).
 * Clients release idle sessions after 5 minutes, so this only catches clients that do not.
 */
export const SESSION_IDLE_TIMEOUT_MS = 10 * 60_000;
/** How long a rejected stream may linger half-open after its error response. */
export const REJECTED_STREAM_LINGER_MS = 10_000;

/**
 * Per TCP peer address. A node's ztunnel opens one session per (source identity, destination
 * identities, destination) and an east-west gateway carries every inner session of another network
 * from one address, so the session limit is generous; handshakes in flight are short-lived.
 */
export interface HbonePeerLimits {
  maxHandshakesPerPeer: number;
  maxSessionsPerPeer: number;
}

export const DEFAULT_PEER_LIMITS: HbonePeerLimits = { maxHandshakesPerPeer: 128, maxSessionsPerPeer: 2048 };

/** OpenSSL errors that have a reason of their own, and a client hanging up mid-handshake. */
const HANDSHAKE_ERROR_REASONS: Readonly<Record<string, HandshakeFailureReason>> = {
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'missing_peer_certificate',
  // The client offered ALPN protocols, none of them h2.
  ERR_SSL_NO_APPLICATION_PROTOCOL: 'not_h2',
  ECONNRESET: 'peer_hung_up',
};

const HANDSHAKE_ERROR_MESSAGES: Partial<Record<HandshakeFailureReason, string>> = {
  missing_peer_certificate: 'untrusted peer certificate',
  not_h2: 'HBONE client did not negotiate h2',
  // The client does not trust our certificate (a CA mismatch seen from this side): said with an alert...
  certificate_rejected_by_peer: 'HBONE client rejected our certificate',
  // ...or, as Node clients do, by hanging up.
  peer_hung_up: 'HBONE client closed the connection during the TLS handshake (does it trust our certificate?)',
};

/** What the server knows of a connection whose client proved a mesh identity. */
export interface AuthenticatedConnection<Context> {
  /** `ip:port` of the TCP peer, for logs. */
  peer: string;
  /** The TCP peer's address (IPv4-mapped prefix removed). */
  peerIp: string;
  /** The one SPIFFE identity of the client certificate, which chains to the mesh roots. */
  peerIdentity: string;
  /** What the accepting side attached to the connection (its local or original destination, …). */
  context: Context;
}

export interface ConnectRequest<Context> {
  connection: AuthenticatedConnection<Context>;
  headers: IncomingHttpHeaders;
}

/**
 * A handler's answer. `reject` is sent as the status with `message` as body: the message goes to
 * the client, so it must not name internal addresses; `logFields` go to the server's log only.
 * `splice` answers 200 and joins the stream with `upstream`; `open` is called once the answer is
 * sent and returns the byte counters.
 */
export type ConnectReply =
  | {
      kind: 'reject';
      status: number;
      reason: string;
      message: string;
      logFields?: Record<string, unknown>;
      /**
       * The session itself is stale (it was accepted for a destination this proxy no longer
       * serves): after the answer it gets a GOAWAY, so the client's pool opens a new connection
       * instead of sending every later request down the same dead end.
       */
      closeSession?: boolean;
    }
  | {
      kind: 'splice';
      upstream: Duplex;
      open: () => TcpConnectionMetrics;
      /** Told how to cut the tunnel (RST_STREAM) once it is open; the returned function runs when it closes. */
      watch?: (abort: () => void) => () => void;
      logFields?: Record<string, unknown>;
    }
  /**
   * `serve` answers 200 and hands the tunnel's stream to the handler, which reads the client's
   * bytes itself (a waypoint parsing HTTP). It must end or destroy the stream when done.
   */
  | { kind: 'serve'; serve: (stream: Duplex) => void };

export type ConnectHandler<Context> = (request: ConnectRequest<Context>) => ConnectReply | Promise<ConnectReply>;

export interface HboneServerOptions<Context> {
  /** Names the server in log lines, e.g. `inbound HBONE`, `outer HBONE`. */
  name: string;
  log: Logger;
  metrics: Pick<HboneMetrics, 'hboneHandshakeFailed' | 'hboneSessionOpened' | 'hboneStreamRejected' | 'hbonePeerLimited'>;
  onConnect: ConnectHandler<Context>;
  /** Told of every accepted connection (after the certificate checks). */
  onAccepted?: (connection: AuthenticatedConnection<Context>, serial: string) => void;
  /** Log fields describing a connection's context (e.g. its destination), on every line about it. */
  describe?: (context: Context) => Record<string, unknown>;
  /** When set, clients must have an identity in this trust domain. */
  requiredTrustDomain?: string;
  limits?: Partial<HbonePeerLimits>;
}

interface PendingConnection<Context> {
  socket: Socket;
  peer: string;
  peerIp: string;
  context: Context;
}

interface IdentityTlsServer {
  server: TlsServer;
  certChainPem: string;
  rootsPem: string;
}

/** The four addresses of a TCP connection; identical on the raw socket and the TLS socket wrapping it. */
function connectionKey(socket: Socket): string {
  return `${socket.localAddress}|${socket.localPort}|${socket.remoteAddress}|${socket.remotePort}`;
}

function increment(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function decrement(counts: Map<string, number>, key: string): void {
  const left = (counts.get(key) ?? 0) - 1;
  if (left > 0) counts.set(key, left);
  else counts.delete(key);
}

/**
 * Answers a CONNECT stream with an error status and a plain-text reason, unless it already has an
 * answer or is gone.
 */
function respondRejected(stream: ServerHttp2Stream, status: number, message: string): void {
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

/**
 * One HBONE endpoint (ztunnel's inbound 15008, the east-west gateway, later waypoints): mTLS with
 * the local identity's certificate, HTTP/2, one CONNECT stream per proxied connection. What a
 * CONNECT means is the handler's business; the server authenticates, limits and moves bytes.
 *
 * TLS runs in a `tls.Server` per local identity (fed accepted sockets, never listening itself)
 * because only a server reports the client chain verification as `authorized`/`authorizationError`
 * (a bare server-side TLSSocket does not); the connection's facts travel from the raw socket to
 * the TLS socket by their shared address 4-tuple.
 */
export class HboneServer<Context> {
  private readonly tlsServers = new Map<string, IdentityTlsServer>();
  private readonly handshaking = new Map<string, PendingConnection<Context>>();
  private readonly handshakesPerPeer = new Map<string, number>();
  private readonly sessionsPerPeer = new Map<string, number>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly limits: HbonePeerLimits;
  private readonly refusals: RateLimitedLog;
  private closing = false;

  constructor(private readonly options: HboneServerOptions<Context>) {
    this.limits = { ...DEFAULT_PEER_LIMITS, ...options.limits };
    this.refusals = new RateLimitedLog(options.log);
  }

  /**
   * Runs the TLS handshake on an accepted TCP connection with `certificate` (verifying clients
   * against `rootsPem`), then serves its CONNECTs. Never throws.
   */
  accept(socket: Socket, certificate: WorkloadCertificate, rootsPem: string, context: Context): void {
    const peer = peerOf(socket);
    const peerIp = normalizeIp(socket.remoteAddress ?? '');
    if (socket.destroyed || this.closing) {
      socket.destroy();
      return;
    }
    if ((this.handshakesPerPeer.get(peerIp) ?? 0) >= this.limits.maxHandshakesPerPeer) {
      this.refuseOverLimit(socket, peer, 'handshakes', this.limits.maxHandshakesPerPeer);
      return;
    }
    let server: TlsServer;
    try {
      server = this.tlsServerFor(certificate, rootsPem);
    } catch (error) {
      this.options.log.error({ peer, identity: certificate.identity, err: String(error) }, `cannot use the certificate for ${certificate.identity}; closing ${this.options.name} connection`);
      this.options.metrics.hboneHandshakeFailed('inbound', 'no_certificate');
      socket.destroy();
      return;
    }
    const key = connectionKey(socket);
    const pending: PendingConnection<Context> = { socket, peer, peerIp, context };
    this.handshaking.set(key, pending);
    increment(this.handshakesPerPeer, peerIp);
    // The raw socket closes with the TLS socket wrapping it, even when a failed handshake leaves
    // the TLS socket without addresses to look the entry up by.
    socket.once('close', () => {
      if (this.handshaking.get(key) === pending) this.finishHandshake(key, pending);
    });
    server.emit('connection', socket);
  }

  /** Stops taking new streams: GOAWAY on every session; open streams run to their end. */
  close(): void {
    this.closing = true;
    for (const session of this.sessions) {
      if (!session.closed && !session.destroyed) session.close();
    }
  }

  /** Tears down everything still open. */
  destroy(): void {
    this.closing = true;
    for (const connection of this.handshaking.values()) connection.socket.destroy();
    this.handshaking.clear();
    this.handshakesPerPeer.clear();
    for (const session of this.sessions) session.destroy();
  }

  get openSessions(): number {
    return this.sessions.size;
  }

  /** Local identities with a TLS server (one per identity served since the last prune). */
  get identities(): string[] {
    return [...this.tlsServers.keys()];
  }

  /** Forgets the TLS servers of identities not in `identities`; established connections keep theirs. */
  retainIdentities(identities: ReadonlySet<string>): void {
    for (const identity of this.tlsServers.keys()) if (!identities.has(identity)) this.tlsServers.delete(identity);
  }

  private tlsServerFor(certificate: WorkloadCertificate, rootsPem: string): TlsServer {
    const contextOptions = { cert: certificate.certChainPem, key: certificate.keyPem, ca: rootsPem, minVersion: HBONE_TLS_MIN_VERSION } as const;
    const existing = this.tlsServers.get(certificate.identity);
    if (existing) {
      if (existing.certChainPem !== certificate.certChainPem || existing.rootsPem !== rootsPem) {
        // New handshakes use the renewed certificate; established connections keep theirs.
        existing.server.setSecureContext(contextOptions);
        existing.certChainPem = certificate.certChainPem;
        existing.rootsPem = rootsPem;
      }
      return existing.server;
    }
    const server = createTlsServer({
      ...contextOptions,
      requestCert: true,
      // Verified in onSecureConnection instead, so that a refusal can be logged with its reason.
      rejectUnauthorized: false,
      ALPNProtocols: HBONE_ALPN,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
    server.on('secureConnection', (tlsSocket: TLSSocket) => this.guard(tlsSocket, () => this.onSecureConnection(tlsSocket)));
    server.on('tlsClientError', (error: Error, tlsSocket: TLSSocket) => this.guard(tlsSocket, () => this.onHandshakeError(error, tlsSocket)));
    server.on('error', (error) => this.options.log.error({ err: error.message }, `${this.options.name} TLS server error`));
    this.tlsServers.set(certificate.identity, { server, certChainPem: certificate.certChainPem, rootsPem });
    return server;
  }

  /** Runs a handler; a throw closes the socket instead of reaching the process. */
  private guard(socket: { destroy(): void }, handler: () => void): void {
    try {
      handler();
    } catch (error) {
      this.options.log.error({ err: String(error) }, `${this.options.name} connection failed`);
      socket.destroy();
    }
  }

  private finishHandshake(key: string, pending: PendingConnection<Context>): void {
    this.handshaking.delete(key);
    decrement(this.handshakesPerPeer, pending.peerIp);
  }

  private takeHandshaking(tlsSocket: TLSSocket): PendingConnection<Context> | undefined {
    const key = connectionKey(tlsSocket);
    const pending = this.handshaking.get(key);
    if (pending) this.finishHandshake(key, pending);
    return pending;
  }

  private refuseOverLimit(socket: { destroy(): void }, peer: string, limit: 'handshakes' | 'sessions', max: number): void {
    this.options.metrics.hbonePeerLimited(limit);
    this.refusals.warn(`limit:${limit}`, { peer, limit, max }, `${this.options.name} peer over its ${limit} limit; closing`);
    socket.destroy();
  }

  private onHandshakeError(error: Error & { code?: string }, tlsSocket: TLSSocket): void {
    const pending = this.takeHandshaking(tlsSocket);
    const reason = HANDSHAKE_ERROR_REASONS[error.code ?? ''] ?? handshakeFailureReason(error);
    const message = HANDSHAKE_ERROR_MESSAGES[reason] ?? `${this.options.name} TLS handshake failed`;
    this.refusals.info(`handshake:${reason}`, { peer: pending?.peer, ...(pending && this.options.describe?.(pending.context)), reason, code: error.code, err: error.message.trim() }, message);
    this.options.metrics.hboneHandshakeFailed('inbound', reason);
    tlsSocket.destroy();
  }

  private refusePeer(tlsSocket: TLSSocket, pending: PendingConnection<Context>, reason: HandshakeFailureReason, detail: string): void {
    this.refusals.warn(`peer:${reason}`, { peer: pending.peer, ...this.options.describe?.(pending.context), reason: detail }, reason === 'not_h2' ? 'HBONE client did not negotiate h2' : 'untrusted peer certificate');
    this.options.metrics.hboneHandshakeFailed('inbound', reason);
    tlsSocket.destroy();
  }

  private onSecureConnection(tlsSocket: TLSSocket): void {
    tlsSocket.on('error', (error) => this.options.log.debug({ err: error.message }, `${this.options.name} TLS socket error`));
    const pending = this.takeHandshaking(tlsSocket);
    if (!pending || this.closing) {
      tlsSocket.destroy();
      return;
    }
    const certificate = tlsSocket.getPeerCertificate();
    if (!certificate || Object.keys(certificate).length === 0) {
      this.refusePeer(tlsSocket, pending, 'missing_peer_certificate', 'client presented no certificate');
      return;
    }
    if (!tlsSocket.authorized) {
      this.refusePeer(tlsSocket, pending, 'untrusted_peer_certificate', `certificate does not chain to the mesh roots (${String(tlsSocket.authorizationError)})`);
      return;
    }
    const identities = spiffeIdentities(certificate.subjectaltname);
    const peerIdentity = identities[0];
    if (identities.length !== 1 || peerIdentity === undefined) {
      const detail = identities.length === 0 ? 'certificate carries no SPIFFE URI SAN' : `certificate carries several SPIFFE identities: ${identities.join(', ')}`;
      this.refusePeer(tlsSocket, pending, 'untrusted_peer_certificate', detail);
      return;
    }
    const required = this.options.requiredTrustDomain;
    if (required !== undefined && parseSpiffeUri(peerIdentity).trustDomain !== required) {
      this.refusePeer(tlsSocket, pending, 'untrusted_peer_certificate', `${peerIdentity} is not in trust domain ${required}`);
      return;
    }
    if (tlsSocket.alpnProtocol !== 'h2') {
      this.refusePeer(tlsSocket, pending, 'not_h2', `ALPN protocol is ${JSON.stringify(tlsSocket.alpnProtocol)}, want "h2"`);
      return;
    }
    if ((this.sessionsPerPeer.get(pending.peerIp) ?? 0) >= this.limits.maxSessionsPerPeer) {
      // Only the TLS socket: destroying the TCP socket under it from its own callback crashes Node.
      this.refuseOverLimit(tlsSocket, pending.peer, 'sessions', this.limits.maxSessionsPerPeer);
      return;
    }
    const connection: AuthenticatedConnection<Context> = { peer: pending.peer, peerIp: pending.peerIp, peerIdentity, context: pending.context };
    this.options.onAccepted?.(connection, certificate.serialNumber);
    this.startSession(tlsSocket, connection);
  }

  private startSession(tlsSocket: TLSSocket, connection: AuthenticatedConnection<Context>): void {
    const { log, metrics, name } = this.options;
    let session: ServerHttp2Session;
    try {
      session = performServerHandshake(tlsSocket, {
        settings: { ...HBONE_HTTP2_SETTINGS, maxConcurrentStreams: MAX_STREAMS_PER_SESSION },
        maxSessionMemory: MAX_SESSION_MEMORY_MIB,
      });
    } catch (error) {
      log.warn({ peer: connection.peer, err: String(error) }, `could not start the ${name} HTTP/2 session`);
      tlsSocket.destroy();
      return;
    }
    this.sessions.add(session);
    increment(this.sessionsPerPeer, connection.peerIp);
    metrics.hboneSessionOpened('inbound');
    session.on('error', (error) => log.debug({ peer: connection.peer, err: error.message }, `${name} session error`));
    session.once('close', () => {
      this.sessions.delete(session);
      decrement(this.sessionsPerPeer, connection.peerIp);
    });
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      stream.on('error', (error) => log.debug({ peer: connection.peer, err: error.message }, `${name} stream error`));
      this.guard(stream, () => this.onStream(connection, stream, headers));
    });
    session.setTimeout(SESSION_IDLE_TIMEOUT_MS, () => {
      if (!session.closed) session.close();
    });
    try {
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    } catch (error) {
      log.debug({ err: String(error) }, 'could not enlarge the HBONE connection window');
    }
  }

  private onStream(connection: AuthenticatedConnection<Context>, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const method = headers[':method'];
    if (method !== 'CONNECT') {
      this.reject(connection, stream, { kind: 'reject', status: 400, reason: 'method_not_connect', message: `HBONE accepts only CONNECT requests, got ${method === undefined ? 'no method' : JSON.stringify(method.slice(0, 32))}` });
      return;
    }
    let reply: ConnectReply | Promise<ConnectReply>;
    try {
      reply = this.options.onConnect({ connection, headers });
    } catch (error) {
      reply = this.handlerFailed(connection, error);
    }
    Promise.resolve(reply).then(
      (answer) => this.answer(connection, stream, answer),
      (error: unknown) => this.answer(connection, stream, this.handlerFailed(connection, error)),
    );
  }

  private handlerFailed(connection: AuthenticatedConnection<Context>, error: unknown): ConnectReply {
    this.options.log.error({ peer: connection.peer, err: String(error) }, `${this.options.name} CONNECT handler failed`);
    return { kind: 'reject', status: 503, reason: 'internal_error', message: 'the proxy could not handle this CONNECT' };
  }

  private answer(connection: AuthenticatedConnection<Context>, stream: ServerHttp2Stream, reply: ConnectReply): void {
    if (reply.kind === 'reject') {
      this.reject(connection, stream, reply);
      return;
    }
    if (reply.kind === 'serve') {
      if (stream.destroyed || stream.closed) return;
      stream.respond({ ':status': 200 });
      try {
        reply.serve(stream);
      } catch (error) {
        this.options.log.error({ peer: connection.peer, err: String(error) }, `${this.options.name} stream handler failed`);
        abort(stream);
      }
      return;
    }
    if (stream.destroyed || stream.closed) {
      reply.upstream.destroy();
      return;
    }
    stream.respond({ ':status': 200 });
    if (reply.watch) stream.once('close', reply.watch(() => abort(stream)));
    spliceCounted(stream, reply.upstream, reply.open(), this.options.log, { peer: connection.peer, ...reply.logFields });
  }

  private reject(connection: AuthenticatedConnection<Context>, stream: ServerHttp2Stream, reply: Extract<ConnectReply, { kind: 'reject' }>): void {
    this.refusals.info(`stream:${reply.status}:${reply.reason}`, { peer: connection.peer, peerIdentity: connection.peerIdentity, status: reply.status, reason: reply.message, ...reply.logFields }, 'HBONE CONNECT rejected');
    this.options.metrics.hboneStreamRejected('inbound', reply.status, reply.reason);
    respondRejected(stream, reply.status, reply.message);
    if (reply.closeSession && !stream.session?.closed && !stream.session?.destroyed) stream.session?.goaway(http2Constants.NGHTTP2_NO_ERROR);
  }
}
