import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../../util/log.js';

export type Route = (req: IncomingMessage) => Promise<{ status: number; type: string; body: string }> | { status: number; type: string; body: string };

/** A small HTTP server for admin, metrics and readiness endpoints. Errors become 500s, never crashes. */
export function startHttpEndpoint(host: string, port: number, routes: Record<string, Route>, log: Logger): Promise<Server> {
  const server = createServer((req, res) => void handle(req, res));
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = routes[path];
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'text/plain', `method ${req.method} not allowed\n`);
      if (!route) return reply(res, 404, 'text/plain', `no such endpoint ${path}; try ${Object.keys(routes).join(', ')}\n`);
      const result = await route(req);
      reply(res, result.status, result.type, result.body);
    } catch (err) {
      log.error({ path, err: (err as Error).message }, 'admin endpoint failed');
      reply(res, 500, 'text/plain', `${(err as Error).message}\n`);
    }
  }
  server.on('clientError', (_err, socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function reply(res: ServerResponse, status: number, type: string, body: string): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

/**
 * A route answered only to clients on this host (debug and config dumps show the mesh's layout);
 * others get 403, whatever address the endpoint listens on.
 */
export function localOnly(route: Route): Route {
  return (req) => (LOOPBACK.test(req.socket.remoteAddress ?? '') ? route(req) : text('this endpoint answers only on localhost\n', 403));
}

export const json = (value: unknown, status = 200) => ({ status, type: 'application/json', body: `${JSON.stringify(value, null, 2)}\n` });
export const text = (body: string, status = 200) => ({ status, type: 'text/plain; charset=utf-8', body });
