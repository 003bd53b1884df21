// Istio's bookinfo sample: details (Ruby/WEBrick), ratings (Node), reviews
// (Java/Liberty, v1|v2|v3) and productpage (Python/Flask), with the same HTTP
// APIs, JSON shapes, backend calls, header propagation and failure messages as
// the images in samples/bookinfo/src.
//
// All four listen on $PORT (default 9080). Backends are reached the way the
// real apps do, http://<X_HOSTNAME or x>[.<SERVICES_DOMAIN>]:9080, except that
// X_SERVICE (DETAILS_SERVICE, REVIEWS_SERVICE, RATINGS_SERVICE), when set, is a
// full base URL that wins (e.g. http://127.0.0.1:41234; a trailing /details,
// /reviews or /ratings path is accepted too).

import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Env, Program, ProgramInstance } from './run.js';

// ---------------------------------------------------------------------------
// Shared plumbing

const JSON_TYPE = 'application/json';
const HTML_TYPE = 'text/html; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';
const BACKEND_PORT = 9080;
const MAX_BACKEND_BODY = 1 << 20;
const MAX_REQUEST_BODY = 1 << 16;

/**
 * Headers the bookinfo apps copy from the incoming request to their backend
 * calls (productpage's getForwardHeaders and reviews' headers_to_propagate),
 * plus W3C baggage and single-header b3.
 */
export const PROPAGATED_HEADERS = [
  'x-request-id',
  'x-ot-span-context',
  'x-datadog-trace-id',
  'x-datadog-parent-id',
  'x-datadog-sampling-priority',
  'traceparent',
  'tracestate',
  'baggage',
  'x-cloud-trace-context',
  'grpc-trace-bin',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
  'b3',
  'sw8',
  'end-user',
  'user-agent',
  'cookie',
  'authorization',
  'jwt',
] as const;

function propagatedHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PROPAGATED_HEADERS) {
    const value = req.headers[name];
    if (typeof value === 'string') out[name] = value;
    else if (Array.isArray(value) && value.length > 0) out[name] = value.join(', ');
  }
  return out;
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, JSON_TYPE, JSON.stringify(body));
}

