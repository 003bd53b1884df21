// One HTTP/1.1 request relayed to an upstream tunnel, as the waypoint and the ingress both do: bodies streamed, bytes counted, a route's timeout and retries, a stale kept-alive connection retried once, failures answered as Envoy words them.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { HeaderOperations, Retry } from '../gen/ambit/route/route_pb.js';
import { forwardableHeaders, type HttpUpstreams, type TunnelTarget } from './upstream.js';

export const NO_HEALTHY_UPSTREAM = 'no healthy upstream';
export const UPSTREAM_FAILED = 'upstream connect error or disconnect/reset before headers';
export const UPSTREAM_TIMEOUT = 'upstream request timeout';

/** How a relayed request ended, with Envoy's response flags: `-`, `UF` (no upstream answer), `UC` (upstream cut mid-response), `DC` (client went away). */
export interface Http1Outcome {
  status: number;
  flags: string;
  requestBytes: number;
  responseBytes: number;
  /** Set when the upstream failed. */
  error?: Error & { code?: string };
}

export interface Http1Relay {
  upstreams: HttpUpstreams;
  tunnel: TunnelTarget;
  req: IncomingMessage;
  res: ServerResponse;
  /** Request headers to send (already filtered, with the proxy's own additions). */
  headers: OutgoingHttpHeaders;
  /** Called once, when the request is over either way. */
  onDone: (outcome: Http1Outcome) => void;
  /** The route's limits: the whole request (ms, 0 none) and its retries. */
  timeoutMs?: number;
  retry?: Retry;
  /** Where a retry goes (Envoy picks the endpoint again); default: the same tunnel. */
  nextTunnel?: () => TunnelTarget | undefined;
  responseHeaders?: HeaderOperations;
  /** The path (and query) sent upstream, when a rewrite changed it; default the request's. */
  path?: string;
  /**
   * An injected fault delay (ms): the request waits this long before anything is sent (the route's
   * timeout starts after it); a client that leaves meanwhile ends it as `DC`.
   */
  delayMs?: number;
}

/** Applies Istio's header operations (set, add, remove) to outgoing headers, in place. */
export function applyHeaderOperations(headers: OutgoingHttpHeaders, operations: HeaderOperations | undefined): OutgoingHttpHeaders {
  if (!operations) return headers;
  for (const [name, value] of Object.entries(operations.set)) headers[name] = value;
  for (const [name, value] of Object.entries(operations.add)) {
    const existing = headers[name];
    headers[name] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [String(existing)]), value];
  }
  for (const name of operations.remove) delete headers[name];
  return headers;
}

/** Whether a response status asks for a retry under Envoy's retry_on words. */
export function retriableStatus(status: number, retryOn: readonly string[]): boolean {
  for (const word of retryOn) {
    if (word === '5xx' && status >= 500) return true;
    if (word === 'gateway-error' && (status === 502 || status === 503 || status === 504)) return true;
    if (word === 'retriable-4xx' && status === 409) return true;
    if ((word === 'unavailable' || word === 'retriable-status-codes') && status === 503) return true;
    if (/^\d{3}$/.test(word) && Number(word) === status) return true;
  }
  return false;
}

/** Whether a failure before any response asks for a retry: a connection that could not be made or was reset. */
function retriableFailure(error: Error & { code?: string }, retryOn: readonly string[]): boolean {
  const reset = error.code === 'ECONNRESET' || error.code === 'EPIPE' || /socket hang up/.test(error.message);
  return retryOn.some((word) => word === '5xx' || word === 'gateway-error' || (word === 'reset' && reset) || (word === 'connect-failure' && !reset) || word === 'refused-stream' || word === 'unavailable' || word === 'cancelled');
}

/** Whether a request carries a body (Content-Length above 0 or Transfer-Encoding): most do not, and need no relay of it. */
export function hasRequestBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
}

/** Writes a small plain-text answer (403, 503…) unless a response is already under way, which is cut instead. */
export function answerPlain(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): number {
  if (res.headersSent) {
    res.destroy();
    return 0;
  }
  const length = Buffer.byteLength(body);
  res.writeHead(status, { ...headers, 'content-type': 'text/plain', 'content-length': length }).end(body);
  return length;
}

