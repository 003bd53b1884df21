// Tests for the lab's built-in programs (src/lab/programs): each is started for
// real, as a child process through run.ts or in-process through startProgram,
// on an ephemeral port on 127.0.0.1, and exercised over HTTP.
//
//   node --import tsx --test test/lab-programs.test.ts

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { startProgram, type ProgramName, type RunningProgram } from '../src/lab/programs/run.js';

const RUN_TS = fileURLToPath(new URL('../src/lab/programs/run.ts', import.meta.url));
const LOOPBACK = '127.0.0.1';

const REVIEW1 = 'An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!';
const REVIEW2 = 'Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.';
const DETAILS_SORRY = 'Sorry, product details are currently unavailable for this book.';
const REVIEWS_SORRY = 'Sorry, product reviews are currently unavailable for this book.';

// Variables the programs read; cleared from the inherited environment so the tests are hermetic.
const PROGRAM_ENV = [
  'PORT',
  'BIND_ADDRESS',
  'SERVICE_VERSION',
  'HOSTNAME',
  'CLUSTER_NAME',
  'ENABLE_RATINGS',
  'STAR_COLOR',
  'SERVICES_DOMAIN',
  'DETAILS_HOSTNAME',
  'REVIEWS_HOSTNAME',
  'RATINGS_HOSTNAME',
  'DETAILS_SERVICE',
  'REVIEWS_SERVICE',
  'RATINGS_SERVICE',
];

// ---------------------------------------------------------------------------
// Helpers

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Proc {
  child: ChildProcess;
  url: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<Exit>;
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

const children = new Set<ChildProcess>();
const inProcess = new Set<RunningProgram>();
const helperServers = new Set<http.Server>();

after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all([...inProcess].map((p) => p.close()));
  for (const s of helperServers) {
    s.closeAllConnections();
    s.close();
  }
});

function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const k of PROGRAM_ENV) delete base[k];
  return { ...base, BIND_ADDRESS: LOOPBACK, PORT: '0', ...env };
}

