import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

import type { TcpConnectionDescription } from '../metrics.js';
import type { ProxyContext } from './context.js';
import { abort, splice } from './splice.js';
import { dialTcp, peerOf, type DialTarget } from './tcp.js';

/** Splices an accepted connection with its upstream and keeps the TCP metrics for it. */
export function spliceTracked(context: ProxyContext, downstream: Socket, upstream: Duplex, description: TcpConnectionDescription): void {
  const tracked = context.metrics.openTcpConnection(description);
  const peer = peerOf(downstream);
  splice(downstream, upstream, {
    upstreamBytes: (bytes) => tracked.addReceived(bytes),
    downstreamBytes: (bytes) => tracked.addSent(bytes),
  }).then(
    (error) => {
      tracked.close();
      if (error) context.log.debug({ peer, err: error.message }, 'proxied connection ended with an error');
    },
    () => tracked.close(),
  );
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
