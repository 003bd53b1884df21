// A plain Duplex over an HTTP/2 tunnel stream, so Node's HTTP/1 parser and agent can treat the tunnel as a socket.
import { Duplex } from 'node:stream';

/**
 * Wraps a tunnel stream (an HBONE CONNECT stream, or any Duplex) as something `http.Server` and
 * `http.Agent` accept as a socket: writes reach the tunnel as Buffers (an Http2Stream given the
 * latin1 strings Node's HTTP writer produces corrupts them), backpressure passes both ways, and the
 * socket calls HTTP makes (ref, unref, setKeepAlive, setNoDelay, setTimeout) are accepted.
 */
export class StreamSocket extends Duplex {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  private timer?: NodeJS.Timeout;
  private timeoutMs = 0;

  constructor(private readonly tunnel: Duplex, peer: { address?: string; port?: number } = {}) {
    super({ allowHalfOpen: true });
    this.remoteAddress = peer.address;
    this.remotePort = peer.port;
    tunnel.on('data', (chunk: Buffer) => {
      this.touch();
      if (!this.push(chunk)) tunnel.pause();
    });
    tunnel.on('end', () => this.push(null));
    tunnel.on('error', (error) => this.destroy(error));
    tunnel.on('close', () => {
      if (!this.destroyed) this.destroy();
    });
  }

  override _read(): void {
    this.tunnel.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.touch();
    this.tunnel.write(chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.touch();
    this.tunnel.write(Buffer.concat(chunks.map((c) => c.chunk)), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.tunnel.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.tunnel.destroy();
    callback(error);
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  setNoDelay(): this {
    return this;
  }

  /** The idle timeout in ms (0: none), as net.Socket has it; http.Agent compares it before setting it again. */
  get timeout(): number {
    return this.timeoutMs;
  }

  /**
   * Emits `timeout` after `ms` without traffic, as net.Socket does. 0 disables it and, as in
   * net.Socket, removes `callback` (http's client passes the listener it added per request).
   */
  setTimeout(ms: number, callback?: () => void): this {
    if (ms === 0) {
      if (callback) this.removeListener('timeout', callback);
      clearTimeout(this.timer);
      this.timer = undefined;
      this.timeoutMs = 0;
      return this;
    }
    if (callback) this.once('timeout', callback);
    if (this.timer && this.timeoutMs === ms) this.timer.refresh();
    else {
      clearTimeout(this.timer);
      this.timeoutMs = ms;
      if (!this.destroyed) {
        this.timer = setTimeout(() => this.emit('timeout'), ms);
        this.timer.unref();
      }
    }
    return this;
  }

  /** Traffic: the idle timer starts again (one timer per socket, re-armed, not one per chunk). */
  private touch(): void {
    this.timer?.refresh();
  }
}
