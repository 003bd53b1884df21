// One HTTP/1.1 request relayed to an upstream tunnel, as the waypoint and the ingress both do: bodies streamed, bytes counted, a stale kept-alive connection retried once, failures answered as Envoy words them.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { forwardableHeaders, type HttpUpstreams, type TunnelTarget } from './upstream.js';

export const NO_HEALTHY_UPSTREAM = 'no healthy upstream';
export const UPSTREAM_FAILED = 'upstream connect error or disconnect/reset before headers';

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
}

/** Whether a request carries a body (Content-Length above 0 or Transfer-Encoding): most do not, and need no relay of it. */
export function hasRequestBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
}

/** Writes a small plain-text answer (403, 503…) unless a response is already under way, which is cut instead. */
export function answerPlain(res: ServerResponse, status: number, body: string): number {
  if (res.headersSent) {
    res.destroy();
    return 0;
  }
  const length = Buffer.byteLength(body);
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': length }).end(body);
  return length;
}

export function relayHttp1({ upstreams, tunnel, req, res, headers, onDone }: Http1Relay): void {
  const method = req.method ?? 'GET';
  const path = req.url ?? '/';
  const withBody = hasRequestBody(req);
  const idempotent = method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
  let requestBytes = 0;
  let responseBytes = 0;
  if (withBody) req.on('data', (chunk: Buffer) => (requestBytes += chunk.length));
  let finished = false;
  const finish = (status: number, flags: string, error?: Error & { code?: string }) => {
    if (finished) return;
    finished = true;
    onDone({ status, flags, requestBytes, responseBytes, error });
  };
  const send = (firstTry: boolean) => {
    const upstream = upstreams.http1(tunnel, { method, path, headers });
    upstream.on('response', (response) => {
      res.writeHead(response.statusCode ?? 502, forwardableHeaders(response.headers));
      response.on('data', (chunk: Buffer) => (responseBytes += chunk.length));
      response.pipe(res);
      response.on('end', () => finish(response.statusCode ?? 502, '-'));
      response.on('error', () => res.destroy());
    });
    upstream.on('error', (error: Error & { code?: string }) => {
      if (finished) return;
      // A kept-alive connection the upstream closed meanwhile: an idempotent request without a body is tried once more.
      if (!res.headersSent && firstTry && upstream.reusedSocket && idempotent && requestBytes === 0 && error.code === 'ECONNRESET') {
        send(false);
        return;
      }
      if (!res.headersSent) {
        const reason = error.code === 'ECONNRESET' ? 'connection termination' : 'connection failure';
        responseBytes += answerPlain(res, 503, `${UPSTREAM_FAILED}. reset reason: ${reason}`);
        finish(503, 'UF', error);
      } else {
        res.destroy();
        finish(res.statusCode, 'UC', error);
      }
    });
    res.once('close', () => {
      if (finished) return;
      upstream.destroy();
      finish(0, 'DC');
    });
    if (!firstTry) return void upstream.end();
    if (withBody) req.pipe(upstream);
    else {
      upstream.end();
      req.resume();
    }
  };
  send(true);
}
