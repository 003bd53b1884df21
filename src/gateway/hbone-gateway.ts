// The east-west gateway's HBONE front end: a handler on the shared HBONE server that forwards each outer CONNECT to a local endpoint's 15008.
import type { IncomingHttpHeaders } from 'node:http2';

import { identityOf, spiffeUri } from '../api/identity.js';
import { HBONE_PORT } from '../api/resources.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  dialTcp,
  HboneEndpoint,
  labelSafe,
  parseEndpointSlot,
  parseForwardedFor,
  singleHeader,
  X_ENDPOINT_SLOT,
  X_FORWARDED_NETWORK,
  type ConnectReply,
  type ConnectRequest,
  type DialTarget,
  type EndpointCertificateSource,
  type HboneEndpointStopOptions,
  type HbonePeerLimits,
} from '../hbone/index.js';
import type { Logger } from '../util/log.js';
import type { WorkloadCertificate } from '../ztunnel/identity/types.js';
import type { ProxyState } from '../ztunnel/state/types.js';
import { identityFacts, labelValue, networkClusterLabel, peerFactsOf, UNKNOWN, type PeerFacts, type TcpConnectionDescription } from '../ztunnel/metrics.js';
import type { GatewayMetrics } from './metrics.js';
import { findServiceTarget, parseServiceAuthority, pickEndpoint, type GatewayStateView } from './routing.js';

/** The gateway's own certificate, kept fresh by its source (CertificateManager in production). */
export type GatewayCertificateSource = EndpointCertificateSource;

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

export type { HboneEndpointStopOptions as HboneGatewayStopOptions } from '../hbone/index.js';

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
 * through untouched. Listener, certificate, TLS, peer checks, HTTP/2 and limits are the shared
 * HBONE endpoint's.
 */
export class HboneGateway {
  private readonly endpoint: HboneEndpoint;
  private readonly endpointPort: number;
  private readonly dialAddress: (ip: string, port: number) => DialTarget;
  private readonly random: () => number;

  constructor(private readonly options: HboneGatewayOptions) {
    this.endpointPort = options.endpointPort ?? HBONE_PORT;
    this.dialAddress = options.dialAddress ?? ((ip, port) => ({ host: ip, port }));
    this.random = options.random ?? Math.random;
    this.endpoint = new HboneEndpoint({
      role: 'gateway',
      serverName: 'outer HBONE',
      identity: options.identity,
      certificates: options.certificates,
      log: options.log,
      metrics: options.metrics.proxy,
      requiredTrustDomain: options.requiredTrustDomain,
      peerLimits: options.peerLimits,
      onConnect: (request) => this.onConnect(request),
    });
  }

  /** Obtains the gateway's certificate (waiting for retries if the first request fails), then listens. */
  start(port: number = HBONE_PORT, host = '0.0.0.0'): Promise<void> {
    return this.endpoint.start(port, host);
  }

  /** The bound port (useful when started with port 0); 0 before start. */
  port(): number {
    return this.endpoint.port();
  }

  /** Listening with a certificate and not draining. */
  get ready(): boolean {
    return this.endpoint.ready;
  }

  get openSessions(): number {
    return this.endpoint.openSessions;
  }

  /** The certificate presented to new connections. */
  currentCertificate(): WorkloadCertificate | undefined {
    return this.endpoint.currentCertificate();
  }

  /** Drains: GOAWAY on every session, open streams run up to `drainTimeoutMs`, then the rest is cut. */
  stop(options: HboneEndpointStopOptions = {}): Promise<void> {
    return this.endpoint.stop(options);
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