function pathOf(req: IncomingMessage): string {
  try {
    return new URL(req.url ?? '/', 'http://localhost').pathname;
  } catch {
    return '/';
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BODY) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function isGet(req: IncomingMessage): boolean {
  return req.method === 'GET' || req.method === 'HEAD';
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function envFlag(value: string | undefined): boolean | undefined {
  return value === undefined ? undefined : value.trim().toLowerCase() === 'true';
}

export interface BackendResult {
  status: number;
  /** Parsed JSON body, or undefined when the body was not JSON. */
  body: unknown;
}

/**
 * GET a JSON resource over a keep-alive agent. Resolves null on connection
 * errors and on timeouts (the whole exchange must finish within timeoutMs).
 */
export function getJson(
  agents: Agents,
  url: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<BackendResult | null> {
  return new Promise((resolve) => {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      resolve(null);
      return;
    }
    const secure = target.protocol === 'https:';
    if (!secure && target.protocol !== 'http:') {
      resolve(null);
      return;
    }
    const request = secure ? https.request : http.request;
    const req = request(
      target,
      {
        method: 'GET',
        agent: secure ? agents.https : agents.http,
        headers: { accept: JSON_TYPE, ...headers },
        signal: AbortSignal.timeout(timeoutMs),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BACKEND_BODY) {
            req.destroy(new Error('backend response too large'));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            body = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', () => resolve(null));
        res.on('aborted', () => resolve(null));
      },
    );
    req.on('error', () => resolve(null));
    req.end();
  });
}

export interface Agents {
  http: http.Agent;
  https: https.Agent;
}

function createAgents(keepAlive = true): Agents {
  return {
    http: new http.Agent({ keepAlive, maxSockets: 64 }),
    https: new https.Agent({ keepAlive, maxSockets: 64 }),
  };
}

function destroyAgents(agents: Agents): void {
  agents.http.destroy();
  agents.https.destroy();
}

type Backend = 'details' | 'reviews' | 'ratings';

/** Base URL of a backend, as the real apps build it (see the header comment). */
export function backendBase(env: Env, backend: Backend): string {
  const upper = backend.toUpperCase();
  const override = env[`${upper}_SERVICE`];
  if (override) return override.replace(/\/+$/, '');
  let host = env[`${upper}_HOSTNAME`] || backend;
  if (env.SERVICES_DOMAIN) host += `.${env.SERVICES_DOMAIN}`;
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `http://${host}:${BACKEND_PORT}`;
}

/** <base>/<endpoint>/<id>, tolerating a base that already ends in /<endpoint>. */
export function backendUrl(base: string, endpoint: Backend, id: string): string {
  const trimmed = base.replace(/\/+$/, '');
  const prefix = trimmed.endsWith(`/${endpoint}`) ? trimmed : `${trimmed}/${endpoint}`;
  return `${prefix}/${encodeURIComponent(id)}`;
}

// ---------------------------------------------------------------------------
// details (details.rb)

export const DETAILS_BOOK = {
  author: 'William Shakespeare',
  year: 1595,
  type: 'paperback',
  pages: 200,
  publisher: 'PublisherA',
  language: 'English',
  'ISBN-10': '1234567890',
  'ISBN-13': '123-1234567890',
} as const;

function webrickNotFound(res: ServerResponse, path: string): void {
  const body =
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.0//EN">\n<HTML>\n  <HEAD><TITLE>Not Found</TITLE></HEAD>\n  <BODY>\n' +
    `    <H1>Not Found</H1>\n    \`${escapeHtml(path)}' not found.\n  </BODY>\n</HTML>\n`;
  send(res, 404, 'text/html; charset=ISO-8859-1', body);
}

function underMount(path: string, mount: string): boolean {
  return path === mount || path.startsWith(`${mount}/`);
}

export const details: Program = {
  description: 'bookinfo details: GET /details/<id>, GET /health (port 9080)',
  defaultPort: BACKEND_PORT,
  create(): ProgramInstance {
    return {
      handle(req, res) {
        const path = pathOf(req);
        if (underMount(path, '/health')) return sendJson(res, 200, { status: 'Details is healthy' });
        if (underMount(path, '/details')) {
          // Ruby: Integer(req.path.split('/')[-1]); split drops trailing empty parts.
          const last = path.split('/').filter((p) => p !== '').pop() ?? '';
          const id = /^[+-]?\d+$/.test(last) ? Number(last) : NaN;
          if (!Number.isSafeInteger(id)) return sendJson(res, 400, { error: 'please provide numeric product id' });
          return sendJson(res, 200, { id, ...DETAILS_BOOK });
        }
        webrickNotFound(res, path);
      },
    };
  },
};

// ---------------------------------------------------------------------------
// ratings (ratings.js)

export const DEFAULT_RATINGS = { Reviewer1: 5, Reviewer2: 4 } as const;

export const ratings: Program = {
  description: 'bookinfo ratings: GET|POST /ratings/<id>, GET /health (port 9080)',
  defaultPort: BACKEND_PORT,
  create(env): ProgramInstance {
    const version = env.SERVICE_VERSION ?? 'v1';
    const userAdded = new Map<number, { id: number; ratings: unknown }>();
    let unavailable = false;
    let healthy = true;
    const timers: NodeJS.Timeout[] = [];
    if (version === 'v-unavailable') {
      // Unavailable for a minute, every other minute.
      timers.push(setInterval(() => (unavailable = !unavailable), 60_000));
    }
    if (version === 'v-unhealthy') {
      // Unhealthy and unavailable for 15 minutes, every other 15 minutes.
      timers.push(
        setInterval(() => {
          healthy = !healthy;
          unavailable = !unavailable;
        }, 900_000),
      );
    }
    for (const t of timers) t.unref();
    const pending = new Set<NodeJS.Timeout>();

    const local = (id: number): unknown => userAdded.get(id) ?? { id, ratings: { ...DEFAULT_RATINGS } };
    const ok = (res: ServerResponse, id: number): void => sendJson(res, 200, local(id));
    const serviceUnavailable = (res: ServerResponse): void => sendJson(res, 503, { error: 'Service unavailable' });

    return {
      async handle(req, res) {
        const path = pathOf(req);
        if (path === '/health' && isGet(req)) {
          return healthy
            ? sendJson(res, 200, { status: 'Ratings is healthy' })
            : sendJson(res, 500, { status: 'Ratings is not healthy' });
        }
        if (!/^\/ratings\/[0-9]*/.test(path) || (req.method !== 'POST' && !isGet(req))) {
          return send(res, 404, TEXT_TYPE, 'Page not found');
        }
        const id = parseInt(path.split('/').pop() ?? '', 10);
        if (Number.isNaN(id)) return sendJson(res, 400, { error: 'please provide numeric product ID' });

        if (req.method === 'POST') {
          let posted: unknown;
          try {
            posted = JSON.parse(await readBody(req));
          } catch {
            return sendJson(res, 400, { error: 'please provide valid ratings JSON' });
          }
          userAdded.set(id, { id, ratings: posted });
          return ok(res, id);
        }

        if (version === 'v-faulty') {
          // Half of the requests fail.
          return Math.random() <= 0.5 ? serviceUnavailable(res) : ok(res, id);
        }
        if (version === 'v-delayed') {
          // Half of the requests take 7 s.
          if (Math.random() <= 0.5) {
            const t = setTimeout(() => {
              pending.delete(t);
              if (!res.destroyed) ok(res, id);
            }, 7000);
            pending.add(t);
            return;
          }
          return ok(res, id);
        }
        if ((version === 'v-unavailable' || version === 'v-unhealthy') && unavailable) return serviceUnavailable(res);
        // v1, and v2 (whose MongoDB/MySQL hold the same two ratings).
        ok(res, id);
      },
      close() {
        for (const t of [...timers, ...pending]) clearTimeout(t);
      },
    };
  },
};

// ---------------------------------------------------------------------------
// reviews (LibertyRestEndpoint.java)

export const REVIEW_TEXTS = {
  Reviewer1: 'An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!',
  Reviewer2: 'Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.',
} as const;

const RATINGS_UNAVAILABLE = 'Ratings service is currently unavailable';

export interface ReviewsConfig {
  version: string;
  ratingsEnabled: boolean;
  starColor: string;
  /** The Java client's connect/receive timeout: 10 s with black stars, 2.5 s otherwise. */
  ratingsTimeoutMs: number;
  podname: string;
  clustername: string;
  ratingsBase: string;
}

/**
 * The real images bake ENABLE_RATINGS and STAR_COLOR in per version (v1: no
 * ratings; v2: black; v3: red); explicit env values still win.
 */
export function reviewsConfig(env: Env): ReviewsConfig {
  const version = env.SERVICE_VERSION || 'v1';
  const ratingsEnabled = envFlag(env.ENABLE_RATINGS) ?? (version === 'v2' || version === 'v3');
  const starColor = env.STAR_COLOR || (version === 'v3' ? 'red' : 'black');
  return {
    version,
    ratingsEnabled,
    starColor,
    ratingsTimeoutMs: starColor === 'black' ? 10_000 : 2_500,
    podname: env.HOSTNAME || os.hostname(),
    // Java concatenates a missing CLUSTER_NAME as "null".
    clustername: env.CLUSTER_NAME ?? 'null',
    ratingsBase: backendBase(env, 'ratings'),
  };
}

/** JAX-RS @PathParam int: a 32-bit integer, or the route does not match. */
function javaInt(segment: string): number | undefined {
  if (!/^[+-]?\d+$/.test(segment)) return undefined;
  const n = Number(segment);
  return n >= -2147483648 && n <= 2147483647 ? n : undefined;
}

export const reviews: Program = {
  description: 'bookinfo reviews (SERVICE_VERSION v1|v2|v3): GET /reviews/<id>, GET /health (port 9080)',
  defaultPort: BACKEND_PORT,
  create(env): ProgramInstance {
    const cfg = reviewsConfig(env);
    const agents = createAgents();

    const starsFrom = async (id: number, req: IncomingMessage): Promise<[number, number]> => {
      const result = await getJson(agents, backendUrl(cfg.ratingsBase, 'ratings', String(id)), propagatedHeaders(req), cfg.ratingsTimeoutMs);
      if (result === null || result.status !== 200) {
        process.stderr.write(
          `reviews: unable to contact ${cfg.ratingsBase}/ratings: ${result === null ? 'connection failed or timed out' : `status ${result.status}`}\n`,
        );
        return [-1, -1];
      }
      const r = record(record(result.body)?.ratings);
      const stars = (v: unknown): number => (typeof v === 'number' && Number.isInteger(v) ? v : -1);
      return [stars(r?.Reviewer1), stars(r?.Reviewer2)];
    };

    const review = (reviewer: keyof typeof REVIEW_TEXTS, stars: number): Record<string, unknown> => {
      const out: Record<string, unknown> = { reviewer, text: REVIEW_TEXTS[reviewer] };
      if (cfg.ratingsEnabled) out.rating = stars !== -1 ? { stars, color: cfg.starColor } : { error: RATINGS_UNAVAILABLE };
      return out;
    };

    return {
      async handle(req, res) {
        const path = pathOf(req);
        const parts = path.split('/').filter((p) => p !== '');
        const isHealth = parts.length === 1 && parts[0] === 'health';
        const id = parts.length === 2 && parts[0] === 'reviews' ? javaInt(parts[1] ?? '') : undefined;
        if (!isHealth && id === undefined) return send(res, 404, TEXT_TYPE, `Error 404: ${path} not found\n`);
        if (!isGet(req)) return send(res, 405, TEXT_TYPE, 'Error 405: Method Not Allowed\n', { allow: 'GET, HEAD, OPTIONS' });
        if (isHealth) return sendJson(res, 200, { status: 'Reviews is healthy' });

        const productId = id ?? 0;
        const [s1, s2] = cfg.ratingsEnabled ? await starsFrom(productId, req) : [-1, -1];
        sendJson(res, 200, {
          id: String(productId),
          podname: cfg.podname,
          clustername: cfg.clustername,
          reviews: [review('Reviewer1', s1), review('Reviewer2', s2)],
        });
      },
      close() {
        destroyAgents(agents);
      },
    };
  },
};

// ---------------------------------------------------------------------------
// productpage (productpage.py + templates)

export const PRODUCTS = [
  {
    id: 0,
    title: 'The Comedy of Errors',
    descriptionHtml:
      '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: The Comedy of Errors is one of ' +
      "<b>William Shakespeare's</b> early plays. It is his shortest and one of his most farcical comedies, with a major part " +
      'of the humour coming from slapstick and mistaken identity, in addition to puns and word play.',
  },
] as const;

export const DETAILS_UNAVAILABLE = 'Sorry, product details are currently unavailable for this book.';
export const REVIEWS_UNAVAILABLE = 'Sorry, product reviews are currently unavailable for this book.';
export const PRODUCT_RATINGS_UNAVAILABLE = 'Sorry, product ratings are currently unavailable for this book.';

const PRODUCTPAGE_TIMEOUT_MS = 3000;
const USER_COOKIE = 'user';

function escapeHtml(value: unknown): string {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&#34;')
    .replace(/'/g, '&#39;');
}

function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      out.set(name, decodeURIComponent(value));
    } catch {
      out.set(name, value);
    }
  }
  return out;
}

