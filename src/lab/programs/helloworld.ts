// Istio samples/helloworld (src/app.py, a Flask app):
//   GET /hello  -> "Hello version: <SERVICE_VERSION>, instance: <HOSTNAME>\n"
//   GET /health -> "Helloworld is healthy"
// Flask answers text/html, 404/405 with its stock HTML pages, and OPTIONS with
// the allowed methods; the real /hello also burns a little CPU (used by the
// autoscaling demos), which is kept.

import os from 'node:os';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Env, Program, ProgramInstance } from './run.js';

const HTML = 'text/html; charset=utf-8';
const ALLOW = 'GET, HEAD, OPTIONS';

const NOT_FOUND =
  '<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n' +
  '<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n';
const METHOD_NOT_ALLOWED =
  '<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n' +
  '<p>The method is not allowed for the requested URL.</p>\n';

/** The real app's "cpu intensive computation": a million square roots. */
function burnCpu(): number {
  let x = 0.0001;
  for (let i = 0; i < 1_000_000; i++) x = x + Math.sqrt(x);
  return x;
}

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': HTML, 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function create(env: Env): ProgramInstance {
  // Python formats a missing SERVICE_VERSION as "None".
  const version = env.SERVICE_VERSION ?? 'None';
  const instance = env.HOSTNAME || os.hostname();

  const routes: Record<string, () => string> = {
    '/hello': () => {
      burnCpu();
      return `Hello version: ${version}, instance: ${instance}\n`;
    },
    '/health': () => 'Helloworld is healthy',
  };

  return {
    handle(req: IncomingMessage, res: ServerResponse) {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      const route = Object.prototype.hasOwnProperty.call(routes, path) ? routes[path] : undefined;
      if (route === undefined) return send(res, 404, NOT_FOUND);
      const method = req.method ?? 'GET';
      if (method === 'OPTIONS') return send(res, 200, '', { allow: ALLOW });
      if (method !== 'GET' && method !== 'HEAD') return send(res, 405, METHOD_NOT_ALLOWED, { allow: ALLOW });
      send(res, 200, route());
    },
  };
}

export const helloworld: Program = {
  description: "Istio samples/helloworld: GET /hello, GET /health (port 5000)",
  defaultPort: 5000,
  create,
};
