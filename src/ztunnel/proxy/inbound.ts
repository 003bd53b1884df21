// ztunnel's inbound HBONE (15008): the decision for each CONNECT (buildInboundRequest, pure), then the mechanics around the shared HBONE server.
import type { IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';

import type { Service, Workload } from '../../gen/istio/workload/workload_pb.js';
import { ADMIN_PORT, DNS_PROXY_PORT, HBONE_PORT, INBOUND_PLAINTEXT_PORT, METRICS_PORT, OUTBOUND_CAPTURE_PORT, READINESS_PORT } from '../../api/resources.js';
import { dialTcp, HboneServer, labelSafe, parseBaggage, parseForwardedFor, parseHboneTarget, peerOf, singleHeader, X_FORWARDED_NETWORK, type ConnectReply, type ConnectRequest, type HbonePeerLimits } from '../../hbone/index.js';
import type { WorkloadCertificate } from '../identity/types.js';
import { identityFacts, networkClusterLabel, peerFactsOf, type PeerFacts, type TcpConnectionDescription } from '../metrics.js';
import type { AuthorizationDecision, ProxyState, ServiceTarget } from '../state/types.js';
import { waypointNameOf } from '../state/waypoints.js';
import { capturedDestination, localEnrolledWorkload, workloadIdentity, type ProxyContext } from './context.js';
import type { SocketAddress } from './original-dst.js';
import { currentDestination, type OpenInboundConnections } from './policy-watch.js';
import type { RelayCheck } from './relays.js';

/** ztunnel's own ports: a CONNECT to one of them on a pod address would loop back into ztunnel. */
export const ZTUNNEL_PORTS: ReadonlySet<number> = new Set([HBONE_PORT, OUTBOUND_CAPTURE_PORT, INBOUND_PLAINTEXT_PORT, DNS_PROXY_PORT, ADMIN_PORT, METRICS_PORT, READINESS_PORT]);

/** What the TLS handshake and the capture established about an inbound connection. */
export interface InboundConnectionFacts {
  /** TCP peer address. */
  peerIp: string;
  /** The client certificate's SPIFFE identity. */
  peerIdentity: string;
  /** Where the connection was sent (a local workload's address, port 15008). */
  original: SocketAddress;
  destination: Workload;
  destinationIdentity: string;
}

/** What the inbound decision reads of ztunnel's state. */
export type InboundState = Pick<ProxyState, 'network' | 'workloadByIp' | 'hostNetworkWorkloadsAt' | 'knowsNetwork' | 'serviceTarget' | 'authorize' | 'waypointIdentities'> & { isRelay: RelayCheck; clusterId: string };

export type InboundRequest =
  | {
      kind: 'reject';
      status: number;
      /** Metric label (a fixed word). */
      reason: string;
      /** Sent to the client: never an address of this node or its pods. */
      message: string;
      /** For the server's log only. */
      logFields: Record<string, unknown>;
      /** Set when the refusal is a connection for the TCP metrics (a policy denial). */
      refused?: TcpConnectionDescription;
    }
  | {
      kind: 'forward';
      /** The local workload address and port to dial. */
      upstream: SocketAddress;
      /** The source address authorization decided on. */
      sourceIp: string;
      description: TcpConnectionDescription;
      /** The client's network when it came through an east-west gateway. */
      sourceNetwork?: string;
      logFields: Record<string, unknown>;
    };

function reject(status: number, reason: string, message: string, logFields: Record<string, unknown> = {}, refused?: TcpConnectionDescription): InboundRequest {
  return { kind: 'reject', status, reason, message, logFields, refused };
}

/** Cuts client-supplied text quoted back in a rejection. */
function quoted(value: string | undefined): string {
  const text = value ?? '';
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}

/**
 * The source address authorization sees (DESIGN §11: decisions use what is authenticated).
 *
 * The TCP peer, unless `forwarded: for=` names another address and the peer may speak for it:
 * - the peer is a relay (`isRelay`: east-west gateways now, waypoints later) whose own identity is
 *   the peer certificate's, relaying for a client;
 * - the peer is a node address (host-network workloads such as its ztunnel are there) and the named
 *   workload runs on that node, in the same cluster, with the peer certificate's identity: ambit's
 *   ztunnels dial from their node's address, not the pod's, and a node's ztunnel presents the
 *   certificate of the pod it speaks for.
 * A pod that obtained a certificate of its own and dials from its pod address is neither: whatever
 * it claims, authorization sees its own address.
 *
 * Through an east-west gateway (double HBONE) the inner TLS peer is the client but the TCP peer is
 * the gateway's pod, which is neither: the client's address is on another network (pod CIDRs of
 * networks may overlap), so authorization sees the gateway pod's address, as Istio's ztunnel does.
 * Policies for clients of other networks are written with identities.
 */
export function authorizedSourceIp(
  facts: Pick<InboundConnectionFacts, 'peerIp' | 'peerIdentity'>,
  forwarded: string | undefined,
  state: Pick<InboundState, 'workloadByIp' | 'hostNetworkWorkloadsAt' | 'isRelay'>,
): string {
  const claimed = parseForwardedFor(forwarded);
  if (claimed === undefined || claimed === facts.peerIp) return facts.peerIp;
  const relay = state.workloadByIp(facts.peerIp);
  if (relay && state.isRelay(relay) && workloadIdentity(relay) === facts.peerIdentity) return claimed;
  const named = state.workloadByIp(claimed);
  if (!named || named.node === '' || workloadIdentity(named) !== facts.peerIdentity) return facts.peerIp;
  const fromItsNode = state.hostNetworkWorkloadsAt(facts.peerIp).some((onNode) => onNode.node === named.node && onNode.clusterId === named.clusterId);
  return fromItsNode ? claimed : facts.peerIp;
}

/**
 * Metric labels of the source: from the mesh's record of a workload whose identity is the peer
 * certificate's (at the authorized source address, or, through a gateway, at the `forwarded`
 * address on the `x-forwarded-network` network), else only the identity. Baggage is never used: a
 * client could grow the registry without bound with it.
 */
function sourceFacts(sourceIp: string, peerIdentity: string, forwarded: string | undefined, sourceNetwork: string | undefined, state: InboundState): PeerFacts {
  const atSource = state.workloadByIp(sourceIp);
  if (atSource && workloadIdentity(atSource) === peerIdentity) return peerFactsOf(atSource, peerIdentity, state.clusterId);
  const claimed = parseForwardedFor(forwarded);
  if (sourceNetwork !== undefined && claimed !== undefined) {
    const remote = state.workloadByIp(claimed, sourceNetwork);
    if (remote && workloadIdentity(remote) === peerIdentity) return peerFactsOf(remote, peerIdentity, networkClusterLabel(sourceNetwork));
  }
  return identityFacts(peerIdentity, sourceNetwork !== undefined && state.knowsNetwork(sourceNetwork) ? networkClusterLabel(sourceNetwork) : undefined);
}

function authorize(state: InboundState, facts: InboundConnectionFacts, sourceIp: string, destinationPort: number): AuthorizationDecision {
  try {
    return state.authorize({ sourceIdentity: facts.peerIdentity, sourceIp, destinationIp: facts.original.ip, destinationPort, destination: facts.destination });
  } catch (error) {
    return { allowed: false, reason: `authorization failed: ${String(error)}` };
  }
}

function serviceTarget(state: InboundState, destination: Workload, hostname: string, port: number): ServiceTarget {
  try {
    return state.serviceTarget(destination, hostname, port);
  } catch (error) {
    return { kind: 'refused', reason: `service lookup failed: ${String(error)}` };
  }
}

/**
 * What to do with one inbound CONNECT, from the authenticated connection, the request headers and
 * the mesh state (ztunnel's build_inbound_request): the target (`ip:port` of the connection's own
 * destination, or `<service hostname>:<port>` of a service it backs), never one of ztunnel's ports,
 * the source authorization decides on, the decision, and the metric labels.
 *
 * Arriving through an east-west gateway (the client says its network in `x-forwarded-network`, or
 * the TCP peer is a gateway), a CONNECT must name a service hostname: the client on another network
 * cannot know this network's pod addresses, and an `ip:port` there is someone probing for them.
 * Rejection messages go to the client and never name this node's or its pods' addresses.
 */
export function buildInboundRequest(facts: InboundConnectionFacts, headers: IncomingHttpHeaders, state: InboundState): InboundRequest {
  const authority = singleHeader(headers[':authority']);
  const target = parseHboneTarget(authority);
  if (!target.ok) return reject(400, 'bad_authority', target.reason.length > 200 ? `:authority ${quoted(authority)} is not a valid HBONE target` : target.reason);
  const forwardedNetwork = labelSafe(singleHeader(headers[X_FORWARDED_NETWORK]));
  const sourceNetwork = forwardedNetwork !== undefined && forwardedNetwork !== state.network ? forwardedNetwork : undefined;
  const peerWorkload = state.workloadByIp(facts.peerIp);
  const throughGateway = sourceNetwork !== undefined || (peerWorkload !== undefined && state.isRelay(peerWorkload) && workloadIdentity(peerWorkload) !== facts.peerIdentity);
  let port: number;
  let service: Service | undefined;
  if (target.kind === 'address') {
    if (throughGateway) {
      return reject(400, 'address_through_gateway', 'a CONNECT arriving through an east-west gateway must name <service hostname>:<port>', { authority });
    }
    if (target.ip !== facts.original.ip) {
      return reject(400, 'authority_mismatch', `:authority ${quoted(authority)} is not the address this connection was sent to`, { authority, destination: facts.original.ip });
    }
    port = target.port;
  } else {
    const found = serviceTarget(state, facts.destination, target.hostname, target.port);
    if (found.kind === 'refused') {
      return reject(400, 'unknown_service', `:authority ${target.hostname}:${target.port} is not a service of this destination`, { authority, destination: facts.original.ip, why: found.reason });
    }
    port = found.targetPort;
    service = found.service;
  }
  if (ZTUNNEL_PORTS.has(port)) {
    return reject(400, 'ztunnel_port', `port ${port} is a port of the node proxy, not of the workload`, { authority, destination: `${facts.original.ip}:${port}` });
  }
  const forwarded = singleHeader(headers.forwarded);
  const sourceIp = authorizedSourceIp(facts, forwarded, state);
  const description: TcpConnectionDescription = {
    reporter: 'destination',
    source: sourceFacts(sourceIp, facts.peerIdentity, forwarded, sourceNetwork, state),
    destination: peerFactsOf(facts.destination, facts.destinationIdentity, state.clusterId),
    service,
    mutualTls: true,
  };
  const logFields = { peerIdentity: facts.peerIdentity, sourceIp, authority, destination: `${facts.original.ip}:${port}` };
  // Istio's sandwich rule: a workload that has a waypoint is reached only through it.
  const { waypoint } = facts.destination;
  if (waypoint) {
    const waypointName = waypointNameOf(waypoint);
    if (!state.waypointIdentities(waypoint).includes(facts.peerIdentity)) {
      // The client is told the waypoint's name, never an address (a waypoint named by address is "its waypoint").
      const told = waypoint.destination.case === 'hostname' ? `its waypoint ${waypointName}` : 'its waypoint';
      return reject(401, 'waypoint_bypassed', `the destination must be reached through ${told}`, { ...logFields, waypoint: waypointName }, { ...description, responseFlags: 'DENY' });
    }
  }
  const decision = authorize(state, facts, sourceIp, port);
  if (!decision.allowed) {
    return reject(401, 'policy_denied', `denied by authorization policy${decision.policy ? ` ${decision.policy}` : ''}`, { ...logFields, why: decision.reason }, { ...description, responseFlags: 'DENY' });
  }
  return { kind: 'forward', upstream: { ip: facts.original.ip, port }, sourceIp, description, sourceNetwork, logFields };
}

/** An inbound connection as the HBONE server carries it: where it was sent, and to which local workload. */
interface InboundContext {
  original: SocketAddress;
  /** The identity the destination had at accept time: the certificate this connection presents. */
  destinationIdentity: string;
}

/**
 * ztunnel's side of 15008: finds the local workload an accepted connection was sent to and its
 * certificate, hands the socket to the HBONE server, and answers each CONNECT with
 * buildInboundRequest's decision (dialing the workload when it says forward).
 */
export class InboundHbone {
  private readonly server: HboneServer<InboundContext>;

  constructor(
    private readonly context: ProxyContext,
    private readonly isRelay: RelayCheck,
    private readonly openConnections: OpenInboundConnections,
    limits?: Partial<HbonePeerLimits>,
  ) {
    this.server = new HboneServer<InboundContext>({
      name: 'inbound HBONE',
      log: context.log,
      metrics: context.metrics,
      limits,
      onConnect: (request) => this.onConnect(request),
      describe: (connection) => ({ destination: connection.original.ip }),
      onAccepted: (connection, serial) =>
        context.log.debug({ peer: connection.peer, peerIdentity: connection.peerIdentity, serial, destination: connection.context.original.ip }, 'inbound HBONE connection accepted'),
    });
  }

  /** Takes an accepted TCP connection of the HBONE listener. Never throws. */
  accept(socket: Socket): void {
    this.acceptConnection(socket).catch((error: unknown) => {
      this.context.log.error({ err: String(error), peer: peerOf(socket) }, 'inbound HBONE connection failed');
      socket.destroy();
    });
  }

  close(): void {
    this.server.close();
  }

  destroy(): void {
    this.server.destroy();
  }

  get openSessions(): number {
    return this.server.openSessions;
  }

  /** Local identities the server holds a TLS server for. */
  get identities(): string[] {
    return this.server.identities;
  }

  retainIdentities(identities: ReadonlySet<string>): void {
    this.server.retainIdentities(identities);
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
    this.server.accept(socket, certificate, this.context.certificates.roots(), { original, destinationIdentity });
  }

  private async onConnect({ connection, headers }: ConnectRequest<InboundContext>): Promise<ConnectReply> {
    const { log, metrics, state, clusterId } = this.context;
    const { original, destinationIdentity } = connection.context;
    // Looked up per stream: the session may be minutes old, and policies name the workload as it is now.
    const destination = currentDestination(state, original.ip, destinationIdentity);
    if (!destination) {
      // The session was accepted for this address's workload, which is no longer here: every later stream would fail the same way.
      return { kind: 'reject', status: 503, reason: 'destination_gone', message: 'the destination workload is no longer served here', logFields: { destination: original.ip }, closeSession: true };
    }
    const facts: InboundConnectionFacts = { peerIp: connection.peerIp, peerIdentity: connection.peerIdentity, original, destination, destinationIdentity };
    const request = buildInboundRequest(facts, headers, {
      network: state.network,
      workloadByIp: (ip, network) => state.workloadByIp(ip, network),
      hostNetworkWorkloadsAt: (ip) => state.hostNetworkWorkloadsAt(ip),
      waypointIdentities: (waypoint) => state.waypointIdentities(waypoint),
      knowsNetwork: (network) => state.knowsNetwork(network),
      serviceTarget: (workload, hostname, port) => state.serviceTarget(workload, hostname, port),
      authorize: (connectionFacts) => state.authorize(connectionFacts),
      isRelay: this.isRelay,
      clusterId,
    });
    if (request.kind === 'reject') {
      if (request.refused) metrics.recordRefusedTcpConnection(request.refused);
      return request;
    }
    if (request.sourceNetwork !== undefined) {
      log.info(
        { peer: connection.peer, ...request.logFields, sourceNetwork: request.sourceNetwork, sourceCluster: request.description.source.cluster, claimedSourceCluster: labelSafe(parseBaggage(singleHeader(headers.baggage)).cluster), sourceIp: parseForwardedFor(singleHeader(headers.forwarded)) ?? request.sourceIp, authorizedSourceIp: request.sourceIp },
        'inbound HBONE connection through an east-west gateway',
      );
    }
    try {
      const upstream = await dialTcp(this.context.dialAddress(request.upstream.ip, request.upstream.port), log);
      const watched = { sourceIdentity: facts.peerIdentity, sourceIp: request.sourceIp, destinationIp: original.ip, destinationPort: request.upstream.port };
      return {
        kind: 'splice',
        upstream,
        open: () => metrics.openTcpConnection(request.description),
        watch: (abort) => this.openConnections.track({ listener: 'inbound', facts: watched, destinationIdentity, abort }),
        logFields: { authority: request.logFields.authority },
      };
    } catch (error) {
      metrics.recordRefusedTcpConnection({ ...request.description, responseFlags: 'CONNECT' });
      return {
        kind: 'reject',
        status: 503,
        reason: 'upstream_unreachable',
        message: `the destination workload does not accept connections on port ${request.upstream.port}`,
        logFields: { ...request.logFields, err: error instanceof Error ? error.message : String(error) },
      };
    }
  }
}