function flaskNotFound(res: ServerResponse): void {
  send(
    res,
    404,
    HTML_TYPE,
    '<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n' +
      '<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n',
  );
}

function flaskMethodNotAllowed(res: ServerResponse, allow: string): void {
  send(
    res,
    405,
    HTML_TYPE,
    '<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n' +
      '<p>The method is not allowed for the requested URL.</p>\n',
    { allow },
  );
}

const PAGE_STYLE = `
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #333; }
.navbar { background: #222; color: #9d9d9d; padding: 12px 24px; display: flex; justify-content: space-between; align-items: center; }
.navbar a, .navbar-brand { color: #ddd; text-decoration: none; font-size: 18px; }
.container-fluid { padding: 0 24px; }
.row { display: flex; flex-wrap: wrap; gap: 24px; }
.col-md-12 { flex: 1 1 100%; }
.col-md-6 { flex: 1 1 40%; }
.text-center { text-align: center; }
.text-primary { color: #337ab7; }
blockquote { border-left: 5px solid #eee; margin: 0 0 16px; padding: 8px 16px; }
blockquote small { display: block; color: #777; }
dt { font-weight: bold; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
.glyphicon { font-style: normal; }
`;

function layout(title: string, body: string): string {
  return (
    '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n' +
    '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n' +
    `<title>${escapeHtml(title)}</title>\n<style>${PAGE_STYLE}</style>\n</head>\n<body>\n${body}\n</body>\n</html>\n`
  );
}

