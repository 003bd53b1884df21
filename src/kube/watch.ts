/**
 * A watch with deadlines. client-node's Watch waits forever for response headers, and a watch that
 * stays silent is indistinguishable from a dead one; this one gives up on headers after the request
 * timeout and ends every watch after its `timeoutSeconds` (plus slack) even if the server does not,
 * so the informer re-watches (from its resourceVersion) instead of hanging.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { createInterface } from 'node:readline';
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import { DEFAULT_REQUEST_TIMEOUT_MS } from './client.js';
import { RequestTimeoutError, statusMessage } from './errors.js';

export interface WatchTimeouts {
  /** Time allowed for the response headers. */
  requestTimeoutMs?: number;
  /** Shortest server-side watch duration (`timeoutSeconds`); each watch takes a random one up to twice this, as client-go does. */
  minWatchSeconds?: number;
  random?: () => number;
}

const MAX_ERROR_BODY = 64 * 1024;

type WatchCallback = (phase: string, apiObj: unknown, watchObj?: unknown) => void;
type DoneCallback = (err: unknown) => void;

export class TimedWatch extends Watch {
  private readonly requestTimeoutMs: number;
  private readonly minWatchSeconds: number;
  private readonly random: () => number;

  constructor(
    private readonly kubeConfig: KubeConfig,
    timeouts: WatchTimeouts = {},
  ) {
    super(kubeConfig);
    this.requestTimeoutMs = timeouts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.minWatchSeconds = timeouts.minWatchSeconds ?? 300;
    this.random = timeouts.random ?? Math.random;
  }

  /** Same contract as Watch.watch: `done` is called once, with an error or null, unless the caller aborts. */
  override async watch(path: string, queryParams: Record<string, unknown>, callback: WatchCallback, done: DoneCallback): Promise<AbortController> {
    const cluster = this.kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    const url = new URL(cluster.server + path);
    const watchSeconds = Math.round(this.minWatchSeconds * (1 + this.random()));
    url.searchParams.set('watch', 'true');
    url.searchParams.set('allowWatchBookmarks', 'true');
    url.searchParams.set('timeoutSeconds', String(watchSeconds));
    for (const [key, value] of Object.entries(queryParams ?? {})) {
      if (value !== undefined && value !== '') url.searchParams.set(key, String(value));
    }
    const options: https.RequestOptions = {};
    await this.kubeConfig.applyToHTTPSOptions(options);

    const controller = new AbortController();
    let finished = false;
    const timers: NodeJS.Timeout[] = [];
    const cleanup = () => {
      finished = true;
      for (const timer of timers) clearTimeout(timer);
      request.destroy();
    };
    const finish = (err: unknown) => {
      if (finished) return;
      cleanup();
      done(err);
    };
    // The caller aborting (informer stop or restart) ends the watch without calling back.
    controller.signal.addEventListener('abort', () => {
      if (!finished) cleanup();
    });

    const transport = url.protocol === 'http:' ? http : https;
    const request = transport.request(url, { ...options, method: 'GET' });
    timers.push(setTimeout(() => finish(new RequestTimeoutError(`watch ${path}`, this.requestTimeoutMs)), this.requestTimeoutMs));
    timers.push(setTimeout(() => finish(null), watchSeconds * 1000 + this.requestTimeoutMs));
    request.on('error', (err) => finish(err));
    request.on('response', (response) => {
      clearTimeout(timers[0]);
      if (response.statusCode !== 200) {
        readSome(response, MAX_ERROR_BODY).then((body) => {
          const status = response.statusCode ?? 0;
          const message = statusMessage(body) ?? http.STATUS_CODES[status] ?? 'error';
          finish(Object.assign(new Error(`watch ${path}: HTTP ${status}: ${message}`), { statusCode: status }));
        }, finish);
        return;
      }
      const lines = createInterface({ input: response, crlfDelay: Infinity });
      // readline re-emits the response's errors; the response's own listener below handles them.
      lines.on('error', () => undefined);
      lines.on('line', (line) => {
        if (finished || line === '') return;
        let event: { type?: unknown; object?: unknown };
        try {
          event = JSON.parse(line) as typeof event;
        } catch {
          return;
        }
        if (typeof event.type === 'string') callback(event.type, event.object, event);
      });
      response.on('error', (err) => finish(err));
      response.on('close', () => finish(null));
    });
    request.end();
    return controller;
  }
}

function readSome(stream: NodeJS.ReadableStream, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      if (text.length < limit) text += chunk.slice(0, limit - text.length);
    });
    stream.on('end', () => resolve(text));
    stream.on('error', reject);
  });
}
