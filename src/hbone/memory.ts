// Returns malloc's free memory to the OS once a proxy has gone quiet after a burst of traffic.
import koffi from 'koffi';

import type { Logger } from '../util/log.js';
import { spliceActivity } from './io.js';

/** How often the proxy looks whether it has gone quiet. */
export const IDLE_CHECK_INTERVAL_MS = 15_000;

type MallocTrim = (pad: number) => number;
let mallocTrim: MallocTrim | null | undefined;

function loadMallocTrim(): MallocTrim | null {
  if (mallocTrim === undefined) {
    try {
      mallocTrim = koffi.load('libc.so.6').func('int malloc_trim(size_t pad)') as MallocTrim;
    } catch {
      // Not glibc (musl has no malloc_trim): nothing to do.
      mallocTrim = null;
    }
  }
  return mallocTrim;
}

/** True where malloc_trim exists (glibc). */
export function memoryReleaseAvailable(): boolean {
  return loadMallocTrim() !== null;
}

/**
 * Hands the memory glibc's malloc keeps after a burst of traffic back to the OS once the proxy has
 * been quiet for a while. Socket read buffers, TLS records and HTTP/2 frames come and go by the
 * thousand under load; freed, they stay in malloc's heap (its automatic trim only releases the very
 * top of the heap, above a threshold that grows with large allocations), and an idle ztunnel kept
 * tens of MiB it no longer used. malloc_trim(0) releases every free page.
 *
 * Quiet means: no spliced connection open now and none started since the previous check; the
 * release runs once after each busy period, never under load (it walks the heap: a few
 * milliseconds for tens of MiB).
 */
export class IdleMemoryRelease {
  private timer: NodeJS.Timeout | undefined;
  private lastStarted = spliceActivity.started;
  private releasedAt = spliceActivity.started;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = IDLE_CHECK_INTERVAL_MS,
  ) {}

  start(): void {
    if (this.timer || !loadMallocTrim()) return;
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private check(): void {
    const { started, open } = spliceActivity;
    const quiet = open === 0 && started === this.lastStarted;
    this.lastStarted = started;
    if (!quiet || started === this.releasedAt) return;
    this.releasedAt = started;
    const trim = loadMallocTrim();
    if (!trim) return;
    const before = process.memoryUsage.rss();
    const startedAt = process.hrtime.bigint();
    trim(0);
    const ms = Number(process.hrtime.bigint() - startedAt) / 1e6;
    this.log.debug({ releasedMiB: Math.round(((before - process.memoryUsage.rss()) / 2 ** 20) * 10) / 10, ms: Math.round(ms * 100) / 100 }, 'idle: returned free malloc memory to the OS');
  }
}
