// The east-west gateway's HBONE front end: a handler on the shared HBONE server that forwards each outer CONNECT to a local endpoint's 15008.
import type { IncomingHttpHeaders } from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext } from 'node:tls';

import { identityOf, parseSpiffeUri, spiffeUri } from '../api/identity.js';
import { HBONE_PORT } from '../api/resources.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  dialTcp,
  HBONE_TLS_MIN_VERSION,
  HboneServer,
  IdleMemoryRelease,
  labelSafe,
  parseEndpointSlot,
  parseForwardedFor,
  peerOf,
  singleHeader,
  X_ENDPOINT_SLOT,
  X_FORWARDED_NETWORK,
  type ConnectReply,
  type ConnectRequest,
  type DialTarget,
  type HbonePeerLimits,
} from '../hbone/index.js';
import type { Logger } from '../util/log.js';
import type { WorkloadCertificate } from '../ztunnel/identity/types.js';
import type { ProxyState } from '../ztunnel/state/types.js';
import { identityFacts, labelValue, networkClusterLabel, peerFactsOf, UNKNOWN, type PeerFacts, type TcpConnectionDescription } from '../ztunnel/metrics.js';
import type { GatewayMetrics } from './metrics.js';
import { findServiceTarget, parseServiceAuthority, pickEndpoint, type GatewayStateView } from './routing.js';

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
  /** The gateway's xDS view; `workloadByIp` (when present) labels metrics from the registry. */
  state: GatewayStateView & Pick<ProxyState, 'workloadByIp' | 'knowsNetwork'>;
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
  /** Per TCP peer limits of the HBONE server. */
  peerLimits?: Partial<HbonePeerLimits>;
}

export interface HboneGatewayStopOptions {
  /** How long open streams may run to their end after GOAWAY before they are cut. Default 5 s. */
  drainTimeoutMs?: number;
}

const DEFAULT_DRAIN_TIMEOUT_MS = 5000;
const DRAIN_POLL_MS = 50;

/** Who the client of an outer connection is, as the registry knows it (never from baggage: DESIGN §11). */
interface OuterSource {
  facts: PeerFacts;
  network: string;
  cluster: string;
}

/**
 * The east-west gateway's HBONE front end (port 15008): terminates the outer mTLS + HTTP/2 tunnel
 * from other networks with the gateway's own certificate, and forwards each CONNECT
 * `<service hostname>:<port>` as raw bytes to `<endpoint pod IP>:15008` on this network, where the
 * destination node captures it. The inner tunnel (client ztunnel ↔ destination ztunnel TLS) passes
 * through untouched. TLS, peer checks, HTTP/2 and limits are the shared HBONE server's.
 */
