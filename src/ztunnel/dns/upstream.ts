/**
 * Forwarding a raw DNS query to upstream resolvers and returning the raw reply, over the
 * client's transport. One socket per query: the kernel picks a random source port for UDP, and
 * nothing is shared between clients.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from '../../util/log.js';
import { FrameReader, frame } from './framing.js';
import { HEADER_LEN, type Transport } from './message.js';
import type { DnsUpstream } from './resolv-conf.js';

export interface ForwardOptions {
  timeoutMs: number;
  /** Aborts every attempt (the proxy is stopping). */
  signal: AbortSignal;
  log: Logger;
}

/**
 * Sends the query to each upstream in turn until one replies; undefined when all fail (timeout,
 * connection error, or no upstream at all).
 */
export async function forwardQuery(
  query: Buffer,
  transport: Transport,
  upstreams: DnsUpstream[],
  opts: ForwardOptions,
): Promise<Buffer | undefined> {
  for (const upstream of upstreams) {
    if (opts.signal.aborted) return undefined;
    try {
      return transport === 'udp'
        ? await exchangeUdp(query, upstream, opts.timeoutMs, opts.signal)
        : await exchangeTcp(query, upstream, opts.timeoutMs, opts.signal);
    } catch (err) {
      opts.log.debug(
        { upstream: `${upstream.host}:${upstream.port}`, transport, err: (err as Error).message },
        'DNS upstream failed; trying the next one',
      );
    }
  }
  return undefined;
}

/** True when `reply` is a response to `query` (same ID, QR set). */
function answersQuery(query: Buffer, reply: Buffer): boolean {
  return reply.length >= HEADER_LEN && reply.readUInt16BE(0) === query.readUInt16BE(0) && (reply[2] ?? 0) >= 0x80;
}

/** Runs `attempt` with a timeout and abort; `cleanup` always runs once it settles. */
function withDeadline<T>(
  timeoutMs: number,
  signal: AbortSignal,
  attempt: (resolve: (v: T) => void, reject: (e: Error) => void) => void,
  cleanup: () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      cleanup();
      fn();
    };
    const onAbort = (): void => finish(() => reject(new Error('aborted')));
    const timer = setTimeout(() => finish(() => reject(new Error(`no reply within ${timeoutMs} ms`))), timeoutMs);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      attempt(
        (v) => finish(() => resolve(v)),
        (e) => finish(() => reject(e)),
      );
    } catch (err) {
      finish(() => reject(err instanceof Error ? err : new Error(String(err))));
    }
  });
}

function exchangeUdp(query: Buffer, upstream: DnsUpstream, timeoutMs: number, signal: AbortSignal): Promise<Buffer> {
  const sock = dgram.createSocket(net.isIPv6(upstream.host.replace(/%.*$/, '')) ? 'udp6' : 'udp4');
  return withDeadline<Buffer>(
    timeoutMs,
    signal,
    (resolve, reject) => {
      sock.on('error', reject);
      sock.on('message', (msg, rinfo) => {
        // Only the upstream's reply to this query counts; anything else on the port is ignored.
        if (rinfo.port !== upstream.port || !answersQuery(query, msg)) return;
        resolve(msg);
      });
      sock.send(query, upstream.port, upstream.host, (err) => {
        if (err) reject(err);
      });
    },
    () => {
      try {
        sock.close();
      } catch {
        // already closed
      }
    },
  );
}

function exchangeTcp(query: Buffer, upstream: DnsUpstream, timeoutMs: number, signal: AbortSignal): Promise<Buffer> {
  const sock = net.connect({ host: upstream.host, port: upstream.port });
  return withDeadline<Buffer>(
    timeoutMs,
    signal,
    (resolve, reject) => {
      const reader = new FrameReader();
      sock.on('error', reject);
      sock.on('close', () => reject(new Error('upstream closed the connection before replying')));
      sock.on('connect', () => sock.write(frame(query)));
      sock.on('data', (chunk: Buffer) => {
        for (const reply of reader.push(chunk)) {
          if (answersQuery(query, reply)) {
            resolve(reply);
            return;
          }
        }
      });
    },
    () => sock.destroy(),
  );
}