function navbar(user: string): string {
  const session = user
    ? `<p class="navbar-text navbar-right"><span>${escapeHtml(user)} ( <a href="logout">sign out</a> )</span></p>`
    : '<form method="post" action="login" name="login_form" class="navbar-right">' +
      '<input type="text" name="username" placeholder="User Name"> ' +
      '<input type="password" name="passwd" placeholder="Password"> ' +
      '<button type="submit">Sign in</button></form>';
  return `<nav class="navbar"><a class="navbar-brand" href="#">BookInfo Sample</a>${session}</nav>`;
}

function renderDetails(status: number, body: unknown): string {
  const d = record(body);
  if (status === 200 && d) {
    const row = (label: string, key: string): string => `  <dt>${label}:</dt>${escapeHtml(d[key] ?? '')}\n`;
    return (
      '<h4 class="text-center text-primary">Book Details</h4>\n<dl>\n' +
      row('Type', 'type') +
      row('Pages', 'pages') +
      row('Publisher', 'publisher') +
      row('Language', 'language') +
      row('ISBN-10', 'ISBN-10') +
      row('ISBN-13', 'ISBN-13') +
      '</dl>'
    );
  }
  const error = d?.error;
  return `<h4 class="text-center text-primary">Error fetching product details!</h4>\n${error ? `<p>${escapeHtml(error)}</p>` : ''}`;
}

