// Log lines at a bounded rate per key (token bucket), with the count of lines suppressed in between.
import type { Logger } from '../util/log.js';

export interface RateLimitedLogOptions {
  /** Lines a key may log at once after a quiet period. */
  burst?: number;
  /** Lines per second a key may log under a steady flood. */
  perSecond?: number;
  /** Most keys tracked; beyond that a shared overflow bucket is used. */
  maxKeys?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
  suppressed: number;
}

const OVERFLOW_KEY = '\u0000overflow';

/**
 * A flood of refused connections or streams must not become one log line per refusal: each key
 * (a refusal reason) logs its first `burst` lines, then at most `perSecond`; the next line that
 * passes carries `suppressed: N`, the lines dropped since the previous one.
 */
export class RateLimitedLog {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;
  private readonly perSecond: number;
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(
    private readonly log: Logger,
    options: RateLimitedLogOptions = {},
  ) {
    this.burst = options.burst ?? 20;
    this.perSecond = options.perSecond ?? 2;
    this.maxKeys = options.maxKeys ?? 64;
    this.now = options.now ?? Date.now;
  }

  info(key: string, fields: Record<string, unknown>, message: string): void {
    this.write('info', key, fields, message);
  }

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    this.write('warn', key, fields, message);
  }

  private write(level: 'info' | 'warn', key: string, fields: Record<string, unknown>, message: string): void {
    const bucket = this.bucketFor(key);
    const now = this.now();
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.updatedAt) / 1000) * this.perSecond);
    bucket.updatedAt = now;
    if (bucket.tokens < 1) {
      bucket.suppressed++;
      return;
    }
    bucket.tokens -= 1;
    const suppressed = bucket.suppressed;
    bucket.suppressed = 0;
    this.log[level](suppressed > 0 ? { ...fields, suppressed } : fields, message);
  }

  private bucketFor(key: string): Bucket {
    let bucket = this.buckets.get(key);
    if (bucket) return bucket;
    const slot = this.buckets.size < this.maxKeys ? key : OVERFLOW_KEY;
    bucket = this.buckets.get(slot);
    if (!bucket) {
      bucket = { tokens: this.burst, updatedAt: this.now(), suppressed: 0 };
      this.buckets.set(slot, bucket);
    }
    return bucket;
  }
}
