// Plain TCP to the upstream for captured connections that need no tunnel (outbound passthrough, inbound plaintext).
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

import { abort, dialTcp, peerOf, spliceCounted, type DialTarget } from '../../hbone/index.js';
import type { TcpConnectionDescription } from '../metrics.js';
import type { ProxyContext } from './context.js';

/** Splices an accepted connection with its upstream and keeps the TCP metrics for it. */
export function spliceTracked(context: ProxyContext, downstream: Socket, upstream: Duplex, description: TcpConnectionDescription): void {
  spliceCounted(downstream, upstream, context.metrics.openTcpConnection(description), context.log, { peer: peerOf(downstream) });
}

/** Connects to `target` in plain TCP and splices; on failure resets the accepted connection. */
export async function forwardOverTcp(
  context: ProxyContext,
  listener: 'outbound' | 'inbound_plaintext',
  downstream: Socket,
  target: DialTarget,
  description: TcpConnectionDescription,
): Promise<void> {
  let upstream: Socket;
  try {
    upstream = await dialTcp(target, context.log);
  } catch (error) {
    context.log.info({ peer: peerOf(downstream), upstream: `${target.host}:${target.port}`, err: error instanceof Error ? error.message : String(error) }, 'upstream unreachable; resetting connection');
    context.metrics.recordRefusedTcpConnection({ ...description, responseFlags: 'CONNECT' });
    context.metrics.connectionRefused(listener, 'upstream_unreachable');
    abort(downstream);
    return;
  }
  if (downstream.destroyed) {
    upstream.destroy();
    return;
  }
  spliceTracked(context, downstream, upstream, description);
}
