import { connect, type Socket } from 'node:net';

import type { Logger } from '../../util/log.js';

export interface DialTarget {
  host: string;
  port: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Opens a TCP connection; rejects on error or when it is not established within the timeout. */
export function dialTcp(target: DialTarget, log: Logger, timeoutMs = DEFAULT_CONNECT_TIMEOUT_MS): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    const fail = (error: Error) => {
      socket.destroy();
      reject(error);
    };
    socket.setTimeout(timeoutMs, () => fail(new Error(`connect to ${target.host}:${target.port} timed out after ${timeoutMs} ms`)));
    socket.once('error', fail);
    socket.once('connect', () => {
      socket.setTimeout(0);
      socket.off('error', fail);
      // Errors after this point are handled by whoever splices the socket; this one only keeps
      // a late error from becoming an uncaught exception.
      socket.on('error', (error) => log.debug({ err: error.message, upstream: `${target.host}:${target.port}` }, 'upstream socket error'));
      resolve(socket);
    });
  });
}

/** `a.b.c.d:port` of the remote end of an accepted socket, for logs. */
export function peerOf(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}
