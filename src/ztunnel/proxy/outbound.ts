// ztunnel's outbound listener (15001): resolve a captured connection, then HBONE to the destination or its waypoint, double HBONE, plain TCP or refuse.
import type { ClientHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';

import type { Workload } from '../../gen/istio/workload/workload_pb.js';
import { networkClusterLabel, peerFactsOf, type TcpConnectionDescription } from '../metrics.js';
import type { Resolution, Upstream } from '../state/types.js';
import { capturedDestination, localEnrolledWorkload, remoteIp, workloadIdentity, type ProxyContext } from './context.js';
import { forwardOverTcp, spliceTracked } from './forward.js';
import {
  abort,
  baggageFor,
  formatAuthority,
  forwardedFor,
  GatewayUnreachableError,
  HboneConnectError,
  newTraceparent,
  peerOf,
  X_FORWARDED_NETWORK,
  type HbonePool,
  type InnerHbonePool,
} from '../../hbone/index.js';
import { GatewayOutliers } from './gateway-outliers.js';
import type { SocketAddress } from './original-dst.js';

type GatewayResolution = Extract<Resolution, { kind: 'gateway' }>;
type WaypointResolution = Extract<Resolution, { kind: 'waypoint' }>;

/** Attempts through different gateways of a network before a cross-network connection is refused. */
const MAX_GATEWAY_ATTEMPTS = 3;
/** Most inner sessions kept per (source, gateway, service): each is pinned to the endpoint picked when it opened. */
const MAX_ENDPOINT_SLOTS = 8;

/**
 * A random slot among min(capacity, MAX_ENDPOINT_SLOTS): with one pooled inner session per slot, a
 * client's connections spread over the remote endpoints instead of sticking to the first one.
 */
function endpointSlotFor(capacity: number, random: () => number): { slot: number; slots: number } {
  const slots = Math.max(1, Math.min(capacity, MAX_ENDPOINT_SLOTS));
  return { slot: Math.min(slots - 1, Math.floor(random() * slots)), slots };
}

/** Captured outbound connections (port 15001): resolve the destination, then tunnel, forward or refuse. */
export class OutboundProxy {
  private readonly gatewayOutliers = new GatewayOutliers();

  constructor(
    private readonly context: ProxyContext,
    private readonly pool: HbonePool,
    private readonly inner: InnerHbonePool,
  ) {}

  /** Takes an accepted connection of the outbound listener. Never throws. */
  accept(socket: Socket): void {
    this.handle(socket).catch((error: unknown) => {
      this.context.log.error({ peer: peerOf(socket), err: String(error) }, 'outbound connection failed');
      abort(socket);
    });
  }

  private async handle(socket: Socket): Promise<void> {
    const { log, metrics, state } = this.context;
    const peer = peerOf(socket);
    socket.on('error', (error) => log.debug({ peer, err: error.message }, 'outbound downstream socket error'));
    const original = capturedDestination(this.context, socket);
    if (!original) {
      log.warn({ peer }, 'outbound connection has no original destination; closing');
      metrics.connectionRefused('outbound', 'no_original_destination');
      socket.destroy();
      return;
    }
    const sourceIp = remoteIp(socket);
    const source = localEnrolledWorkload(state, sourceIp);
    if (!source) {
      log.warn({ peer, destination: `${original.ip}:${original.port}` }, 'outbound connection from an address that is not a local mesh workload; closing');
      metrics.connectionRefused('outbound', 'unknown_source_workload');
      socket.destroy();
      return;
    }
    let resolution: Resolution;
    try {
      resolution = state.resolve(source, original.ip, original.port, { avoidGateways: this.gatewayOutliers.ejected() });
    } catch (error) {
      log.error({ peer, destination: `${original.ip}:${original.port}`, err: String(error) }, 'resolving the destination failed; resetting');
      abort(socket);
      return;
    }
    const sourceFacts = peerFactsOf(source, undefined, this.context.clusterId);
    switch (resolution.kind) {
      case 'hbone':
        await this.viaHbone(socket, source, sourceIp, original, resolution.upstream);
        return;
      case 'gateway':
        await this.viaGateway(socket, source, sourceIp, original, resolution);
        return;
      case 'waypoint':
        await this.viaWaypoint(socket, source, sourceIp, original, resolution);
        return;
      case 'plaintext':
        await forwardOverTcp(this.context, 'outbound', socket, this.context.dialAddress(resolution.upstream.address, resolution.upstream.port), {
          reporter: 'source',
          source: sourceFacts,
          destination: peerFactsOf(resolution.upstream.workload, undefined, this.context.clusterId),
          service: resolution.upstream.service,
          mutualTls: false,
        });
        return;
      case 'passthrough':
        await forwardOverTcp(this.context, 'outbound', socket, this.context.dialAddress(original.ip, original.port), {
          reporter: 'source',
          source: sourceFacts,
          destination: {},
          mutualTls: false,
        });
        return;
      case 'unavailable':
        log.warn(
          { peer, destination: `${original.ip}:${original.port}`, service: `${resolution.service.namespace}/${resolution.service.hostname}`, reason: resolution.reason },
          'service has no usable endpoint; resetting connection',
        );
        metrics.connectionRefused('outbound', 'service_unavailable');
        abort(socket);
        return;
    }
  }

  /** Single HBONE: one tunnel, straight to the destination ztunnel (its node captures 15008). */
  private async viaHbone(socket: Socket, source: Workload, sourceIp: string, original: SocketAddress, upstream: Upstream): Promise<void> {
    await this.singleTunnel(socket, source, sourceIp, original, upstream, formatAuthority(upstream.address, upstream.port));
  }

  /**
   * To the destination's waypoint: one HBONE tunnel to the waypoint pod on its `hbone_mtls_port`
   * (it is not captured: it speaks HBONE itself), expecting its identity; the CONNECT names what
   * the client dialled (`VIP:port` or `pod:port`), and the waypoint applies L7 and picks the
   * endpoint. Metrics name the waypoint as the destination workload and principal (the peer this
   * ztunnel sees, as Istio's ztunnel reports it) with the destination service of the request;
   * log lines name the waypoint, its pod and address.
   */
  private async viaWaypoint(socket: Socket, source: Workload, sourceIp: string, original: SocketAddress, resolution: WaypointResolution): Promise<void> {
    const { upstream, authority } = resolution;
    const hop = { waypoint: resolution.waypointName ?? upstream.workload.name, waypointPod: `${upstream.workload.namespace}/${upstream.workload.name}`, waypointAddress: formatAuthority(upstream.address, upstream.port) };
    this.context.log.debug({ peer: peerOf(socket), destination: `${original.ip}:${original.port}`, authority, ...hop }, 'outbound connection through the waypoint');
    await this.singleTunnel(socket, source, sourceIp, original, upstream, authority, { port: upstream.port, logFields: hop });
  }

  private async singleTunnel(socket: Socket, source: Workload, sourceIp: string, original: SocketAddress, upstream: Upstream, authority: string, via: { port?: number; logFields?: Record<string, unknown> } = {}): Promise<void> {
    const sourceIdentity = workloadIdentity(source);
    const destinationIdentity = workloadIdentity(upstream.workload);
    const description = this.describe(source, sourceIdentity, peerFactsOf(upstream.workload, destinationIdentity, this.context.clusterId), upstream);
    await this.tunnel(socket, original, authority, description, via.logFields ?? {}, () =>
      this.pool.connect({
        sourceIdentity,
        expectedIdentities: upstream.expectedIdentities.length ? upstream.expectedIdentities : [destinationIdentity],
        destination: upstream.address,
        port: via.port,
        authority,
        headers: { baggage: baggageFor(source, this.context.clusterId), forwarded: forwardedFor(sourceIp), traceparent: newTraceparent() },
      }),
    );
  }

  /**
   * Double HBONE: an inner tunnel end to end to the destination ztunnel, inside an outer tunnel to the
   * east-west gateway of the destination's network. Both CONNECTs name `<service hostname>:<port>`.
   */
  private async viaGateway(socket: Socket, source: Workload, sourceIp: string, original: SocketAddress, resolution: GatewayResolution): Promise<void> {
    const { upstream, gateway, authority } = resolution;
    const sourceIdentity = workloadIdentity(source);
    const destinationIdentity = workloadIdentity(upstream.workload);
    const remoteCluster = networkClusterLabel(upstream.workload.network || gateway.network);
    const description = this.describe(source, sourceIdentity, peerFactsOf(upstream.workload, destinationIdentity, remoteCluster), upstream);
    const network = this.context.state.network;
    const hop = () => ({
      baggage: baggageFor(source, this.context.clusterId),
      traceparent: newTraceparent(),
      ...(network ? { [X_FORWARDED_NETWORK]: network } : {}),
    });
    const endpointSlot = endpointSlotFor(resolution.upstream.workload.capacity ?? 1, Math.random);
    const connectThrough = (target: GatewayResolution) =>
      this.inner.connect({
        endpointSlot,
        sourceIdentity,
        expectedIdentities: target.upstream.expectedIdentities.length ? target.upstream.expectedIdentities : [workloadIdentity(target.upstream.workload)],
        gateway: target.gateway,
        hostname: target.upstream.service.hostname,
        authority: target.authority,
        headers: { ...hop(), forwarded: forwardedFor(sourceIp) },
        outerHeaders: { ...hop(), forwarded: forwardedFor(sourceIp) },
      });
    await this.tunnel(socket, original, authority, description, {}, async () => {
      let attempt = resolution;
      for (let tries = 1; ; tries++) {
        try {
          return await connectThrough(attempt);
        } catch (error) {
          const next = error instanceof GatewayUnreachableError && tries < MAX_GATEWAY_ATTEMPTS ? this.failOver(source, original, attempt, error) : undefined;
          if (!next) throw error;
          attempt = next;
        }
      }
    });
  }

  /**
   * Ejects a gateway whose outer tunnel failed and resolves again: another gateway of the network
   * when there is one (the same endpoint set, so the same destination service), else nothing.
   */
  private failOver(source: Workload, original: SocketAddress, failed: GatewayResolution, error: GatewayUnreachableError): GatewayResolution | undefined {
    this.gatewayOutliers.eject(error.gateway);
    const again = this.context.state.resolve(source, original.ip, original.port, { avoidGateways: this.gatewayOutliers.ejected() });
    if (again.kind !== 'gateway' || GatewayOutliers.key(again.gateway) === GatewayOutliers.key(failed.gateway)) return undefined;
    this.context.log.warn(
      { failed: GatewayOutliers.key(failed.gateway), next: GatewayOutliers.key(again.gateway), authority: again.authority, err: error.message },
      'east-west gateway unreachable; failing over to another gateway of the network',
    );
    this.context.metrics.gatewayFailover();
    return again;
  }

  private describe(source: Workload, sourceIdentity: string, destination: TcpConnectionDescription['destination'], upstream: Upstream): TcpConnectionDescription {
    return {
      reporter: 'source',
      source: peerFactsOf(source, sourceIdentity, this.context.clusterId),
      destination,
      service: upstream.service,
      mutualTls: true,
    };
  }

  /** Opens the tunnel and splices the client into it; on failure, counts and resets the client. */
  private async tunnel(socket: Socket, original: SocketAddress, authority: string, description: TcpConnectionDescription, logFields: Record<string, unknown>, open: () => Promise<ClientHttp2Stream>): Promise<void> {
    const { log, metrics } = this.context;
    let stream: ClientHttp2Stream;
    try {
      stream = await open();
    } catch (error) {
      const status = error instanceof HboneConnectError ? error.status : undefined;
      log.warn(
        { peer: peerOf(socket), destination: `${original.ip}:${original.port}`, authority, ...logFields, status, err: error instanceof Error ? error.message : String(error) },
        'outbound HBONE connection failed; resetting',
      );
      metrics.recordRefusedTcpConnection({ ...description, responseFlags: status === 401 ? 'DENY' : 'CONNECT' });
      metrics.connectionRefused('outbound', status === 401 ? 'policy_denied' : 'hbone_refused');
      abort(socket);
      return;
    }
    if (socket.destroyed) {
      abort(stream);
      return;
    }
    spliceTracked(this.context, socket, stream, description);
  }
}