export function relayHttp1({ upstreams, tunnel, req, res, headers, onDone, timeoutMs = 0, retry, nextTunnel, responseHeaders, path = req.url ?? '/', delayMs = 0 }: Http1Relay): void {
  const method = req.method ?? 'GET';
  const withBody = hasRequestBody(req);
  const idempotent = method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
  // A body is streamed, not kept, so only requests without one are retried by the route's policy.
  let retriesLeft = retry && !withBody ? retry.attempts : 0;
  const retryOn = retry?.retryOn ?? [];
  let requestBytes = 0;
  let responseBytes = 0;
  if (withBody) req.on('data', (chunk: Buffer) => (requestBytes += chunk.length));
  let finished = false;
  let current: ReturnType<HttpUpstreams['http1']> | undefined;
  let overall: NodeJS.Timeout | undefined;
  const finish = (status: number, flags: string, error?: Error & { code?: string }) => {
    if (finished) return;
    finished = true;
    clearTimeout(overall);
    onDone({ status, flags, requestBytes, responseBytes, error });
  };
  const fail = (status: number, flags: string, body: string, error?: Error & { code?: string }) => {
    if (!res.headersSent) {
      responseBytes += answerPlain(res, status, body);
      finish(status, flags, error);
    } else {
      res.destroy();
      finish(res.statusCode, flags === 'UT' ? 'UT' : 'UC', error);
    }
  };
  // Set when the request waits out a fault delay first; a client leaving meanwhile cancels it.
  let delay: NodeJS.Timeout | undefined = undefined;
  res.once('close', () => {
    if (finished) return;
    clearTimeout(delay);
    current?.destroy();
    finish(0, 'DC');
  });
  const send = (target: TunnelTarget, firstTry: boolean, staleRetried: boolean) => {
    const upstream = upstreams.http1(target, { method, path, headers });
    current = upstream;
    let tryTimer: NodeJS.Timeout | undefined;
    let settled = false;
    const again = (): boolean => {
      if (retriesLeft <= 0 || finished || res.headersSent) return false;
      retriesLeft--;
      settled = true;
      clearTimeout(tryTimer);
      upstream.destroy();
      send(nextTunnel?.() ?? target, false, staleRetried);
      return true;
    };
    if (retry && retry.perTryTimeoutMs > 0) {
      tryTimer = setTimeout(() => {
        if (settled || finished) return;
        if (!again()) {
          settled = true;
          upstream.destroy();
          fail(504, 'UT', UPSTREAM_TIMEOUT);
        }
      }, retry.perTryTimeoutMs);
    }
    upstream.on('response', (response) => {
      if (settled || finished) return void response.resume();
      const status = response.statusCode ?? 502;
      if (retriableStatus(status, retryOn) && again()) return void response.resume();
      settled = true;
      clearTimeout(tryTimer);
      res.writeHead(status, applyHeaderOperations(forwardableHeaders(response.headers), responseHeaders));
      response.on('data', (chunk: Buffer) => (responseBytes += chunk.length));
      response.pipe(res);
      response.on('end', () => finish(status, '-'));
      response.on('error', () => res.destroy());
    });
    upstream.on('error', (error: Error & { code?: string }) => {
      if (settled || finished) return;
      // A kept-alive connection the upstream closed meanwhile: an idempotent request without a body is tried once more.
      if (!res.headersSent && !staleRetried && upstream.reusedSocket && idempotent && requestBytes === 0 && error.code === 'ECONNRESET') {
        settled = true;
        clearTimeout(tryTimer);
        send(target, false, true);
        return;
      }
      if (retriableFailure(error, retryOn) && again()) return;
      settled = true;
      clearTimeout(tryTimer);
      const reason = error.code === 'ECONNRESET' ? 'connection termination' : 'connection failure';
      fail(503, res.headersSent ? 'UC' : 'UF', `${UPSTREAM_FAILED}. reset reason: ${reason}`, error);
    });
    if (!firstTry) return void upstream.end();
    if (withBody) req.pipe(upstream);
    else {
      upstream.end();
      req.resume();
    }
  };
  const start = () => {
    if (timeoutMs > 0) {
      overall = setTimeout(() => {
        current?.destroy();
        fail(504, 'UT', UPSTREAM_TIMEOUT);
      }, timeoutMs);
    }
    send(tunnel, true, false);
  };
  if (delayMs <= 0) return start();
  req.pause();
  delay = setTimeout(start, delayMs);
}
