/**
 * TokenReview with bounds: results cached briefly (keyed by a hash of the token, never the token),
 * identical reviews in flight shared, a bounded number at once with a bounded queue, each with a timeout.
 */
import { createHash } from 'node:crypto';
import { CaRequestError } from './errors.js';

/** What the API server said about a token (TokenReview status). */
export interface TokenReviewResult {
  authenticated: boolean;
  username?: string;
  extra?: Record<string, string[]>;
  /** `status.audiences`: the requested audiences the token is valid for. */
  audiences?: string[];
  error?: string;
}

/** Verifies a bearer token with the API server (TokenReview); aborts when `signal` fires. */
export interface TokenReviewer {
  review(token: string, audiences: string[], signal?: AbortSignal): Promise<TokenReviewResult>;
}

export interface BoundedReviewerOptions {
  /** How long an authenticated result is reused (capped by the token's own expiry). Default 30 s. */
  positiveTtlMs?: number;
  /** How long a rejection is reused. Default 5 s. */
  negativeTtlMs?: number;
  /** Cached results kept at most (oldest dropped first). Default 10,000. */
  maxEntries?: number;
  /** TokenReviews in flight at once. Default 16. */
  maxConcurrent?: number;
  /** Callers waiting for a free slot at most; more are refused at once. Default 256. */
  maxQueued?: number;
  /** Longest a TokenReview (queueing included) may take. Default 5 s. */
  timeoutMs?: number;
  now?: () => number;
}

interface CacheEntry {
  result: TokenReviewResult;
  expiresAt: number;
}

export class BoundedTokenReviewer implements TokenReviewer {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, Promise<TokenReviewResult>>();
  private readonly waiting: Array<() => void> = [];
  private active = 0;
  private readonly positiveTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly maxEntries: number;
  private readonly maxConcurrent: number;
  private readonly maxQueued: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  /** Reviews sent to the API server, for metrics and tests. */
  reviewsSent = 0;

  constructor(
    private readonly inner: TokenReviewer,
    options: BoundedReviewerOptions = {},
  ) {
    this.positiveTtlMs = options.positiveTtlMs ?? 30_000;
    this.negativeTtlMs = options.negativeTtlMs ?? 5_000;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.maxConcurrent = options.maxConcurrent ?? 16;
    this.maxQueued = options.maxQueued ?? 256;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.now = options.now ?? Date.now;
  }

  review(token: string, audiences: string[]): Promise<TokenReviewResult> {
    const key = createHash('sha256').update(audiences.join(',')).update('\n').update(token).digest('base64url');
    const cached = this.cache.get(key);
    if (cached && cached.expiresAt > this.now()) return Promise.resolve(cached.result);
    if (cached) this.cache.delete(key);
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    const review = this.reviewNow(token, audiences).then((result) => {
      this.remember(key, result, token);
      return result;
    });
    this.inFlight.set(key, review);
    const forget = () => this.inFlight.delete(key);
    review.then(forget, forget);
    return review;
  }

  /** Cached results now held (expired ones included until touched or evicted). */
  get cachedEntries(): number {
    return this.cache.size;
  }

  private async reviewNow(token: string, audiences: string[]): Promise<TokenReviewResult> {
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.timeoutMs);
    try {
      await this.acquire(deadline.signal);
      try {
        this.reviewsSent++;
        // Raced against the deadline too, so a reviewer that ignores the signal cannot hold the caller.
        return await Promise.race([this.inner.review(token, audiences, deadline.signal), rejectOnAbort(deadline.signal)]);
      } catch (err) {
        if (deadline.signal.aborted) throw new CaRequestError('token_review_failed', `TokenReview did not answer within ${this.timeoutMs / 1000} s`);
        throw err;
      } finally {
        this.release();
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private acquire(deadline: AbortSignal): Promise<void> {
    if (this.active < this.maxConcurrent) {
      this.active++;
      return Promise.resolve();
    }
    if (this.waiting.length >= this.maxQueued) {
      return Promise.reject(new CaRequestError('overloaded', `too many token reviews in progress (${this.maxConcurrent} running, ${this.maxQueued} waiting); retry later`));
    }
    return new Promise<void>((resolve, reject) => {
      const start = () => {
        deadline.removeEventListener('abort', giveUp);
        resolve();
      };
      const giveUp = () => {
        const index = this.waiting.indexOf(start);
        if (index >= 0) this.waiting.splice(index, 1);
        reject(new CaRequestError('overloaded', `no TokenReview slot became free within ${this.timeoutMs / 1000} s; retry later`));
      };
      deadline.addEventListener('abort', giveUp, { once: true });
      this.waiting.push(start);
    });
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next(); // the slot passes to the next caller
    else this.active--;
  }

  private remember(key: string, result: TokenReviewResult, token: string): void {
    let ttl = result.authenticated ? this.positiveTtlMs : this.negativeTtlMs;
    const expiry = result.authenticated ? jwtExpiryMs(token) : undefined;
    if (expiry !== undefined) ttl = Math.min(ttl, expiry - this.now());
    if (ttl <= 0) return;
    if (this.cache.size >= this.maxEntries) {
      const now = this.now();
      for (const [k, entry] of this.cache) if (entry.expiresAt <= now) this.cache.delete(k);
      while (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    }
    this.cache.set(key, { result, expiresAt: this.now() + ttl });
  }
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
}

/**
 * The payload of a JWT, decoded without verifying anything: only for refusing tokens early or
 * shortening a cache lifetime, never for accepting one (TokenReview decides that).
 */
export function unverifiedJwtPayload(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    return payload && typeof payload === 'object' && !Array.isArray(payload) ? (payload as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function jwtExpiryMs(token: string): number | undefined {
  const exp = unverifiedJwtPayload(token)?.exp;
  return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
}

/** Claim that only legacy, Secret-based service account tokens carry. */
export const LEGACY_SECRET_NAME_CLAIM = 'kubernetes.io/serviceaccount/secret.name';