function renderStars(rating: Record<string, unknown>): string {
  const stars = rating.stars;
  if (typeof stars === 'number' && stars) {
    const full = Math.max(0, Math.min(5, Math.trunc(stars)));
    const spans =
      '<span class="glyphicon glyphicon-star">&#9733;</span>'.repeat(full) +
      '<span class="glyphicon glyphicon-star-empty">&#9734;</span>'.repeat(5 - full);
    return `<font color="${escapeHtml(rating.color ?? 'black')}">\n  ${spans}\n</font>`;
  }
  if (rating.error) return `<p><i>${escapeHtml(rating.error)}</i></p>`;
  return '';
}

function renderReviews(status: number, body: unknown): string {
  const r = record(body);
  if (status === 200 && r) {
    const items = Array.isArray(r.reviews) ? r.reviews : [];
    const quotes = items.map((item) => {
      const rev = record(item) ?? {};
      const rating = record(rev.rating);
      return (
        `<blockquote>\n  <p>${escapeHtml(rev.text ?? '')}</p>\n  <small>${escapeHtml(rev.reviewer ?? '')}</small>\n` +
        (rating ? `  ${renderStars(rating)}\n` : '') +
        '</blockquote>'
      );
    });
    let servedBy = '';
    if (r.podname) {
      const cluster = r.clustername && r.clustername !== 'null' ? ` on cluster <u>${escapeHtml(r.clustername)}</u>` : '';
      servedBy = `\n<dl>\n  <dt>Reviews served by:</dt>\n  <u>${escapeHtml(r.podname)}</u>${cluster}\n</dl>`;
    }
    return `<h4 class="text-center text-primary">Book Reviews</h4>\n${quotes.join('\n')}${servedBy}`;
  }
  const error = r?.error;
  return `<h4 class="text-center text-primary">Error fetching product reviews!</h4>\n${error ? `<p>${escapeHtml(error)}</p>` : ''}`;
}

