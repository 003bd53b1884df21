/** The one retry backoff of ambit: exponential from a first delay, capped, with downward jitter. */

export interface BackoffOptions {
  /** Delay before the first retry. */
  initialMs: number;
  /** No delay is ever longer than this. */
  maxMs: number;
  /**
   * Fraction of each delay taken off at random (0 = none, the default 0.2 gives 80–100 %), so that
   * many clients failing together do not retry together. The cap stays a cap.
   */
  jitter?: number;
  /** In [0, 1); tests pass a fixed one. */
  random?: () => number;
}

/** The delay before retry number `attempt` (1 for the first): initial·2^(attempt−1), capped, jittered. */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const { initialMs, maxMs, jitter = 0.2, random = Math.random } = options;
  // Past 2^30 every delay is the cap anyway; the bound keeps the power finite.
  const exponent = Math.min(Math.max(attempt, 1) - 1, 30);
  const base = Math.min(maxMs, initialMs * 2 ** exponent);
  return Math.round(base * (1 - Math.min(Math.max(jitter, 0), 1) * random()));
}

/** Consecutive failures of one thing, and the delay each one earns. */
export class Backoff {
  private failures = 0;

  constructor(private readonly options: BackoffOptions) {}

  /** Counts a failure; returns how long to wait before trying again. */
  next(): number {
    this.failures++;
    return backoffDelay(this.failures, this.options);
  }

  /** A success: the next failure waits the initial delay again. */
  reset(): void {
    this.failures = 0;
  }

  /** Failures since the last success. */
  get attempts(): number {
    return this.failures;
  }
}
