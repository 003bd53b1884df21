import { performServerHandshake, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';

import { parseSpiffeUri } from '../api/identity.js';
import { HBONE_PORT } from '../api/resources.js';
import type { Logger } from '../util/log.js';
import type { WorkloadCertificate } from '../ztunnel/identity/types.js';
import { peerFactsOf, type HandshakeFailureReason, type PeerFacts, type TcpConnectionDescription } from '../ztunnel/metrics.js';
import { workloadIdentity } from '../ztunnel/proxy/context.js';
import { parseBaggage, parseEndpointSlot, X_ENDPOINT_SLOT, X_FORWARDED_NETWORK } from '../ztunnel/proxy/hbone-headers.js';
import { HANDSHAKE_ERROR_REASONS, HANDSHAKE_TIMEOUT_MS, labelSafe, respondRejected, SESSION_IDLE_TIMEOUT_MS, singleHeader } from '../ztunnel/proxy/hbone-stream.js';
import { IdleMemoryRelease } from '../ztunnel/proxy/memory.js';
import { spiffeIdentities } from '../ztunnel/proxy/peer-identity.js';
import { splice } from '../ztunnel/proxy/splice.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, dialTcp, peerOf, type DialTarget } from '../ztunnel/proxy/tcp.js';
import { CONNECTION_WINDOW_BYTES, HBONE_ALPN, HBONE_HTTP2_SETTINGS, HBONE_TLS_MIN_VERSION, MAX_SESSION_MEMORY_MIB, MAX_STREAMS_PER_SESSION } from '../ztunnel/proxy/transport.js';
import type { GatewayMetrics } from './metrics.js';
import { findServiceTarget, parseServiceAuthority, pickEndpoint, type GatewayStateView, type ServiceTarget } from './routing.js';

/** The gateway's own certificate, kept fresh by its source (CertificateManager in production). */
export interface GatewayCertificateSource {
  certificateFor(identity: string): Promise<WorkloadCertificate>;
  /** Called with every new certificate (issuance and renewals); returns an unsubscribe function. */
  onRenewed(listener: (certificate: WorkloadCertificate) => void): () => void;
}

export interface HboneGatewayOptions {
  /** The gateway's SPIFFE identity: the certificate it presents to outer clients. */
  identity: string;
  certificates: GatewayCertificateSource;
  state: GatewayStateView;
  metrics: GatewayMetrics;
  log: Logger;
  /** Port dialled on the chosen endpoint, captured there as HBONE (default 15008). */
  endpointPort?: number;
  /** Maps an endpoint address to the address actually dialled (tests map pod IPs to loopback). */
  dialAddress?: (ip: string, port: number) => DialTarget;
  /** When set, outer clients must have an identity in this trust domain. */
  requiredTrustDomain?: string;
  /** Randomness for capacity-weighted endpoint choice, in [0, 1). */
  random?: () => number;
  connectTimeoutMs?: number;
}

export interface HboneGatewayStopOptions {
  /** How long open streams may run to their end after GOAWAY before they are cut. Default 5 s. */
  drainTimeoutMs?: number;
}

const DEFAULT_DRAIN_TIMEOUT_MS = 5000;
const DRAIN_POLL_MS = 50;

/** An outer connection whose client proved a mesh identity. */
interface OuterConnection {
  peer: string;
  peerIdentity: string;
}

function labelValue(value: string | undefined): string {
  return labelSafe(value) ?? 'unknown';
}

/**
 * The east-west gateway's HBONE front end (port 15008): terminates the outer mTLS + HTTP/2 tunnel
 * from other networks with the gateway's own certificate, and forwards each CONNECT
 * `<service hostname>:<port>` as raw bytes to `<endpoint pod IP>:15008` on this network, where the
 * destination node captures it. The inner tunnel (client ztunnel ↔ destination ztunnel TLS) passes
 * through untouched.
 */
export class HboneGateway {
  private readonly server: TlsServer;
  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly endpointPort: number;
  private readonly dialAddress: (ip: string, port: number) => DialTarget;
  private readonly random: () => number;
  private certificate?: WorkloadCertificate;
  private unsubscribe?: () => void;
  /** Releases a start() still waiting for its first certificate when the gateway stops. */
  private abandonStart?: () => void;
  private draining = false;
  private readonly idleMemory: IdleMemoryRelease;

  constructor(private readonly options: HboneGatewayOptions) {
    parseSpiffeUri(options.identity);
    this.endpointPort = options.endpointPort ?? HBONE_PORT;
    this.dialAddress = options.dialAddress ?? ((ip, port) => ({ host: ip, port }));
    this.random = options.random ?? Math.random;
    this.idleMemory = new IdleMemoryRelease(options.log);
    this.server = createTlsServer({
      // No Nagle delay on small writes (a request or an answer in one TLS record), as on ztunnel's listeners.
      noDelay: true,
      requestCert: true,
      // Verified in onSecureConnection instead, so that a refusal is logged and counted with its reason.
      rejectUnauthorized: false,
      ALPNProtocols: HBONE_ALPN,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      minVersion: HBONE_TLS_MIN_VERSION,
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      socket.on('error', (error) => options.log.debug({ err: error.message, peer: peerOf(socket) }, 'outer HBONE socket error'));
    });
    this.server.on('secureConnection', (tlsSocket: TLSSocket) => this.guard('outer HBONE connection failed', tlsSocket, () => this.onSecureConnection(tlsSocket)));
    this.server.on('tlsClientError', (error: Error, tlsSocket: TLSSocket) => this.onHandshakeError(error, tlsSocket));
    this.server.on('error', (error) => options.log.error({ err: error.message }, 'HBONE listener error'));
  }

  /**
   * Obtains the gateway's certificate (waiting for the source's retries if the first request fails),
   * then listens. Renewed certificates are served to new connections; established ones keep theirs.
   */
  async start(port: number = HBONE_PORT, host = '0.0.0.0'): Promise<void> {
    if (this.unsubscribe) throw new Error('gateway already started');
    const { certificates, identity, log } = this.options;
    const first = new Promise<void>((resolve) => {
      this.abandonStart = resolve;
      this.unsubscribe = certificates.onRenewed((certificate) => {
        if (certificate.identity !== identity) return;
        this.install(certificate);
        resolve();
      });
      certificates.certificateFor(identity).then(
        (certificate) => {
          this.install(certificate);
          resolve();
        },
        (error: unknown) => log.warn({ identity, err: error instanceof Error ? error.message : String(error) }, 'no certificate for the gateway yet; waiting for the retry'),
      );
    });
    await first;
    if (this.draining) return;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    }).catch((error: unknown) => {
      throw new Error(`gateway cannot listen on ${host}:${port} (HBONE): ${error instanceof Error ? error.message : String(error)}`);
    });
    this.idleMemory.start();
    log.info({ port: this.port(), identity, notAfter: this.certificate?.notAfter.toISOString() }, 'gateway HBONE listener ready');
  }

  /** The bound port (useful when started with port 0); 0 before start. */
  port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Listening with a certificate and not draining. */
  get ready(): boolean {
    return this.certificate !== undefined && this.server.listening && !this.draining;
  }

  get openSessions(): number {
    return this.sessions.size;
  }

  /** The certificate presented to new connections. */
  currentCertificate(): WorkloadCertificate | undefined {
    return this.certificate;
  }

  /**
   * Drains: stops accepting, sends GOAWAY on every session, lets open streams run for up to
   * `drainTimeoutMs`, then cuts what is left.
   */
  async stop(options: HboneGatewayStopOptions = {}): Promise<void> {
    this.draining = true;
    this.idleMemory.stop();
    this.unsubscribe?.();
    this.abandonStart?.();
    if (this.server.listening) this.server.close();
    for (const session of this.sessions) if (!session.closed && !session.destroyed) session.close();
    const deadline = Date.now() + (options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
    while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    const cut = this.sessions.size;
    for (const session of this.sessions) session.destroy();
    for (const socket of this.sockets) socket.destroy();
    this.options.log.info({ cutSessions: cut }, 'gateway HBONE listener stopped');
  }

  private install(certificate: WorkloadCertificate): void {
    if (this.certificate?.certChainPem === certificate.certChainPem && this.certificate.rootsPem === certificate.rootsPem) return;
    try {
      this.server.setSecureContext({ cert: certificate.certChainPem, key: certificate.keyPem, ca: certificate.rootsPem, minVersion: HBONE_TLS_MIN_VERSION });
    } catch (error) {
      this.options.log.error({ identity: certificate.identity, err: error instanceof Error ? error.message : String(error) }, 'cannot use the gateway certificate; keeping the previous one');
      return;
    }
    const renewed = this.certificate !== undefined;
    this.certificate = certificate;
    this.options.log.info({ identity: certificate.identity, notAfter: certificate.notAfter.toISOString(), renewed }, renewed ? 'serving the renewed gateway certificate' : 'gateway certificate installed');
  }

  /** Runs a handler; a throw closes the socket instead of reaching the process. */
  private guard(message: string, socket: { destroy(): void }, handler: () => void): void {
    try {
      handler();
    } catch (error) {
      this.options.log.error({ err: String(error) }, message);
      socket.destroy();
    }
  }

  private onHandshakeError(error: Error & { code?: string }, tlsSocket: TLSSocket): void {
    const reason = HANDSHAKE_ERROR_REASONS[error.code ?? ''] ?? 'tls_error';
    const message = reason === 'missing_peer_certificate' ? 'untrusted peer certificate' : reason === 'not_h2' ? 'HBONE client did not negotiate h2' : 'HBONE TLS handshake failed';
    this.options.log.info({ peer: peerOf(tlsSocket), code: error.code, err: error.message.trim() }, message);
    this.options.metrics.proxy.hboneHandshakeFailed('inbound', reason);
    tlsSocket.destroy();
  }

  private refuse(tlsSocket: TLSSocket, peer: string, reason: HandshakeFailureReason, detail: string): void {
    this.options.log.warn({ peer, reason: detail }, reason === 'not_h2' ? 'HBONE client did not negotiate h2' : 'untrusted peer certificate');
    this.options.metrics.proxy.hboneHandshakeFailed('inbound', reason);
    tlsSocket.destroy();
  }

  private onSecureConnection(tlsSocket: TLSSocket): void {
    const peer = peerOf(tlsSocket);
    tlsSocket.on('error', (error) => this.options.log.debug({ err: error.message, peer }, 'outer HBONE TLS socket error'));
    if (this.draining) {
      tlsSocket.destroy();
      return;
    }
    const certificate = tlsSocket.getPeerCertificate();
    if (!certificate || Object.keys(certificate).length === 0) {
      this.refuse(tlsSocket, peer, 'missing_peer_certificate', 'client presented no certificate');
      return;
    }
    if (!tlsSocket.authorized) {
      this.refuse(tlsSocket, peer, 'untrusted_peer_certificate', `certificate does not chain to the mesh roots (${String(tlsSocket.authorizationError)})`);
      return;
    }
    const identities = spiffeIdentities(certificate.subjectaltname);
    const peerIdentity = identities[0];
    if (identities.length !== 1 || peerIdentity === undefined) {
      const detail = identities.length === 0 ? 'certificate carries no SPIFFE URI SAN' : `certificate carries several SPIFFE identities: ${identities.join(', ')}`;
      this.refuse(tlsSocket, peer, 'untrusted_peer_certificate', detail);
      return;
    }
    const required = this.options.requiredTrustDomain;
    if (required !== undefined && parseSpiffeUri(peerIdentity).trustDomain !== required) {
      this.refuse(tlsSocket, peer, 'untrusted_peer_certificate', `${peerIdentity} is not in trust domain ${required}`);
      return;
    }
    if (tlsSocket.alpnProtocol !== 'h2') {
      this.refuse(tlsSocket, peer, 'not_h2', `ALPN protocol is ${JSON.stringify(tlsSocket.alpnProtocol)}, want "h2"`);
      return;
    }
    this.options.log.info({ peer, peerIdentity, serial: certificate.serialNumber }, 'outer HBONE connection accepted');
    this.startSession(tlsSocket, { peer, peerIdentity });
  }

  private startSession(tlsSocket: TLSSocket, connection: OuterConnection): void {
    const { log, metrics } = this.options;
    const session = performServerHandshake(tlsSocket, {
      settings: { ...HBONE_HTTP2_SETTINGS, maxConcurrentStreams: MAX_STREAMS_PER_SESSION },
      maxSessionMemory: MAX_SESSION_MEMORY_MIB,
    });
    this.sessions.add(session);
    metrics.proxy.hboneSessionOpened('inbound');
    session.on('error', (error) => log.debug({ peer: connection.peer, err: error.message }, 'outer HBONE session error'));
    session.on('close', () => this.sessions.delete(session));
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      stream.on('error', (error) => log.debug({ peer: connection.peer, err: error.message }, 'outer HBONE stream error'));
      this.guard('outer HBONE stream failed', stream, () => this.onStream(connection, stream, headers));
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

  private onStream(connection: OuterConnection, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const method = headers[':method'];
    if (method !== 'CONNECT') {
      this.rejectStream(connection, stream, 400, 'method_not_connect', `the gateway accepts only CONNECT requests, got ${method ?? 'no method'}`);
      return;
    }
    const authority = parseServiceAuthority(headers[':authority']);
    if (!authority.ok) {
      this.rejectStream(connection, stream, 400, 'bad_authority', authority.reason);
      return;
    }
    const lookup = findServiceTarget(this.options.state, authority.hostname, authority.port);
    if (!lookup.ok) {
      this.rejectStream(connection, stream, 400, 'unknown_service', lookup.reason);
      return;
    }
    this.forward(connection, stream, headers, lookup.target);
  }

  private forward(connection: OuterConnection, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, target: ServiceTarget): void {
    const { log, metrics } = this.options;
    const baggage = parseBaggage(singleHeader(headers.baggage));
    const source: PeerFacts = { ...baggage, principal: connection.peerIdentity };
    const description: TcpConnectionDescription = { reporter: 'destination', source, destination: {}, service: target.service, mutualTls: true };
    const choice = pickEndpoint(this.options.state, target, this.random, parseEndpointSlot(singleHeader(headers[X_ENDPOINT_SLOT])));
    if (choice.kind === 'unavailable') {
      metrics.proxy.recordRefusedTcpConnection({ ...description, responseFlags: 'CONNECT' });
      this.rejectStream(connection, stream, 503, 'no_healthy_endpoint', choice.reason);
      return;
    }
    const destination = choice.workload;
    const forwarded = { ...description, destination: peerFactsOf(destination, workloadIdentity(destination)) };
    const endpoint = `${choice.address}:${this.endpointPort}`;
    dialTcp(this.dialAddress(choice.address, this.endpointPort), log, this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS).then(
      (upstream) => {
        if (stream.destroyed || stream.closed) {
          upstream.destroy();
          return;
        }
        stream.respond({ ':status': 200 });
        const tracked = metrics.proxy.openTcpConnection(forwarded);
        metrics.crossNetworkConnection({
          source_network: labelValue(singleHeader(headers[X_FORWARDED_NETWORK])),
          source_cluster: labelValue(baggage.cluster),
          destination_service: target.service.hostname,
        });
        log.debug({ peer: connection.peer, peerIdentity: connection.peerIdentity, service: target.serviceName, endpoint, workload: destination.uid }, 'forwarding to endpoint');
        splice(stream, upstream, {
          upstreamBytes: (bytes) => tracked.addReceived(bytes),
          downstreamBytes: (bytes) => tracked.addSent(bytes),
        }).then((error) => {
          tracked.close();
          if (error) log.debug({ peer: connection.peer, service: target.serviceName, endpoint, err: error.message }, 'forwarded connection ended with an error');
        }, () => undefined);
      },
      (error: Error) => {
        metrics.proxy.recordRefusedTcpConnection({ ...forwarded, responseFlags: 'CONNECT' });
        this.rejectStream(connection, stream, 503, 'upstream_unreachable', `endpoint ${endpoint} of service ${target.serviceName} unreachable: ${error.message}`);
      },
    );
  }

  private rejectStream(connection: OuterConnection, stream: ServerHttp2Stream, status: number, reason: string, message: string): void {
    this.options.log.info({ peer: connection.peer, peerIdentity: connection.peerIdentity, status, reason: message }, 'gateway CONNECT rejected');
    this.options.metrics.proxy.hboneStreamRejected('inbound', status, reason);
    respondRejected(stream, status, message);
  }
}
