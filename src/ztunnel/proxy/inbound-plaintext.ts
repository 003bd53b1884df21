// ztunnel's inbound plaintext listener (15006): captured connections to local workloads from outside the mesh.
import type { Socket } from 'node:net';

import { peerFactsOf, type TcpConnectionDescription } from '../metrics.js';
import { capturedDestination, localEnrolledWorkload, remoteIp, workloadIdentity, type ProxyContext } from './context.js';
import { normalizeIp } from '../../api/ip.js';
import type { SocketAddress } from './original-dst.js';
import { forwardOverTcp } from './forward.js';
import { abort, peerOf, RateLimitedLog } from '../../hbone/index.js';
import { waypointNameOf } from '../state/waypoints.js';
import { authorizeSafely, type OpenInboundConnections } from './policy-watch.js';

/** Captured plaintext connections to local workloads (port 15006): authorize without identity, forward. */
export class InboundPlaintextProxy {
  private readonly refusals: RateLimitedLog;

  /** @param listenerPort the port this listener is bound to (a tproxied socket has another local port). */
  constructor(
    private readonly context: ProxyContext,
    private readonly listenerPort: () => number,
    private readonly openConnections: OpenInboundConnections,
  ) {
    this.refusals = new RateLimitedLog(context.log);
  }

  /** Takes an accepted connection of the inbound plaintext listener. Never throws. */
  accept(socket: Socket): void {
    this.handle(socket).catch((error: unknown) => {
      this.context.log.error({ peer: peerOf(socket), err: String(error) }, 'inbound plaintext connection failed');
      abort(socket);
    });
  }

  private async handle(socket: Socket): Promise<void> {
    const { log, metrics, state } = this.context;
    const peer = peerOf(socket);
    socket.on('error', (error) => log.debug({ peer, err: error.message }, 'inbound plaintext socket error'));
    const original = transparentDestination(this.context, socket, this.listenerPort()) ?? capturedDestination(this.context, socket);
    if (!original) {
      log.warn({ peer }, 'inbound plaintext connection has no original destination; closing');
      metrics.connectionRefused('inbound_plaintext', 'no_original_destination');
      socket.destroy();
      return;
    }
    const destination = localEnrolledWorkload(state, original.ip);
    if (!destination) {
      log.warn({ peer, destination: original.ip }, 'inbound plaintext connection to an address that is not a local mesh workload; closing');
      metrics.connectionRefused('inbound_plaintext', 'unknown_destination_workload');
      socket.destroy();
      return;
    }
    const sourceIp = remoteIp(socket);
    const description: TcpConnectionDescription = {
      reporter: 'destination',
      source: peerFactsOf(state.workloadByIp(sourceIp)),
      destination: peerFactsOf(destination, workloadIdentity(destination), this.context.clusterId),
      mutualTls: false,
    };
    // The sandwich rule: a workload behind a waypoint is reached only through it, and the waypoint speaks HBONE.
    if (destination.waypoint) {
      const waypoint = waypointNameOf(destination.waypoint);
      this.refusals.info(
        'waypoint_bypassed',
        { peer, destination: `${original.ip}:${original.port}`, waypoint },
        `plaintext connection to a workload behind waypoint ${waypoint} refused: it is reached only through its waypoint; resetting`,
      );
      metrics.recordRefusedTcpConnection({ ...description, responseFlags: 'DENY' });
      metrics.connectionRefused('inbound_plaintext', 'waypoint_bypassed');
      abort(socket);
      return;
    }
    const facts = { sourceIp, destinationIp: original.ip, destinationPort: original.port };
    const decision = authorizeSafely(state, { ...facts, destination }, log);
    if (!decision.allowed) {
      log.info({ peer, destination: `${original.ip}:${original.port}`, policy: decision.policy, reason: decision.reason }, 'plaintext connection denied by authorization policy; resetting');
      metrics.recordRefusedTcpConnection({ ...description, responseFlags: 'DENY' });
      metrics.connectionRefused('inbound_plaintext', 'policy_denied');
      abort(socket);
      return;
    }
    const untrack = this.openConnections.track({ listener: 'inbound_plaintext', facts, destinationIdentity: workloadIdentity(destination), abort: () => abort(socket) });
    socket.once('close', untrack);
    await forwardOverTcp(this.context, 'inbound_plaintext', socket, this.context.dialAddress(original.ip, original.port), description);
  }
}

/**
 * With tproxy the accepted socket's local address is the pod it was meant for, after any service
 * DNAT; conntrack's original destination would still be the service VIP.
 */
function transparentDestination(context: ProxyContext, socket: Socket, listenerPort: number): SocketAddress | undefined {
  if (!socket.localAddress || !socket.localPort || socket.localPort === listenerPort) return undefined;
  const ip = normalizeIp(socket.localAddress);
  return localEnrolledWorkload(context.state, ip) ? { ip, port: socket.localPort } : undefined;
}
