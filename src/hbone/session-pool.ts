// HTTP/2 sessions pooled by key with per-session stream limits, idle release and draining; the dialer makes the sessions.
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';

import type { Logger } from '../util/log.js';
import type { HboneMetrics } from './metrics.js';
import { awaitConnectResponse, errorText, HboneConnectError } from './client.js';

/** A session being established (or established) by a pool's dialer. */
export interface SessionHandle {
  /** Resolves with the HTTP/2 session once usable; rejects with an HboneConnectError. */
  ready: Promise<ClientHttp2Session>;
  /** Tears the connection down, established or not. */
  destroy(): void;
}

export interface SessionPoolOptions {
  log: Logger;
  metrics: HboneMetrics;
  maxStreamsPerSession: number;
  /** A session with no stream for this long is closed. */
  idleTimeoutMs: number;
  /** Each session carries one stream and closes after it (pooling off, for comparison). */
  singleUse?: boolean;
  /** A session older than this takes no new stream (it closes once its streams are done). */
  maxSessionAgeMs?: number;
  now?: () => number;
  /** Told the number of live sessions whenever it changes. */
  onSizeChange(count: number): void;
}

export interface PooledStreamRequest {
  /** Sessions are shared among requests with the same key. */
  key: string;
  /** Certificate a reused session must have been made with: after a renewal, old sessions take no new streams. */
  certChainPem: string;
  /** Starts a new session when none of the key has room. */
  dial(): SessionHandle;
  /** CONNECT request headers besides `:method` (`:authority` included). */
  headers: OutgoingHttpHeaders;
  /** Names the request in errors, e.g. `10.0.0.1:80 via 10.0.0.1`. */
  describe: string;
}

/** One HTTP/2 session in a pool and the streams it carries. */
class PooledSession {
  /** Streams open or about to be opened on this session. */
  streams = 0;
  /** False once the session must take no new stream (GOAWAY, error, renewed certificate, pool closing). */
  usable = true;
  /** Set once established. */
  session: ClientHttp2Session | undefined;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly createdAt: number,
    readonly key: string,
    readonly certChainPem: string,
    readonly handle: SessionHandle,
    private readonly maxStreams: number,
    private readonly singleUse: boolean,
  ) {}

  private get gone(): boolean {
    return this.session !== undefined && (this.session.closed || this.session.destroyed);
  }

  hasRoom(): boolean {
    const peerLimit = this.session?.remoteSettings?.maxConcurrentStreams ?? this.maxStreams;
    return this.usable && !this.gone && this.streams < Math.min(this.maxStreams, peerLimit);
  }

  reserve(): void {
    this.streams++;
    this.clearIdleTimer();
    if (this.singleUse) this.usable = false;
  }

  release(idleTimeoutMs: number): void {
    this.streams--;
    if (this.streams > 0) return;
    if (!this.usable || !this.session || this.gone) {
      this.retire();
      return;
    }
    this.clearIdleTimer();
    this.idleTimer = setTimeout(() => this.retire(), idleTimeoutMs);
    this.idleTimer.unref();
  }

  /** No new streams; close as soon as the current ones are done. */
  drain(): void {
    this.usable = false;
    if (this.streams === 0) this.retire();
  }

  retire(): void {
    this.usable = false;
    this.clearIdleTimer();
    if (!this.session) this.handle.destroy();
    else if (!this.gone) this.session.close();
  }

  clearIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}

/**
 * HTTP/2 sessions pooled by key, each carrying up to `maxStreamsPerSession` CONNECT streams and
 * closed after `idleTimeoutMs` without one. How a session is made is the dialer's business (TLS over
 * TCP for direct and outer HBONE, TLS over an outer stream for the inner tunnel of double HBONE).
 */
export class SessionPool {
  private readonly pools = new Map<string, PooledSession[]>();
  private closed = false;

  constructor(private readonly options: SessionPoolOptions) {}

