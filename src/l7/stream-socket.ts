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

  /** Emits `timeout` after `ms` without traffic, as net.Socket does (0 disables). */
  setTimeout(ms: number, callback?: () => void): this {
    this.timeoutMs = ms;
    if (callback) this.once('timeout', callback);
    this.touch();
    return this;
  }

  private touch(): void {
    clearTimeout(this.timer);
    if (this.timeoutMs > 0 && !this.destroyed) {
      this.timer = setTimeout(() => this.emit('timeout'), this.timeoutMs);
      this.timer.unref();
    }
  }
}