function renderProductPage(
  user: string,
  product: (typeof PRODUCTS)[number] | undefined,
  detailsStatus: number,
  detailsBody: unknown,
  reviewsStatus: number,
  reviewsBody: unknown,
): string {
  const summary = product
    ? `<h3 class="text-center text-primary">${escapeHtml(product.title)}</h3>\n<p>Summary: ${product.descriptionHtml}</p>`
    : '';
  return layout(
    'Simple Bookstore App',
    `${navbar(user)}\n<div class="container-fluid">\n<div class="row">\n<div class="col-md-12">\n${summary}\n</div>\n</div>\n` +
      `<div class="row">\n<div class="col-md-6">\n${renderDetails(detailsStatus, detailsBody)}\n</div>\n` +
      `<div class="col-md-6">\n${renderReviews(reviewsStatus, reviewsBody)}\n</div>\n</div>\n</div>`,
  );
}

function renderIndex(services: Record<string, unknown>): string {
  const table = (value: unknown): string => {
    if (Array.isArray(value)) return value.length ? `<ul>${value.map((v) => `<li>${table(v)}</li>`).join('')}</ul>` : '';
    const rec = record(value);
    if (rec) {
      const rows = Object.entries(rec).map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${table(v)}</td></tr>`);
      return `<table class="table table-condensed table-bordered table-hover">${rows.join('')}</table>`;
    }
    return escapeHtml(value);
  };
  return layout(
    'Simple Bookstore App',
    '<div class="container-fluid">\n<h3>Hello! This is a simple bookstore application consisting of three services as shown below</h3>\n' +
      `${table(services)}\n<p>Click on one of the links below to auto generate a request to the backend as a real user or a tester</p>\n` +
      '<p><a href="productpage?u=normal">Normal user</a></p>\n<p><a href="productpage?u=test">Test user</a></p>\n</div>',
  );
}

export const productpage: Program = {
  description: 'bookinfo productpage: GET /productpage, /, /health, /api/v1/products[/<id>[/reviews|/ratings]] (port 9080)',
  defaultPort: BACKEND_PORT,
  create(env): ProgramInstance {
    // Istio's productpage (Python requests without a session) opens a new connection per call: L4 balancing then cycles reviews versions across page loads.
    const agents = createAgents(false);
    const detailsBase = backendBase(env, 'details');
    const reviewsBase = backendBase(env, 'reviews');
    const ratingsBase = backendBase(env, 'ratings');
    const ratingsNode = { name: ratingsBase, endpoint: 'ratings', children: [] };
    const detailsNode = { name: detailsBase, endpoint: 'details', children: [] };
    const reviewsNode = { name: reviewsBase, endpoint: 'reviews', children: [ratingsNode] };
    const serviceTree = { name: detailsBase, endpoint: 'details', children: [detailsNode, reviewsNode] };

    const forwardHeaders = (req: IncomingMessage): Record<string, string> => {
      const headers = propagatedHeaders(req);
      const user = cookies(req).get(USER_COOKIE);
      if (user) headers['end-user'] = user;
      return headers;
    };

    const fetchOrError = async (url: string, headers: Record<string, string>, attempts: number, error: string): Promise<BackendResult> => {
      let result: BackendResult | null = null;
      for (let i = 0; i < attempts; i++) {
        result = await getJson(agents, url, headers, PRODUCTPAGE_TIMEOUT_MS);
        if (result !== null && result.status === 200 && result.body !== undefined) return result;
      }
      const status = result !== null && result.status && result.status !== 200 ? result.status : 500;
      return { status, body: { error } };
    };

    const getDetails = (id: string, headers: Record<string, string>): Promise<BackendResult> =>
      fetchOrError(backendUrl(detailsBase, 'details', id), headers, 1, DETAILS_UNAVAILABLE);
    // The real app tries reviews twice ("bug introduced explicitly for illustration in fault injection task").
    const getReviews = (id: string, headers: Record<string, string>): Promise<BackendResult> =>
      fetchOrError(backendUrl(reviewsBase, 'reviews', id), headers, 2, REVIEWS_UNAVAILABLE);
    const getRatings = (id: string, headers: Record<string, string>): Promise<BackendResult> =>
      fetchOrError(backendUrl(ratingsBase, 'ratings', id), headers, 1, PRODUCT_RATINGS_UNAVAILABLE);

    const redirectBack = (req: IncomingMessage, res: ServerResponse, cookie: string): void => {
      const location = req.headers.referer || 'productpage';
      res.writeHead(302, { location, 'set-cookie': cookie, 'content-type': HTML_TYPE, 'content-length': 0 });
      res.end();
    };

    return {
      async handle(req, res) {
        const path = pathOf(req);
        const get = isGet(req);

        if (path === '/login') {
          if (req.method !== 'POST') return flaskMethodNotAllowed(res, 'OPTIONS, POST');
          const form = new URLSearchParams(await readBody(req));
          const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
          const user = form.get('username') ?? query.get('username') ?? '';
          return redirectBack(req, res, `${USER_COOKIE}=${encodeURIComponent(user)}; Path=/; HttpOnly`);
        }

        const api = /^\/api\/v1\/products(?:\/([^/]+)(?:\/(reviews|ratings))?)?$/.exec(path);
        const known = path === '/' || path === '/index.html' || path === '/health' || path === '/logout' || path === '/productpage' || api !== null;
        if (!known) return flaskNotFound(res);
        if (!get) return flaskMethodNotAllowed(res, 'GET, HEAD, OPTIONS');

        if (path === '/' || path === '/index.html') return send(res, 200, HTML_TYPE, renderIndex(serviceTree));
        if (path === '/health') return sendJson(res, 200, { status: 'Productpage is healthy' });
        if (path === '/logout') {
          return redirectBack(req, res, `${USER_COOKIE}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly`);
        }

        if (path === '/productpage') {
          const productId = 0;
          const headers = forwardHeaders(req);
          const user = cookies(req).get(USER_COOKIE) ?? '';
          const [d, r] = await Promise.all([getDetails(String(productId), headers), getReviews(String(productId), headers)]);
          return send(res, 200, HTML_TYPE, renderProductPage(user, PRODUCTS[productId], d.status, d.body, r.status, r.body));
        }

        if (api) {
          const [, rawId, sub] = api;
          if (rawId === undefined) return sendJson(res, 200, PRODUCTS);
          let id: string;
          try {
            id = decodeURIComponent(rawId);
          } catch {
            id = rawId;
          }
          const headers = forwardHeaders(req);
          const result =
            sub === 'reviews' ? await getReviews(id, headers) : sub === 'ratings' ? await getRatings(id, headers) : await getDetails(id, headers);
          return sendJson(res, result.status, result.body);
        }
      },
      close() {
        destroyAgents(agents);
      },
    };
  },
};
