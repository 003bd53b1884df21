/** The policy probe's log file as it grows: each read takes the bytes added since the last one. */
import { closeSync, openSync, readSync } from 'node:fs';
import { ProbeLogReader } from './events.js';

export class ProbeLogFile {
  readonly log = new ProbeLogReader();
  private offset = 0;

  constructor(readonly file: string) {}

  read(): ProbeLogReader {
    const fd = openSync(this.file, 'r');
    try {
      const chunk = Buffer.alloc(1 << 20);
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, this.offset);
        if (n <= 0) break;
        this.offset += n;
        // The probe writes ASCII only, so a chunk boundary never splits a character.
        this.log.push(chunk.toString('latin1', 0, n));
      }
    } finally {
      closeSync(fd);
    }
    return this.log;
  }
}
