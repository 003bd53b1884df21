/** What a failed Kubernetes API call means: its HTTP status, a short secret-free message, common cases. */
import { ApiException } from '@kubernetes/client-node';

/** The HTTP status of a failed API call (client-node's ApiException, or a watch error), if it has one. */
export function statusCode(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const candidate = err as { statusCode?: unknown; code?: unknown } | null | undefined;
  const code = candidate?.statusCode ?? candidate?.code;
  return typeof code === 'number' ? code : undefined;
}

export const isNotFound = (err: unknown): boolean => statusCode(err) === 404;
export const isConflict = (err: unknown): boolean => statusCode(err) === 409;
export const isGone = (err: unknown): boolean => statusCode(err) === 410;

/** A request that the client abandoned because the API server did not answer within its timeout. */
export function isRequestTimeout(err: unknown): boolean {
  const name = (err as { name?: unknown } | null | undefined)?.name;
  return err instanceof RequestTimeoutError || name === 'AbortError';
}

export class RequestTimeoutError extends Error {
  constructor(readonly what: string, readonly timeoutMs: number) {
    super(`${what}: no answer from the API server within ${formatSeconds(timeoutMs)}`);
    this.name = 'RequestTimeoutError';
  }
}

/**
 * `HTTP <status>: <the API server's message>` for API errors, the error's own message otherwise.
 * Only the Status message is taken from a response body, never the body itself (it may hold an object).
 */
export function errorMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const message = statusMessage(err.body);
    return `HTTP ${err.code}${message ? `: ${message}` : ''}`;
  }
  if (isRequestTimeout(err) && !(err instanceof RequestTimeoutError)) return 'no answer from the API server within the request timeout';
  return err instanceof Error ? err.message : String(err);
}

/** The `message` of a Kubernetes Status body, as client-node gives it (parsed, or a JSON string). */
export function statusMessage(body: unknown): string | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  const message = (parsed as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' && message !== '' ? message : undefined;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
