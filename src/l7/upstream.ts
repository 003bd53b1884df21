// HTTP to upstreams over tunnels: HTTP/1.1 keep-alive connections and HTTP/2 sessions, pooled per upstream, each on its own tunnel.
import { Agent, request as httpRequest, type ClientRequest, type ClientRequestArgs, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { connect as http2Connect, type ClientHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';

import { StreamSocket } from './stream-socket.js';

/** Where requests go: a key naming the upstream (endpoint and path to it) and how to open a tunnel there. */
export interface TunnelTarget {
  key: string;
  open(): Promise<Duplex>;
}

export interface HttpUpstreamsOptions {
  /** Idle keep-alive connections kept per upstream. */
  maxIdlePerUpstream?: number;
  /** Connections (HTTP/1.1) per upstream at most; requests beyond wait. */
  maxConnectionsPerUpstream?: number;
  /** An idle connection or session is closed after this long. */
  idleTimeoutMs?: number;
}

type TargetedOptions = ClientRequestArgs & { tunnelTarget?: TunnelTarget };

function targetOf(options: TargetedOptions | undefined): TunnelTarget {
  if (!options?.tunnelTarget) throw new Error('a tunnel agent request without a tunnel target');
  return options.tunnelTarget;
}

/** http.Agent whose connections are tunnels: one pool per TunnelTarget key. */
class TunnelAgent extends Agent {
  override getName(options?: TargetedOptions): string {
    return targetOf(options).key;
  }

  // Node's Agent calls createConnection(options, callback) and accepts the socket through the callback.
  override createConnection(options: TargetedOptions, callback?: (error: Error | null, socket: Duplex) => void): undefined {
    targetOf(options)
      .open()
      .then(
        (tunnel) => callback?.(null, new StreamSocket(tunnel)),
        (error: unknown) => callback?.(error instanceof Error ? error : new Error(String(error)), undefined as unknown as Duplex),
      );
    return undefined;
  }
}

export interface UpstreamRequest {
  method: string;
  path: string;
  headers: OutgoingHttpHeaders;
}

/**
 * The HTTP client side of a waypoint or ingress. HTTP/1.1 requests share keep-alive connections per
 * upstream (Node's agent); HTTP/2 requests (gRPC, h2 clients) share one session per upstream, opened
 * again when it closes. Every connection or session is one tunnel from the target.
 */
export class HttpUpstreams {
  private readonly agent: TunnelAgent;
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  private readonly idleTimeoutMs: number;

  constructor(options: HttpUpstreamsOptions = {}) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.agent = new TunnelAgent({
      keepAlive: true,
      maxFreeSockets: options.maxIdlePerUpstream ?? 64,
      maxSockets: options.maxConnectionsPerUpstream ?? 1024,
      timeout: this.idleTimeoutMs,
      scheduling: 'lifo',
    });
  }

  /** An HTTP/1.1 request to the target; the caller writes the body and listens for `response`/`error`. */
  http1(target: TunnelTarget, request: UpstreamRequest): ClientRequest {
    const options: TargetedOptions = { agent: this.agent, method: request.method, path: request.path, headers: request.headers, tunnelTarget: target, setHost: false };
    return httpRequest(options);
  }

  /** The HTTP/2 session to the target (prior knowledge, no TLS: the tunnel is the security). */
  async http2(target: TunnelTarget): Promise<ClientHttp2Session> {
    const existing = this.sessions.get(target.key);
    if (existing) {
      const session = await existing.catch(() => undefined);
      if (session && !session.closed && !session.destroyed) return session;
      if (this.sessions.get(target.key) === existing) this.sessions.delete(target.key);
    }
    const opening = (async () => {
      const tunnel = await target.open();
      const session = http2Connect('http://upstream', { createConnection: () => tunnel, settings: { enablePush: false } });
      session.setTimeout(this.idleTimeoutMs, () => session.close());
      const forget = () => {
        if (this.sessions.get(target.key) === opening) this.sessions.delete(target.key);
      };
      session.once('close', forget);
      session.once('goaway', forget);
      session.on('error', forget);
      return session;
    })();
    this.sessions.set(target.key, opening);
    opening.catch(() => {
      if (this.sessions.get(target.key) === opening) this.sessions.delete(target.key);
    });
    return opening;
  }

  /** Open HTTP/1.1 connections and HTTP/2 sessions, for metrics and tests. */
  counts(): { http1Connections: number; http1Idle: number; http2Sessions: number } {
    const count = (record: NodeJS.ReadOnlyDict<unknown[]>) => Object.values(record).reduce((sum, list) => sum + (list?.length ?? 0), 0);
    return { http1Connections: count(this.agent.sockets), http1Idle: count(this.agent.freeSockets), http2Sessions: this.sessions.size };
  }

  close(): void {
    this.agent.destroy();
    for (const opening of this.sessions.values()) void opening.then((session) => session.destroy(), () => undefined);
    this.sessions.clear();
  }
}

/** Headers of one hop only (RFC 9110 §7.6.1), never forwarded; plus HTTP/2 pseudo-headers. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'http2-settings']);

/** Request or response headers to pass on: hop-by-hop headers (and those `Connection` names) and pseudo-headers removed. */
export function forwardableHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const connection = headers.connection;
  const named =
    connection === undefined
      ? undefined
      : new Set(
          String(connection)
            .split(',')
            .map((name) => name.trim().toLowerCase())
            .filter(Boolean),
        );
  const out: OutgoingHttpHeaders = {};
  // for-in (header objects have no enumerable inherited keys): no entries array per request.
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || name.charCodeAt(0) === 58 /* ':' */ || HOP_BY_HOP.has(name) || named?.has(name)) continue;
    out[name] = value;
  }
  // gRPC needs `te: trailers` end to end.
  if (headers.te === 'trailers') out.te = 'trailers';
  return out;
}