  /** Opens a CONNECT stream; resolves with it once the server answered 200. */
  async open(request: PooledStreamRequest): Promise<ClientHttp2Stream> {
    try {
      return await this.attempt(request);
    } catch (error) {
      // A session can start closing (GOAWAY) between being picked and carrying the request; the
      // server did not process such a stream, so one more try on another session is safe.
      if (error instanceof HboneConnectError && error.retryable) return this.attempt(request);
      throw error;
    }
  }

  /** Live sessions (all keys), established or being established. */
  size(): number {
    let count = 0;
    for (const sessions of this.pools.values()) count += sessions.length;
    return count;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Stops taking streams and closes each session once its streams are done. */
  close(): void {
    this.closed = true;
    for (const sessions of this.pools.values()) for (const pooled of sessions) pooled.drain();
  }

  /** Closes every session now. */
  destroy(): void {
    this.closed = true;
    for (const sessions of [...this.pools.values()]) for (const pooled of sessions) pooled.handle.destroy();
  }

  private async attempt(request: PooledStreamRequest): Promise<ClientHttp2Stream> {
    if (this.closed) throw new HboneConnectError('HBONE pool is closed');
    const pooled = this.sessionFor(request);
    pooled.reserve();
    let stream: ClientHttp2Stream;
    try {
      const session = await pooled.handle.ready;
      stream = session.request({ ...request.headers, ':method': 'CONNECT' }, { endStream: false });
    } catch (error) {
      pooled.release(this.options.idleTimeoutMs);
      if (error instanceof HboneConnectError) throw error;
      throw new HboneConnectError(`HBONE session for ${request.describe} could not take a stream: ${errorText(error)}`, undefined, true);
    }
    stream.once('close', () => pooled.release(this.options.idleTimeoutMs));
    stream.on('error', (error) => this.options.log.debug({ request: request.describe, err: error.message }, 'outbound HBONE stream error'));
    await awaitConnectResponse(stream, request.describe, this.options.metrics);
    return stream;
  }

  private sessionFor(request: PooledStreamRequest): PooledSession {
    const sessions = this.pools.get(request.key) ?? [];
    const tooOld = this.options.maxSessionAgeMs === undefined ? -Infinity : (this.options.now ?? Date.now)() - this.options.maxSessionAgeMs;
    for (const pooled of sessions) {
      // A session made with a certificate that has since been renewed keeps its streams but gets no new ones.
      if (pooled.usable && pooled.certChainPem !== request.certChainPem) pooled.drain();
      else if (pooled.usable && pooled.createdAt < tooOld) pooled.drain();
    }
    return sessions.find((pooled) => pooled.hasRoom()) ?? this.add(request, sessions);
  }

  private add(request: PooledStreamRequest, sessions: PooledSession[]): PooledSession {
    const pooled = new PooledSession((this.options.now ?? Date.now)(), request.key, request.certChainPem, request.dial(), this.options.maxStreamsPerSession, this.options.singleUse ?? false);
    sessions.push(pooled);
    this.pools.set(request.key, sessions);
    this.options.onSizeChange(this.size());
    pooled.handle.ready.then(
      (session) => {
        pooled.session = session;
        session.on('goaway', () => {
          pooled.usable = false;
        });
        session.once('close', () => this.forget(pooled));
        if (session.closed || session.destroyed) this.forget(pooled);
        else if (!pooled.usable && pooled.streams === 0) pooled.retire();
      },
      () => this.forget(pooled),
    );
    return pooled;
  }

  private forget(pooled: PooledSession): void {
    pooled.usable = false;
    pooled.clearIdleTimer();
    const sessions = this.pools.get(pooled.key);
    if (!sessions?.includes(pooled)) return;
    const remaining = sessions.filter((candidate) => candidate !== pooled);
    if (remaining.length) this.pools.set(pooled.key, remaining);
    else this.pools.delete(pooled.key);
    this.options.onSizeChange(this.size());
  }
}
