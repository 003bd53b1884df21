/**
 * Keys to reconcile, one at a time: a key added while queued is merged, a key added while being
 * worked on runs again afterwards, and a failed key is retried with exponential backoff (or at
 * once, when an event adds it again).
 */
import { backoffDelay } from '../../util/backoff.js';

export interface WorkQueueOptions {
  /** Told of each failure, before the retry after `delayMs`. */
  onError(key: string, err: unknown, attempt: number, delayMs: number): void;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class WorkQueue {
  private readonly pending = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly retries = new Map<string, NodeJS.Timeout>();
  private draining: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly work: (key: string) => Promise<void>,
    private readonly options: WorkQueueOptions,
  ) {}

  add(key: string): void {
    if (this.stopped) return;
    const retry = this.retries.get(key);
    if (retry) {
      clearTimeout(retry);
      this.retries.delete(key);
    }
    this.pending.add(key);
    this.kick();
  }

  private kick(): void {
    if (this.draining || this.stopped) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      // A key added between the end of the loop and this callback still runs.
      if (this.pending.size) this.kick();
    });
  }

  /** Nothing queued and nothing running (retries waiting on their timer do not count). */
  isIdle(): boolean {
    return !this.draining && this.pending.size === 0;
  }

  /** Resolves once the queue is idle. */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /** Stops taking and retrying keys; resolves when the key being worked on is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.pending.clear();
    for (const timer of this.retries.values()) clearTimeout(timer);
    this.retries.clear();
    await this.idle();
  }

  private async drain(): Promise<void> {
    while (!this.stopped && this.pending.size) {
      const key = this.pending.values().next().value as string;
      this.pending.delete(key);
      try {
        await this.work(key);
        this.failures.delete(key);
      } catch (err) {
        this.scheduleRetry(key, err);
      }
    }
  }

  private scheduleRetry(key: string, err: unknown): void {
    const attempt = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, attempt);
    const delayMs = backoffDelay(attempt, { initialMs: this.options.baseDelayMs ?? 500, maxMs: this.options.maxDelayMs ?? 60_000 });
    this.options.onError(key, err, attempt, delayMs);
    if (this.stopped || this.pending.has(key)) return;
    const timer = setTimeout(() => {
      this.retries.delete(key);
      this.add(key);
    }, delayMs);
    this.retries.set(key, timer);
  }
}
