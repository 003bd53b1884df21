import { performServerHandshake, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';

import type { Service, Workload } from '../../gen/istio/workload/workload_pb.js';
import type { WorkloadCertificate } from '../identity/types.js';
import { networkClusterLabel, peerFactsOf, type HandshakeFailureReason, type PeerFacts, type TcpConnectionDescription } from '../metrics.js';
import type { ServiceTarget } from '../state/types.js';
import { capturedDestination, localEnrolledWorkload, remoteIp, workloadIdentity, type ProxyContext } from './context.js';
import { handshakeFailureReason } from './hbone-connect.js';
import { parseBaggage, parseForwardedFor, parseHboneTarget, X_FORWARDED_NETWORK } from './hbone-headers.js';
import { HANDSHAKE_ERROR_REASONS as TLS_ERROR_REASONS, HANDSHAKE_TIMEOUT_MS, labelSafe, respondRejected, SESSION_IDLE_TIMEOUT_MS, singleHeader } from './hbone-stream.js';
import type { SocketAddress } from './original-dst.js';
import { spiffeIdentities } from './peer-identity.js';
import { authorizeSafely, currentDestination, OpenInboundConnections } from './policy-watch.js';
import { abort, splice } from './splice.js';
import { dialTcp, peerOf } from './tcp.js';
import {
  CONNECTION_WINDOW_BYTES,
  HBONE_ALPN,
  HBONE_HTTP2_SETTINGS,
  HBONE_TLS_MIN_VERSION,
  MAX_SESSION_MEMORY_MIB,
  MAX_STREAMS_PER_SESSION,
} from './transport.js';

/** On top of the shared OpenSSL reasons: a client hanging up mid-handshake. */
const HANDSHAKE_ERROR_REASONS: Record<string, HandshakeFailureReason> = {
  ...TLS_ERROR_REASONS,
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

/** What is known about an inbound connection before its TLS handshake. */
interface InboundConnection {
  socket: Socket;
  peer: string;
  peerIp: string;
  original: SocketAddress;
  /** The identity the destination had at accept time: the certificate this connection presents. */
  destinationIdentity: string;
}

/** An inbound connection whose client proved a mesh identity. */
interface AcceptedConnection extends InboundConnection {
  peerIdentity: string;
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


/**
 * The inbound side of HBONE (port 15008): mTLS with the destination workload's certificate,
 * HTTP/2, one CONNECT stream per proxied connection.
 *
 * TLS runs in a `tls.Server` per local identity (fed accepted sockets, never listening itself)
 * because only a server reports the client chain verification as `authorized`/`authorizationError`
 * (a bare server-side TLSSocket does not); the connection's facts travel from the raw socket to
 * the TLS socket by their shared address 4-tuple.
 */
export class HboneServer {
  private readonly tlsServers = new Map<string, IdentityTlsServer>();
  private readonly handshaking = new Map<string, InboundConnection>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private closing = false;

  constructor(
    private readonly context: ProxyContext,
    private readonly openConnections: OpenInboundConnections = new OpenInboundConnections(context.state, context.log, context.metrics),
  ) {}

  /** Takes an accepted TCP connection of the HBONE listener. Never throws. */
  accept(socket: Socket): void {
    this.acceptConnection(socket).catch((error: unknown) => {
      this.context.log.error({ err: String(error), peer: peerOf(socket) }, 'inbound HBONE connection failed');
      socket.destroy();
    });
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
    for (const session of this.sessions) session.destroy();
  }

  get openSessions(): number {
    return this.sessions.size;
  }

  private async acceptConnection(socket: Socket): Promise<void> {
    const { log, metrics, state } = this.context;
    const peer = peerOf(socket);
    socket.on('error', (error) => log.debug({ err: error.message, peer }, 'inbound HBONE socket error'));
    const original = capturedDestination(this.context, socket);
    if (!original) {
      log.warn({ peer }, 'inbound HBONE connection has no original destination; closing');
      metrics.connectionRefused('inbound', 'no_original_destination');
      socket.destroy();
      return;
    }
    const destination = localEnrolledWorkload(state, original.ip);
    if (!destination) {
      log.warn({ peer, destination: original.ip }, 'inbound HBONE connection to an address that is not a local mesh workload; closing');
      metrics.connectionRefused('inbound', 'unknown_destination_workload');
      socket.destroy();
      return;
    }
    const destinationIdentity = workloadIdentity(destination);
    let certificate: WorkloadCertificate;
    try {
      certificate = await this.context.certificates.certificateFor(destinationIdentity);
    } catch (error) {
      log.error({ peer, identity: destinationIdentity, err: error instanceof Error ? error.message : String(error) }, 'no certificate for the destination workload; closing inbound HBONE connection');
      metrics.hboneHandshakeFailed('inbound', 'no_certificate');
      socket.destroy();
      return;
    }
    if (socket.destroyed || this.closing) {
      socket.destroy();
      return;
    }
    const key = connectionKey(socket);
    const connection: InboundConnection = { socket, peer, peerIp: remoteIp(socket), original, destinationIdentity };
    this.handshaking.set(key, connection);
    // The raw socket closes with the TLS socket wrapping it, even when a failed handshake leaves
    // the TLS socket without addresses to look the entry up by.
    socket.once('close', () => {
      if (this.handshaking.get(key) === connection) this.handshaking.delete(key);
    });
    this.tlsServerFor(certificate).emit('connection', socket);
  }

  private tlsServerFor(certificate: WorkloadCertificate): TlsServer {
    const rootsPem = this.context.certificates.roots();
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
    server.on('secureConnection', (tlsSocket: TLSSocket) => this.onSecureConnection(tlsSocket));
    server.on('tlsClientError', (error: Error, tlsSocket: TLSSocket) => this.onHandshakeError(error, tlsSocket));
    server.on('error', (error) => this.context.log.error({ err: error.message }, 'inbound TLS server error'));
    this.tlsServers.set(certificate.identity, { server, certChainPem: certificate.certChainPem, rootsPem });
    return server;
  }

  private takeHandshaking(tlsSocket: TLSSocket): InboundConnection | undefined {
    const key = connectionKey(tlsSocket);
    const connection = this.handshaking.get(key);
    this.handshaking.delete(key);
    return connection;
  }

  private onHandshakeError(error: Error & { code?: string }, tlsSocket: TLSSocket): void {
    const connection = this.takeHandshaking(tlsSocket);
    const reason = HANDSHAKE_ERROR_REASONS[error.code ?? ''] ?? handshakeFailureReason(error);
    this.context.log.info({ peer: connection?.peer, reason, code: error.code, err: error.message.trim() }, HANDSHAKE_ERROR_MESSAGES[reason] ?? 'inbound HBONE TLS handshake failed');
    this.context.metrics.hboneHandshakeFailed('inbound', reason);
    tlsSocket.destroy();
  }

  private refusePeer(tlsSocket: TLSSocket, connection: InboundConnection, reason: HandshakeFailureReason, detail: string): void {
    this.context.log.warn({ peer: connection.peer, destination: connection.original.ip, reason: detail }, reason === 'not_h2' ? 'HBONE client did not negotiate h2' : 'untrusted peer certificate');
    this.context.metrics.hboneHandshakeFailed('inbound', reason);
    tlsSocket.destroy();
  }

  private onSecureConnection(tlsSocket: TLSSocket): void {
    tlsSocket.on('error', (error) => this.context.log.debug({ err: error.message }, 'inbound HBONE TLS socket error'));
    const connection = this.takeHandshaking(tlsSocket);
    if (!connection || this.closing) {
      tlsSocket.destroy();
      return;
    }
    const certificate = tlsSocket.getPeerCertificate();
    if (!certificate || Object.keys(certificate).length === 0) {
      this.refusePeer(tlsSocket, connection, 'missing_peer_certificate', 'client presented no certificate');
      return;
    }
    if (!tlsSocket.authorized) {
      this.refusePeer(tlsSocket, connection, 'untrusted_peer_certificate', `certificate does not chain to the mesh roots (${String(tlsSocket.authorizationError)})`);
      return;
    }
    const identities = spiffeIdentities(certificate.subjectaltname);
    if (identities.length !== 1 || identities[0] === undefined) {
      const detail = identities.length === 0 ? 'certificate carries no SPIFFE URI SAN' : `certificate carries several SPIFFE identities: ${identities.join(', ')}`;
      this.refusePeer(tlsSocket, connection, 'untrusted_peer_certificate', detail);
      return;
    }
    if (tlsSocket.alpnProtocol !== 'h2') {
      this.refusePeer(tlsSocket, connection, 'not_h2', `ALPN protocol is ${JSON.stringify(tlsSocket.alpnProtocol)}, want "h2"`);
      return;
    }
    const accepted: AcceptedConnection = { ...connection, peerIdentity: identities[0] };
    this.context.log.debug(
      { peer: accepted.peer, peerIdentity: accepted.peerIdentity, serial: certificate.serialNumber, destination: accepted.original.ip },
      'inbound HBONE connection accepted',
    );
    this.startSession(tlsSocket, accepted);
  }

  private startSession(tlsSocket: TLSSocket, connection: AcceptedConnection): void {
    let session: ServerHttp2Session;
    try {
      session = performServerHandshake(tlsSocket, {
        settings: { ...HBONE_HTTP2_SETTINGS, maxConcurrentStreams: MAX_STREAMS_PER_SESSION },
        maxSessionMemory: MAX_SESSION_MEMORY_MIB,
      });
    } catch (error) {
      this.context.log.warn({ peer: connection.peer, err: String(error) }, 'could not start the HBONE HTTP/2 session');
      tlsSocket.destroy();
      return;
    }
    this.sessions.add(session);
    this.context.metrics.hboneSessionOpened('inbound');
    session.on('error', (error) => this.context.log.debug({ peer: connection.peer, err: error.message }, 'inbound HBONE session error'));
    session.on('close', () => this.sessions.delete(session));
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.onStream(connection, stream, headers));
    session.setTimeout(SESSION_IDLE_TIMEOUT_MS, () => {
      if (!session.closed) session.close();
    });
    try {
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    } catch (error) {
      this.context.log.debug({ err: String(error) }, 'could not enlarge the HBONE connection window');
    }
  }

  private onStream(connection: AcceptedConnection, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', (error) => this.context.log.debug({ peer: connection.peer, err: error.message }, 'inbound HBONE stream error'));
    try {
      this.handleConnect(connection, stream, headers);
    } catch (error) {
      this.context.log.error({ peer: connection.peer, err: String(error) }, 'inbound HBONE stream failed');
      stream.destroy();
    }
  }

  private handleConnect(connection: AcceptedConnection, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const { metrics, log } = this.context;
    const method = headers[':method'];
    if (method !== 'CONNECT') {
      this.rejectStream(connection, stream, 400, 'method_not_connect', `HBONE accepts only CONNECT requests, got ${method ?? 'no method'}`);
      return;
    }
    // Looked up per stream: the session may be minutes old, and policies name the workload as it is now.
    const destination = currentDestination(this.context.state, connection.original.ip, connection.destinationIdentity);
    if (!destination) {
      this.rejectStream(connection, stream, 503, 'destination_gone', 'the destination workload is no longer served here');
      return;
    }
    const target = parseHboneTarget(singleHeader(headers[':authority']));
    if (!target.ok) {
      this.rejectStream(connection, stream, 400, 'bad_authority', target.reason);
      return;
    }
    let port: number;
    let service: Service | undefined;
    if (target.kind === 'address') {
      if (target.ip !== connection.original.ip) {
        this.rejectStream(connection, stream, 400, 'authority_mismatch', `:authority ${target.ip} is not the address this connection was sent to (${connection.original.ip})`);
        return;
      }
      port = target.port;
    } else {
      const found = this.serviceTarget(destination, target.hostname, target.port);
      if (found.kind === 'refused') {
        this.rejectStream(connection, stream, 400, 'unknown_service', `:authority ${target.hostname}:${target.port}: ${found.reason}`);
        return;
      }
      port = found.targetPort;
      service = found.service;
    }
    const sourceNetwork = labelSafe(singleHeader(headers[X_FORWARDED_NETWORK]));
    const sourceIp = parseForwardedFor(singleHeader(headers.forwarded)) ?? connection.peerIp;
    const description: TcpConnectionDescription = {
      reporter: 'destination',
      source: this.sourceFacts(sourceIp, connection.peerIdentity, singleHeader(headers.baggage), sourceNetwork),
      destination: peerFactsOf(destination, connection.destinationIdentity, this.context.clusterId),
      service,
      mutualTls: true,
    };
    if (sourceNetwork !== undefined) {
      log.info(
        {
          peer: connection.peer,
          peerIdentity: connection.peerIdentity,
          sourceNetwork,
          sourceCluster: description.source.cluster,
          sourceIp,
          authority: headers[':authority'],
          destination: `${connection.original.ip}:${port}`,
        },
        'inbound HBONE connection through an east-west gateway',
      );
    }
    const facts = { sourceIdentity: connection.peerIdentity, sourceIp, destinationIp: connection.original.ip, destinationPort: port };
    const decision = authorizeSafely(this.context.state, { ...facts, destination }, log);
    if (!decision.allowed) {
      metrics.recordRefusedTcpConnection({ ...description, responseFlags: 'DENY' });
      this.rejectStream(connection, stream, 401, 'policy_denied', `denied by authorization policy${decision.policy ? ` ${decision.policy}` : ''}: ${decision.reason}`);
      return;
    }
    dialTcp(this.context.dialAddress(connection.original.ip, port), log).then(
      (upstream) => {
        if (stream.destroyed || stream.closed) {
          upstream.destroy();
          return;
        }
        stream.respond({ ':status': 200 });
        const tracked = metrics.openTcpConnection(description);
        const untrack = this.openConnections.track({ listener: 'inbound', facts, destinationIdentity: connection.destinationIdentity, abort: () => abort(stream) });
        stream.once('close', untrack);
        splice(stream, upstream, {
          upstreamBytes: (bytes) => tracked.addReceived(bytes),
          downstreamBytes: (bytes) => tracked.addSent(bytes),
        }).then((error) => {
          tracked.close();
          if (error) log.debug({ peer: connection.peer, authority: headers[':authority'], err: error.message }, 'inbound HBONE connection ended with an error');
        }, () => undefined);
      },
      (error: Error) => {
        metrics.recordRefusedTcpConnection({ ...description, responseFlags: 'CONNECT' });
        this.rejectStream(connection, stream, 503, 'upstream_unreachable', `upstream ${connection.original.ip}:${port} unreachable: ${error.message}`);
      },
    );
  }

  private serviceTarget(destination: Workload, hostname: string, servicePort: number): ServiceTarget {
    try {
      return this.context.state.serviceTarget(destination, hostname, servicePort);
    } catch (error) {
      this.context.log.error({ err: String(error) }, 'looking up the service of a hostname authority failed');
      return { kind: 'refused', reason: `service lookup failed: ${String(error)}` };
    }
  }

  /**
   * Source labels: the mesh's record of the source address (on the client's network, from
   * `x-forwarded-network`) when it matches the peer's identity, else the baggage.
   */
  private sourceFacts(sourceIp: string, peerIdentity: string, baggage: string | undefined, sourceNetwork: string | undefined): PeerFacts {
    const known = this.context.state.workloadByIp(sourceIp, sourceNetwork);
    const fromBaggage = parseBaggage(baggage);
    const networkLabel = sourceNetwork && sourceNetwork !== this.context.state.network ? networkClusterLabel(sourceNetwork) : undefined;
    if (known && workloadIdentity(known) === peerIdentity) return peerFactsOf(known, peerIdentity, fromBaggage.cluster ?? networkLabel);
    return { ...fromBaggage, principal: peerIdentity, cluster: fromBaggage.cluster || networkLabel };
  }

  private rejectStream(connection: AcceptedConnection, stream: ServerHttp2Stream, status: number, reason: string, message: string): void {
    this.context.log.info({ peer: connection.peer, peerIdentity: connection.peerIdentity, status, reason: message }, 'HBONE CONNECT rejected');
    this.context.metrics.hboneStreamRejected('inbound', status, reason);
    respondRejected(stream, status, message);
  }
}