function runChild(args: string[], env: Record<string, string> = {}): { child: ChildProcess; out: { stdout: string; stderr: string }; exited: Promise<Exit> } {
  const child = spawn(process.execPath, ['--import', 'tsx', RUN_TS, ...args], {
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const out = { stdout: '', stderr: '' };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, out, exited };
}

/** Start `run.ts <name>` on an ephemeral loopback port and wait for its "listening on" line. */
async function spawnProgram(name: ProgramName, env: Record<string, string> = {}): Promise<Proc> {
  const { child, out, exited } = runChild([name], env);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${out.stdout}${out.stderr}`)), 30_000);
    const check = (): void => {
      const m = /listening on (http:\/\/\S+)/.exec(out.stdout);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout?.on('data', check);
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${e.code ?? e.signal}) before listening:\n${out.stdout}${out.stderr}`));
    });
  });
  return {
    child,
    url,
    stdout: () => out.stdout,
    stderr: () => out.stderr,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

async function startInProcess(name: ProgramName, env: Record<string, string> = {}, log: string[] = []): Promise<RunningProgram> {
  const running = await startProgram(name, { env, port: 0, host: LOOPBACK, log: (line) => log.push(line) });
  inProcess.add(running);
  return running;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string; agent?: http.Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(20_000, () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; json: unknown; headers: http.IncomingHttpHeaders }> {
  const r = await request(url, { headers });
  return { status: r.status, json: JSON.parse(r.body) as unknown, headers: r.headers };
}

async function listen(server: http.Server): Promise<string> {
  helperServers.add(server);
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  return `http://${LOOPBACK}:${(server.address() as AddressInfo).port}`;
}

/** A loopback URL on which nothing listens (connections are refused). */
async function deadUrl(): Promise<string> {
  const server = http.createServer();
  const url = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  helperServers.delete(server);
  return url;
}

interface Recorded {
  url: string;
  headers: http.IncomingHttpHeaders;
}

/** A fake backend that records requests and answers with respond(path). */
async function recorder(respond: (path: string) => unknown): Promise<{ url: string; seen: Recorded[] }> {
  const seen: Recorded[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    const body = JSON.stringify(respond(req.url ?? ''));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  return { url: await listen(server), seen };
}

/** Poll until a process's output matches (access-log lines are written once a response has gone out). */
async function eventually(output: () => string, pattern: RegExp, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(output())) {
    if (Date.now() > deadline) assert.fail(`output never matched ${pattern}:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

const TRACE_HEADERS = {
  'x-request-id': 'req-123',
  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
  tracestate: 'vendor=opaque',
  baggage: 'tenant=acme',
  b3: '4bf92f3577b34da6-00f067aa0ba902b7-1',
  'x-b3-traceid': '4bf92f3577b34da6',
  'x-b3-spanid': '00f067aa0ba902b7',
  'x-b3-sampled': '1',
  'user-agent': 'lab-test/1.0',
};

// ---------------------------------------------------------------------------

describe('run.ts', () => {
  test('unknown program: names it, lists the known ones, exits 2', async () => {
    const { out, exited } = runChild(['no-such-program']);
    const exit = await exited;
    assert.equal(exit.code, 2);
    assert.match(out.stderr, /unknown program "no-such-program"/);
    for (const name of ['helloworld', 'bookinfo-details', 'bookinfo-ratings', 'bookinfo-reviews', 'bookinfo-productpage']) {
      assert.ok(out.stderr.includes(name), `stderr lists ${name}: ${out.stderr}`);
    }
    assert.equal(out.stdout, '');
  });

  test('missing program name exits 2 with usage', async () => {
    const { out, exited } = runChild([]);
    assert.equal((await exited).code, 2);
    assert.match(out.stderr, /missing program name/);
    assert.match(out.stderr, /bookinfo-productpage/);
  });

  test('invalid PORT exits 1', async () => {
    const { out, exited } = runChild(['helloworld'], { PORT: 'eighty' });
    assert.equal((await exited).code, 1);
    assert.match(out.stderr, /invalid PORT/);
  });

  test('SIGINT also stops the server with exit 0', async () => {
    const p = await spawnProgram('bookinfo-details');
    assert.equal((await request(`${p.url}/health`)).status, 200);
    assert.deepEqual(await p.stop('SIGINT'), { code: 0, signal: null });
  });

  test('SIGTERM with an idle keep-alive connection open exits 0 promptly', async () => {
    const p = await spawnProgram('bookinfo-ratings');
    const agent = new http.Agent({ keepAlive: true });
    try {
      assert.equal((await request(`${p.url}/ratings/1`, { agent })).status, 200);
      const started = Date.now();
      assert.deepEqual(await p.stop(), { code: 0, signal: null });
      assert.ok(Date.now() - started < 1500, `took ${Date.now() - started}ms`);
    } finally {
      agent.destroy();
    }
  });
});

describe('helloworld', () => {
  test('GET /hello, /health, 404, 405; access log; SIGTERM exits 0', async () => {
    const p = await spawnProgram('helloworld', { SERVICE_VERSION: 'v2', HOSTNAME: 'helloworld-v2-abc12' });
    assert.match(p.url, /^http:\/\/127\.0\.0\.1:\d+$/);

    const hello = await request(`${p.url}/hello`);
    assert.equal(hello.status, 200);
    assert.equal(hello.body, 'Hello version: v2, instance: helloworld-v2-abc12\n');
    assert.match(String(hello.headers['content-type']), /^text\/html/);

    const health = await request(`${p.url}/health`);
    assert.equal(health.status, 200);
    assert.equal(health.body, 'Helloworld is healthy');

    assert.equal((await request(`${p.url}/`)).status, 404);
    assert.equal((await request(`${p.url}/hello/`)).status, 404);
    const post = await request(`${p.url}/hello`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD, OPTIONS');

    assert.deepEqual(await p.stop(), { code: 0, signal: null });
    assert.match(p.stdout(), /^GET \/hello 200 /m);
    assert.match(p.stdout(), /^GET \/health 200 /m);
    assert.match(p.stdout(), /^GET \/ 404 /m);
    assert.match(p.stdout(), /^POST \/hello 405 /m);
  });

  test('in-process: PORT default 5000 is overridable, HOSTNAME falls back to os.hostname()', async () => {
    const log: string[] = [];
    const hw = await startInProcess('helloworld', {}, log);
    assert.equal(hw.host, LOOPBACK);
    const hello = await request(`${hw.url}/hello`);
    assert.equal(hello.body, `Hello version: None, instance: ${os.hostname()}\n`);
    await hw.close();
    assert.equal(log.length, 1);
    assert.match(log[0] ?? '', /^GET \/hello 200 [\d.]+ms 127\.0\.0\.1$/);
  });
});

describe('bookinfo details and ratings', () => {
  test('details: /details/<id>, bad id, /health', async () => {
    const p = await spawnProgram('bookinfo-details');
    const d = await getJson(`${p.url}/details/7`);
    assert.equal(d.status, 200);
    assert.equal(d.headers['content-type'], 'application/json');
    assert.deepEqual(d.json, {
      id: 7,
      author: 'William Shakespeare',
      year: 1595,
      type: 'paperback',
      pages: 200,
      publisher: 'PublisherA',
      language: 'English',
      'ISBN-10': '1234567890',
      'ISBN-13': '123-1234567890',
    });
    assert.deepEqual(Object.keys(d.json as object), ['id', 'author', 'year', 'type', 'pages', 'publisher', 'language', 'ISBN-10', 'ISBN-13']);

    const bad = await getJson(`${p.url}/details/abc`);
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json, { error: 'please provide numeric product id' });

    assert.deepEqual((await getJson(`${p.url}/health`)).json, { status: 'Details is healthy' });
    assert.equal((await request(`${p.url}/nothing`)).status, 404);
    assert.deepEqual(await p.stop(), { code: 0, signal: null });
  });

  test('ratings: /ratings/<id>, bad id, POST, /health', async () => {
    const p = await spawnProgram('bookinfo-ratings');
    const r = await getJson(`${p.url}/ratings/3`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { id: 3, ratings: { Reviewer1: 5, Reviewer2: 4 } });

    const bad = await getJson(`${p.url}/ratings/`);
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json, { error: 'please provide numeric product ID' });

    const posted = await request(`${p.url}/ratings/9`, { method: 'POST', body: JSON.stringify({ Reviewer1: 1, Reviewer2: 2 }) });
    assert.equal(posted.status, 200);
    assert.deepEqual(JSON.parse(posted.body), { id: 9, ratings: { Reviewer1: 1, Reviewer2: 2 } });
    assert.deepEqual((await getJson(`${p.url}/ratings/9`)).json, { id: 9, ratings: { Reviewer1: 1, Reviewer2: 2 } });

    assert.deepEqual((await getJson(`${p.url}/health`)).json, { status: 'Ratings is healthy' });
    assert.equal((await request(`${p.url}/other`)).status, 404);
    assert.deepEqual(await p.stop(), { code: 0, signal: null });
  });
});

describe('bookinfo reviews', () => {
  let ratingsUrl = '';
  let ratingsProc: Proc | undefined;

  async function ratingsService(): Promise<string> {
    if (!ratingsProc) {
      ratingsProc = await spawnProgram('bookinfo-ratings');
      ratingsUrl = ratingsProc.url;
    }
    return ratingsUrl;
  }

  after(async () => {
    await ratingsProc?.stop();
  });

  test('v1: no ratings, podname and clustername', async () => {
    const p = await spawnProgram('bookinfo-reviews', { SERVICE_VERSION: 'v1', HOSTNAME: 'reviews-v1-xyz', RATINGS_SERVICE: await deadUrl() });
    const r = await getJson(`${p.url}/reviews/0`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, {
      id: '0',
      podname: 'reviews-v1-xyz',
      clustername: 'null',
      reviews: [
        { reviewer: 'Reviewer1', text: REVIEW1 },
        { reviewer: 'Reviewer2', text: REVIEW2 },
      ],
    });
    assert.deepEqual((await getJson(`${p.url}/health`)).json, { status: 'Reviews is healthy' });
    assert.equal((await request(`${p.url}/reviews/abc`)).status, 404);
    assert.deepEqual(await p.stop(), { code: 0, signal: null });
  });

  test('v2: black stars from a real ratings process', async () => {
    const p = await spawnProgram('bookinfo-reviews', {
      SERVICE_VERSION: 'v2',
      HOSTNAME: 'reviews-v2-xyz',
      CLUSTER_NAME: 'cluster-east',
      RATINGS_SERVICE: await ratingsService(),
    });
    const r = await getJson(`${p.url}/reviews/5`);
    assert.deepEqual(r.json, {
      id: '5',
      podname: 'reviews-v2-xyz',
      clustername: 'cluster-east',
      reviews: [
        { reviewer: 'Reviewer1', text: REVIEW1, rating: { stars: 5, color: 'black' } },
        { reviewer: 'Reviewer2', text: REVIEW2, rating: { stars: 4, color: 'black' } },
      ],
    });
    await eventually(() => ratingsProc?.stdout() ?? '', /^GET \/ratings\/5 200 /m);
    assert.deepEqual(await p.stop(), { code: 0, signal: null });
  });

  test('v3: red stars (RATINGS_SERVICE may include the /ratings path)', async () => {
    const p = await spawnProgram('bookinfo-reviews', { SERVICE_VERSION: 'v3', HOSTNAME: 'reviews-v3-xyz', RATINGS_SERVICE: `${await ratingsService()}/ratings` });
    const r = await getJson(`${p.url}/reviews/0`);
    const reviews = (r.json as { reviews: { rating?: unknown }[] }).reviews;
    assert.deepEqual(
      reviews.map((x) => x.rating),
      [
        { stars: 5, color: 'red' },
        { stars: 4, color: 'red' },
      ],
    );
    assert.deepEqual(await p.stop(), { code: 0, signal: null });
  });

  test('ENABLE_RATINGS / STAR_COLOR override the version defaults', async () => {
    const rv = await startInProcess('bookinfo-reviews', { SERVICE_VERSION: 'v1', ENABLE_RATINGS: 'true', STAR_COLOR: 'green', RATINGS_SERVICE: await ratingsService() });
    const r = await getJson(`${rv.url}/reviews/0`);
    assert.deepEqual((r.json as { reviews: { rating?: unknown }[] }).reviews[0]?.rating, { stars: 5, color: 'green' });
    await rv.close();
  });

  test('v2 with ratings down: rating error per reviewer', async () => {
    const rv = await startInProcess('bookinfo-reviews', { SERVICE_VERSION: 'v2', HOSTNAME: 'r', RATINGS_SERVICE: await deadUrl() });
    const r = await getJson(`${rv.url}/reviews/0`);
    assert.equal(r.status, 200);
    const reviews = (r.json as { reviews: { rating?: unknown }[] }).reviews;
    assert.deepEqual(
      reviews.map((x) => x.rating),
      [{ error: 'Ratings service is currently unavailable' }, { error: 'Ratings service is currently unavailable' }],
    );
    await rv.close();
  });

  test('reviews forwards tracing headers to ratings', async () => {
    const fake = await recorder(() => ({ id: 0, ratings: { Reviewer1: 3, Reviewer2: 1 } }));
    const rv = await startInProcess('bookinfo-reviews', { SERVICE_VERSION: 'v3', RATINGS_SERVICE: fake.url });
    const r = await getJson(`${rv.url}/reviews/0`, { ...TRACE_HEADERS, 'end-user': 'jason', 'x-not-propagated': 'nope' });
    assert.deepEqual(
      (r.json as { reviews: { rating?: unknown }[] }).reviews.map((x) => x.rating),
      [
        { stars: 3, color: 'red' },
        { stars: 1, color: 'red' },
      ],
    );
    assert.equal(fake.seen.length, 1);
    const seen = fake.seen[0];
    assert.equal(seen?.url, '/ratings/0');
    for (const [k, v] of Object.entries({ ...TRACE_HEADERS, 'end-user': 'jason' })) assert.equal(seen?.headers[k], v, k);
    assert.equal(seen?.headers['x-not-propagated'], undefined);
    await rv.close();
  });
});

describe('bookinfo productpage', () => {
  test('opens a new connection to reviews and details for every page, as the Python original does', async () => {
    const connections = { details: 0, reviews: 0 };
    const fakeBackend = (name: 'details' | 'reviews', body: unknown) => {
      const server = http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      });
      server.on('connection', () => connections[name]++);
      return listen(server);
    };
    const details = await fakeBackend('details', { id: 0, author: 'William Shakespeare', year: 1595, type: 'paperback', pages: 200, publisher: 'PublisherA', language: 'English', 'ISBN-10': '1234567890', 'ISBN-13': '123-1234567890' });
    const reviews = await fakeBackend('reviews', { id: '0', podname: 'reviews-x', clustername: 'c', reviews: [] });
    const page = await spawnProgram('bookinfo-productpage', { DETAILS_SERVICE: details, REVIEWS_SERVICE: reviews, RATINGS_SERVICE: reviews });
    for (let i = 0; i < 3; i++) assert.equal((await request(`${page.url}/productpage`)).status, 200);
    assert.deepEqual(connections, { details: 3, reviews: 3 });
  });

  test('aggregates real details + reviews v3 + ratings processes', async () => {
    const [details, ratings] = await Promise.all([spawnProgram('bookinfo-details'), spawnProgram('bookinfo-ratings')]);
    const reviews = await spawnProgram('bookinfo-reviews', { SERVICE_VERSION: 'v3', HOSTNAME: 'reviews-v3-pod', CLUSTER_NAME: 'west', RATINGS_SERVICE: ratings.url });
    const page = await spawnProgram('bookinfo-productpage', {
      DETAILS_SERVICE: details.url,
      REVIEWS_SERVICE: reviews.url,
      RATINGS_SERVICE: ratings.url,
    });

    const r = await request(`${page.url}/productpage?u=normal`, { headers: { 'x-request-id': 'agg-1' } });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/html/);
    const html = r.body;
    assert.match(html, /<title>Simple Bookstore App<\/title>/);
    assert.match(html, /The Comedy of Errors/);
    assert.match(html, /Wikipedia Summary/);
    for (const s of ['Book Details', 'paperback', '200', 'PublisherA', 'English', '1234567890', '123-1234567890']) assert.ok(html.includes(s), s);
    for (const s of ['Book Reviews', 'Reviewer1', 'Reviewer2', REVIEW1, REVIEW2, 'reviews-v3-pod', 'west']) assert.ok(html.includes(s), s);
    assert.equal(count(html, '<font color="red">'), 2);
    assert.equal(count(html, 'glyphicon-star"'), 9); // 5 + 4 full stars
    assert.equal(count(html, 'glyphicon-star-empty"'), 1);
    assert.ok(!html.includes('Sorry'), 'no failure message');

    // The request was really served by the backend processes.
    await eventually(details.stdout, /^GET \/details\/0 200 /m);
    await eventually(reviews.stdout, /^GET \/reviews\/0 200 /m);
    await eventually(ratings.stdout, /^GET \/ratings\/0 200 /m);
    await eventually(page.stdout, /^GET \/productpage\?u=normal 200 /m);

    const products = await getJson(`${page.url}/api/v1/products`);
    assert.equal(products.status, 200);
    const list = products.json as { id: number; title: string; descriptionHtml: string }[];
    assert.equal(list.length, 1);
    assert.equal(list[0]?.id, 0);
    assert.equal(list[0]?.title, 'The Comedy of Errors');
    assert.match(list[0]?.descriptionHtml ?? '', /William Shakespeare's/);

    const apiDetails = await getJson(`${page.url}/api/v1/products/0`);
    assert.equal(apiDetails.status, 200);
    assert.equal((apiDetails.json as { publisher: string }).publisher, 'PublisherA');

    const apiReviews = await getJson(`${page.url}/api/v1/products/0/reviews`);
    assert.equal(apiReviews.status, 200);
    assert.equal((apiReviews.json as { podname: string }).podname, 'reviews-v3-pod');

    const apiRatings = await getJson(`${page.url}/api/v1/products/0/ratings`);
    assert.deepEqual(apiRatings, { status: 200, json: { id: 0, ratings: { Reviewer1: 5, Reviewer2: 4 } }, headers: apiRatings.headers });

    assert.deepEqual((await getJson(`${page.url}/health`)).json, { status: 'Productpage is healthy' });
    const index = await request(`${page.url}/`);
    assert.equal(index.status, 200);
    assert.match(index.body, /productpage\?u=normal/);
    assert.equal((await request(`${page.url}/nope`)).status, 404);

    for (const p of [page, reviews, details, ratings]) assert.deepEqual(await p.stop(), { code: 0, signal: null }, p.url);
  });

  test('reviews v1 and v2 render without stars / with black stars', async () => {
    const [details, ratings] = await Promise.all([spawnProgram('bookinfo-details'), spawnProgram('bookinfo-ratings')]);
    const [v1, v2] = await Promise.all([
      spawnProgram('bookinfo-reviews', { SERVICE_VERSION: 'v1', RATINGS_SERVICE: ratings.url }),
      spawnProgram('bookinfo-reviews', { SERVICE_VERSION: 'v2', RATINGS_SERVICE: ratings.url }),
    ]);
    const [pageV1, pageV2] = await Promise.all([
      startInProcess('bookinfo-productpage', { DETAILS_SERVICE: details.url, REVIEWS_SERVICE: v1.url }),
      startInProcess('bookinfo-productpage', { DETAILS_SERVICE: details.url, REVIEWS_SERVICE: v2.url }),
    ]);
    const html1 = (await request(`${pageV1.url}/productpage`)).body;
    assert.ok(html1.includes(REVIEW1) && html1.includes(REVIEW2));
    assert.equal(count(html1, 'glyphicon-star'), 0);
    const html2 = (await request(`${pageV2.url}/productpage`)).body;
    assert.equal(count(html2, '<font color="black">'), 2);
    assert.equal(count(html2, 'glyphicon-star"'), 9);
    await Promise.all([pageV1.close(), pageV2.close()]);
    for (const p of [v1, v2, details, ratings]) assert.deepEqual(await p.stop(), { code: 0, signal: null });
  });

  test('backends down: failure messages on the page and errors from the API', async () => {
    const dead = await deadUrl();
    const log: string[] = [];
    const page = await startInProcess('bookinfo-productpage', { DETAILS_SERVICE: dead, REVIEWS_SERVICE: dead, RATINGS_SERVICE: dead }, log);
    const r = await request(`${page.url}/productpage`);
    assert.equal(r.status, 200);
    assert.ok(r.body.includes('The Comedy of Errors'));
    assert.ok(r.body.includes('Error fetching product details!'));
    assert.ok(r.body.includes(DETAILS_SORRY));
    assert.ok(r.body.includes('Error fetching product reviews!'));
    assert.ok(r.body.includes(REVIEWS_SORRY));

    const apiReviews = await getJson(`${page.url}/api/v1/products/0/reviews`);
    assert.deepEqual([apiReviews.status, apiReviews.json], [500, { error: REVIEWS_SORRY }]);
    const apiDetails = await getJson(`${page.url}/api/v1/products/0`);
    assert.deepEqual([apiDetails.status, apiDetails.json], [500, { error: DETAILS_SORRY }]);
    const apiRatings = await getJson(`${page.url}/api/v1/products/0/ratings`);
    assert.deepEqual([apiRatings.status, apiRatings.json], [500, { error: 'Sorry, product ratings are currently unavailable for this book.' }]);
    await page.close();
    assert.match(log.join('\n'), /^GET \/productpage 200 /m);
  });

  test('only reviews down: details still shown; a reviews v2 with ratings down shows the ratings error', async () => {
    const details = await spawnProgram('bookinfo-details');
    const reviews = await startInProcess('bookinfo-reviews', { SERVICE_VERSION: 'v2', RATINGS_SERVICE: await deadUrl() });
    const down = await startInProcess('bookinfo-productpage', { DETAILS_SERVICE: details.url, REVIEWS_SERVICE: await deadUrl() });
    const html = (await request(`${down.url}/productpage`)).body;
    assert.ok(html.includes('PublisherA'));
    assert.ok(!html.includes(DETAILS_SORRY));
    assert.ok(html.includes(REVIEWS_SORRY));

    const noRatings = await startInProcess('bookinfo-productpage', { DETAILS_SERVICE: details.url, REVIEWS_SERVICE: reviews.url });
    const html2 = (await request(`${noRatings.url}/productpage`)).body;
    assert.equal(count(html2, 'Ratings service is currently unavailable'), 2);
    assert.ok(!html2.includes(REVIEWS_SORRY));
    await Promise.all([down.close(), noRatings.close(), reviews.close()]);
    assert.deepEqual(await details.stop(), { code: 0, signal: null });
  });

  test('reviews answering 503 is retried once, then reported with its status', async () => {
    let calls = 0;
    const server = http.createServer((_req, res) => {
      calls++;
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end('{"error":"overloaded"}');
    });
    const url = await listen(server);
    const page = await startInProcess('bookinfo-productpage', { REVIEWS_SERVICE: url });
    const r = await getJson(`${page.url}/api/v1/products/0/reviews`);
    assert.deepEqual([r.status, r.json], [503, { error: REVIEWS_SORRY }]);
    assert.equal(calls, 2);
    await page.close();
  });

  test('forwards tracing/baggage headers and end-user to details and reviews', async () => {
    const fakeDetails = await recorder(() => ({ id: 0, type: 'hardcover', pages: 1, publisher: 'P', language: 'L', 'ISBN-10': 'a', 'ISBN-13': 'b' }));
    const fakeReviews = await recorder(() => ({ id: '0', podname: 'p', clustername: 'null', reviews: [] }));
    const page = await startInProcess('bookinfo-productpage', { DETAILS_SERVICE: fakeDetails.url, REVIEWS_SERVICE: fakeReviews.url });

    const sent = { ...TRACE_HEADERS, 'end-user': 'jason', 'x-not-propagated': 'nope' };
    const r = await request(`${page.url}/productpage`, { headers: sent });
    assert.equal(r.status, 200);
    assert.ok(r.body.includes('hardcover'));
    for (const fake of [fakeDetails, fakeReviews]) {
      assert.equal(fake.seen.length, 1);
      const headers = fake.seen[0]?.headers ?? {};
      for (const [k, v] of Object.entries({ ...TRACE_HEADERS, 'end-user': 'jason' })) assert.equal(headers[k], v, k);
      assert.equal(headers['x-not-propagated'], undefined);
    }
    assert.equal(fakeDetails.seen[0]?.url, '/details/0');
    assert.equal(fakeReviews.seen[0]?.url, '/reviews/0');

    // Signing in sets the user for later requests, sent on as end-user.
    const login = await request(`${page.url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', referer: `${page.url}/productpage` },
      body: 'username=jason&passwd=x',
    });
    assert.equal(login.status, 302);
    assert.equal(login.headers.location, `${page.url}/productpage`);
    const cookie = String(login.headers['set-cookie']?.[0] ?? '').split(';')[0] ?? '';
    assert.equal(cookie, 'user=jason');
    const signedIn = await request(`${page.url}/productpage`, { headers: { cookie } });
    assert.ok(signedIn.body.includes('jason ( <a href="logout">sign out</a> )'));
    assert.equal(fakeReviews.seen[1]?.headers['end-user'], 'jason');
    await page.close();
  });
});
