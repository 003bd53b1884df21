/** DNS over TCP framing: every message is preceded by its length as a 2-byte big-endian integer. */

export function frame(msg: Buffer): Buffer {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(msg.length);
  return Buffer.concat([prefix, msg]);
}

/** Reassembles length-prefixed messages from a TCP byte stream. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  /** Adds received bytes; returns the messages they complete, in order. */
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const frames: Buffer[] = [];
    while (this.buf.length >= 2) {
      const len = this.buf.readUInt16BE(0);
      if (this.buf.length < 2 + len) break;
      frames.push(this.buf.subarray(2, 2 + len));
      this.buf = this.buf.subarray(2 + len);
    }
    // Copy a small remainder so it does not pin a large chunk in memory.
    if (this.buf.length > 0 && this.buf.byteOffset !== 0) this.buf = Buffer.from(this.buf);
    return frames;
  }
}
