// An HBONE endpoint with one identity of its own (east-west gateway, waypoint, ingress): the listener, its certificate, drain.
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext } from 'node:tls';

import { parseSpiffeUri } from '../api/identity.js';
import { HBONE_PORT } from '../api/resources.js';
import type { Logger } from '../util/log.js';
import type { WorkloadCertificate } from '../ztunnel/identity/types.js';
import { peerOf } from './io.js';
import { IdleMemoryRelease } from './memory.js';
import { HboneServer, type ConnectHandler, type HbonePeerLimits, type HboneServerOptions } from './server.js';
import { HBONE_TLS_MIN_VERSION } from './transport.js';

/** The endpoint's own certificate, kept fresh by its source (CertificateManager in production). */
export interface EndpointCertificateSource {
  certificateFor(identity: string): Promise<WorkloadCertificate>;
  /** Called with every new certificate (issuance and renewals); returns an unsubscribe function. */
  onRenewed(listener: (certificate: WorkloadCertificate) => void): () => void;
}

export interface HboneEndpointOptions {
  /** Names the endpoint in log lines: `gateway`, `waypoint`. */
  role: string;
  /** Names its HBONE server in log lines; default `<role> HBONE`. */
  serverName?: string;
  /** The SPIFFE identity whose certificate the endpoint presents. */
  identity: string;
  certificates: EndpointCertificateSource;
  log: Logger;
  metrics: HboneServerOptions<undefined>['metrics'];
  onConnect: ConnectHandler<undefined>;
  /** When set, clients must have an identity in this trust domain. */
  requiredTrustDomain?: string;
  /** Per TCP peer limits of the HBONE server. */
  peerLimits?: Partial<HbonePeerLimits>;
}

export interface HboneEndpointStopOptions {
  /** How long open streams may run to their end after GOAWAY before they are cut. Default 5 s. */
  drainTimeoutMs?: number;
}

const DEFAULT_DRAIN_TIMEOUT_MS = 5000;
const DRAIN_POLL_MS = 50;

/**
 * Listens for HBONE (TCP 15008) with the endpoint's own certificate and hands each CONNECT to the
 * handler. start() waits for the first certificate (retrying through its source); renewed
 * certificates serve new connections while established ones keep theirs; stop() drains.
 */
export class HboneEndpoint {
  private readonly listener: Server;
  private readonly hbone: HboneServer<undefined>;
  private readonly sockets = new Set<Socket>();
  private certificate?: WorkloadCertificate;
  private unsubscribe?: () => void;
  /** Releases a start() still waiting for its first certificate when the endpoint stops. */
  private abandonStart?: () => void;
  private draining = false;
  private readonly idleMemory: IdleMemoryRelease;

  constructor(private readonly options: HboneEndpointOptions) {
    parseSpiffeUri(options.identity);
    this.idleMemory = new IdleMemoryRelease(options.log);
    const serverName = options.serverName ?? `${options.role} HBONE`;
    this.hbone = new HboneServer<undefined>({
      name: serverName,
      log: options.log,
      metrics: options.metrics,
      requiredTrustDomain: options.requiredTrustDomain,
      limits: options.peerLimits,
      onConnect: options.onConnect,
      onAccepted: (connection, serial) => options.log.info({ peer: connection.peer, peerIdentity: connection.peerIdentity, serial }, `${serverName} connection accepted`),
    });
    // No Nagle delay on small writes (a request or an answer in one TLS record), as on ztunnel's listeners.
    this.listener = createNetServer({ noDelay: true }, (socket) => this.onConnection(socket));
    this.listener.on('error', (error) => options.log.error({ err: error.message }, 'HBONE listener error'));
  }

  async start(port: number = HBONE_PORT, host = '0.0.0.0'): Promise<void> {
    if (this.unsubscribe) throw new Error(`${this.options.role} already started`);
    const { certificates, identity, log, role } = this.options;
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
        (error: unknown) => log.warn({ identity, err: error instanceof Error ? error.message : String(error) }, `no certificate for the ${role} yet; waiting for the retry`),
      );
    });
    await first;
    if (this.draining) return;
    await new Promise<void>((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen(port, host, () => {
        this.listener.off('error', reject);
        resolve();
      });
    }).catch((error: unknown) => {
      throw new Error(`${role} cannot listen on ${host}:${port} (HBONE): ${error instanceof Error ? error.message : String(error)}`);
    });
    this.idleMemory.start();
    log.info({ port: this.port(), identity, notAfter: this.certificate?.notAfter.toISOString() }, `${role} HBONE listener ready`);
  }

  /** The bound port (useful when started with port 0); 0 before start. */
  port(): number {
    return (this.listener.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Listening with a certificate and not draining. */
  get ready(): boolean {
    return this.certificate !== undefined && this.listener.listening && !this.draining;
  }

  get openSessions(): number {
    return this.hbone.openSessions;
  }

  /** The certificate presented to new connections. */
  currentCertificate(): WorkloadCertificate | undefined {
    return this.certificate;
  }

  /** Stops accepting, sends GOAWAY on every session, lets open streams run up to `drainTimeoutMs`, then cuts what is left. */
  async stop(options: HboneEndpointStopOptions = {}): Promise<void> {
    this.draining = true;
    this.idleMemory.stop();
    this.unsubscribe?.();
    this.abandonStart?.();
    if (this.listener.listening) this.listener.close();
    this.hbone.close();
    const deadline = Date.now() + (options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
    while (this.hbone.openSessions > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    const cut = this.hbone.openSessions;
    this.hbone.destroy();
    for (const socket of this.sockets) socket.destroy();
    this.options.log.info({ cutSessions: cut }, `${this.options.role} HBONE listener stopped`);
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', (error) => this.options.log.debug({ err: error.message, peer: peerOf(socket) }, `${this.options.role} HBONE socket error`));
    const certificate = this.certificate;
    if (!certificate || this.draining) {
      socket.destroy();
      return;
    }
    this.hbone.accept(socket, certificate, certificate.rootsPem, undefined);
  }

  private install(certificate: WorkloadCertificate): void {
    if (this.certificate?.certChainPem === certificate.certChainPem && this.certificate.rootsPem === certificate.rootsPem) return;
    const { role, log } = this.options;
    try {
      createSecureContext({ cert: certificate.certChainPem, key: certificate.keyPem, ca: certificate.rootsPem, minVersion: HBONE_TLS_MIN_VERSION });
    } catch (error) {
      log.error({ identity: certificate.identity, err: error instanceof Error ? error.message : String(error) }, `cannot use the ${role} certificate; keeping the previous one`);
      return;
    }
    const renewed = this.certificate !== undefined;
    this.certificate = certificate;
    log.info({ identity: certificate.identity, notAfter: certificate.notAfter.toISOString(), renewed }, renewed ? `serving the renewed ${role} certificate` : `${role} certificate installed`);
  }
}