export class HboneGateway {
  private readonly listener: Server;
  private readonly hbone: HboneServer<undefined>;
  private readonly sockets = new Set<Socket>();
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
    this.hbone = new HboneServer<undefined>({
      name: 'outer HBONE',
      log: options.log,
      metrics: options.metrics.proxy,
      requiredTrustDomain: options.requiredTrustDomain,
      limits: options.peerLimits,
      onConnect: (request) => this.onConnect(request),
      onAccepted: (connection, serial) => options.log.info({ peer: connection.peer, peerIdentity: connection.peerIdentity, serial }, 'outer HBONE connection accepted'),
    });
    // No Nagle delay on small writes (a request or an answer in one TLS record), as on ztunnel's listeners.
    this.listener = createNetServer({ noDelay: true }, (socket) => this.onConnection(socket));
    this.listener.on('error', (error) => options.log.error({ err: error.message }, 'HBONE listener error'));
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
      this.listener.once('error', reject);
      this.listener.listen(port, host, () => {
        this.listener.off('error', reject);
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

  /**
   * Drains: stops accepting, sends GOAWAY on every session, lets open streams run for up to
   * `drainTimeoutMs`, then cuts what is left.
   */
  async stop(options: HboneGatewayStopOptions = {}): Promise<void> {
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
    this.options.log.info({ cutSessions: cut }, 'gateway HBONE listener stopped');
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', (error) => this.options.log.debug({ err: error.message, peer: peerOf(socket) }, 'outer HBONE socket error'));
    const certificate = this.certificate;
    if (!certificate || this.draining) {
      socket.destroy();
      return;
    }
    this.hbone.accept(socket, certificate, certificate.rootsPem, undefined);
  }

  private install(certificate: WorkloadCertificate): void {
    if (this.certificate?.certChainPem === certificate.certChainPem && this.certificate.rootsPem === certificate.rootsPem) return;
    try {
      createSecureContext({ cert: certificate.certChainPem, key: certificate.keyPem, ca: certificate.rootsPem, minVersion: HBONE_TLS_MIN_VERSION });
    } catch (error) {
      this.options.log.error({ identity: certificate.identity, err: error instanceof Error ? error.message : String(error) }, 'cannot use the gateway certificate; keeping the previous one');
      return;
    }
    const renewed = this.certificate !== undefined;
    this.certificate = certificate;
    this.options.log.info({ identity: certificate.identity, notAfter: certificate.notAfter.toISOString(), renewed }, renewed ? 'serving the renewed gateway certificate' : 'gateway certificate installed');
  }

  /**
   * The client as the registry knows it: the workload at the `forwarded` address on the client's
   * network (`x-forwarded-network`) when its identity is the peer certificate's; else only the
   * identity, and `unknown` for the rest.
   */
  private outerSource(peerIdentity: string, headers: IncomingHttpHeaders): OuterSource {
    const network = labelSafe(singleHeader(headers[X_FORWARDED_NETWORK]));
    const claimed = parseForwardedFor(singleHeader(headers.forwarded));
    const known = network !== undefined && claimed !== undefined ? this.options.state.workloadByIp(claimed, network) : undefined;
    if (known && network !== undefined && spiffeUri(identityOf(known)) === peerIdentity) {
      const facts = peerFactsOf(known, peerIdentity, networkClusterLabel(network));
      return { facts, network, cluster: labelValue(known.clusterId) };
    }
    // A network name is kept only when the mesh knows that network: the header cannot mint label values.
    const knownNetwork = network !== undefined && network !== this.options.state.network && this.options.state.knowsNetwork(network) ? network : undefined;
    return { facts: identityFacts(peerIdentity, knownNetwork && networkClusterLabel(knownNetwork)), network: knownNetwork ?? UNKNOWN, cluster: UNKNOWN };
  }

  private async onConnect({ connection, headers }: ConnectRequest<undefined>): Promise<ConnectReply> {
    const { log, metrics, state } = this.options;
    const authority = parseServiceAuthority(singleHeader(headers[':authority']));
    if (!authority.ok) return { kind: 'reject', status: 400, reason: 'bad_authority', message: authority.reason };
    const lookup = findServiceTarget(state, authority.hostname, authority.port);
    if (!lookup.ok) return { kind: 'reject', status: 400, reason: 'unknown_service', message: lookup.reason };
    const target = lookup.target;
    const source = this.outerSource(connection.peerIdentity, headers);
    const description: TcpConnectionDescription = { reporter: 'destination', source: source.facts, destination: {}, service: target.service, mutualTls: true };
    const choice = pickEndpoint(state, target, this.random, parseEndpointSlot(singleHeader(headers[X_ENDPOINT_SLOT])));
    if (choice.kind === 'unavailable') {
      metrics.proxy.recordRefusedTcpConnection({ ...description, responseFlags: 'CONNECT' });
      return { kind: 'reject', status: 503, reason: 'no_healthy_endpoint', message: choice.reason };
    }
    const destination = choice.workload;
    const forwarded = { ...description, destination: peerFactsOf(destination, spiffeUri(identityOf(destination))) };
    const endpoint = `${choice.address}:${this.endpointPort}`;
    try {
      const upstream = await dialTcp(this.dialAddress(choice.address, this.endpointPort), log, this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
      log.debug({ peer: connection.peer, peerIdentity: connection.peerIdentity, service: target.serviceName, endpoint, workload: destination.uid }, 'forwarding to endpoint');
      return {
        kind: 'splice',
        upstream,
        open: () => {
          metrics.crossNetworkConnection({ source_network: source.network, source_cluster: source.cluster, destination_service: target.service.hostname });
          return metrics.proxy.openTcpConnection(forwarded);
        },
        logFields: { service: target.serviceName, endpoint },
      };
    } catch (error) {
      metrics.proxy.recordRefusedTcpConnection({ ...forwarded, responseFlags: 'CONNECT' });
      // The client learns which service failed, not the endpoint's address.
      return {
        kind: 'reject',
        status: 503,
        reason: 'upstream_unreachable',
        message: `an endpoint of service ${target.serviceName} is unreachable`,
        logFields: { service: target.serviceName, endpoint, err: error instanceof Error ? error.message : String(error) },
      };
    }
  }
}
