/**
 * Policy probe, run in the client pod: every --interval ms a new TCP connection to the server with
 * one HTTP/1.1 request on it (open loop: a slow or hanging attempt does not delay the next), and
 * one keep-alive connection with a request every --interval ms (reopened when it ends). Every
 * outcome is one JSON line on stdout (bench/policy/events.ts) with wall-clock times, so the bench
 * can line them up with the moments it wrote policies to the Kubernetes API.
 *
 *   node --import tsx bench/tools/policy-probe.ts --host 10.0.0.2 --port 8080 [--interval 10] [--timeout 1000]
 *
 * Runs until it is stopped (SIGTERM).
 */
import { connect, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { ProbeEvent } from '../policy/events.js';
import { getRequest, parseResponseHead } from './http1.js';

export interface PolicyProbeOptions {
  host: string;
  port: number;
  intervalMs: number;
  /** A request unanswered this long counts as not answered (and ends a keep-alive connection). */
  timeoutMs: number;
  emit: (event: ProbeEvent) => void;
}

const answeredStatus = (status: number) => status >= 200 && status < 400;
const reasonOf = (err: Error & { code?: string }) => err.code ?? err.message;

/** One new connection, one request: resolves once its outcome is known, never rejects. */
function attempt(o: PolicyProbeOptions, request: Buffer, sockets: Set<Socket>): Promise<void> {
  const start = Date.now();
  return new Promise((resolve) => {
    const socket = connect({ host: o.host, port: o.port, noDelay: true });
    sockets.add(socket);
    let buffer: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (answered: boolean, error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sockets.delete(socket);
      socket.destroy();
      o.emit({ kind: 'attempt', start, end: Date.now(), answered, ...(error ? { error } : {}) });
      resolve();
    };
    const timer = setTimeout(() => finish(false, 'timeout'), o.timeoutMs);
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
      try {
        const head = parseResponseHead(buffer);
        if (head) finish(answeredStatus(head.status), answeredStatus(head.status) ? undefined : `status ${head.status}`);
      } catch {
        finish(false, 'not an HTTP response');
      }
    });
    socket.on('error', (err) => finish(false, reasonOf(err)));
    socket.on('close', () => finish(false, 'closed'));
  });
}

/** The keep-alive connection: a request every interval, each after the previous one's answer. */
class KeepAliveProbe {
  private socket: Socket | undefined;
  private conn = 0;
  private answered = 0;
  private lastAnswer = 0;
  private buffer: Buffer = Buffer.alloc(0);
  private requestTimer: NodeJS.Timeout | undefined;
  private nextTimer: NodeJS.Timeout | undefined;
  /** When the next request is due: an interval after the previous one was sent. */
  private nextAfter = 0;
  private stopped = false;

  constructor(
    private readonly o: PolicyProbeOptions,
    private readonly request: Buffer,
  ) {}

  start(): void {
    if (this.stopped) return;
    this.conn++;
    this.answered = 0;
    this.buffer = Buffer.alloc(0);
    const socket = connect({ host: this.o.host, port: this.o.port, noDelay: true });
    this.socket = socket;
    // Events of a connection already given up on must not touch its successor.
    socket.on('connect', () => this.socket === socket && this.send());
    socket.on('data', (chunk: Buffer) => this.socket === socket && this.onData(chunk));
    socket.on('error', (err) => this.socket === socket && this.end(reasonOf(err)));
    socket.on('close', () => this.socket === socket && this.end('closed'));
  }

  private send(): void {
    const sentAt = Date.now();
    this.socket?.write(this.request);
    this.requestTimer = setTimeout(() => this.end('timeout'), this.o.timeoutMs);
    this.nextAfter = sentAt + this.o.intervalMs;
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    let head;
    try {
      head = parseResponseHead(this.buffer);
    } catch {
      return this.end('not an HTTP response');
    }
    if (!head || this.buffer.length < head.headBytes + head.contentLength) return;
    this.buffer = this.buffer.subarray(head.headBytes + head.contentLength);
    clearTimeout(this.requestTimer);
    if (!answeredStatus(head.status)) return this.end(`status ${head.status}`);
    this.answered++;
    this.lastAnswer = Date.now();
    if (this.answered === 1) this.o.emit({ kind: 'established', conn: this.conn, t: this.lastAnswer });
    this.nextTimer = setTimeout(() => this.send(), Math.max(0, this.nextAfter - Date.now()));
  }

  private end(reason: string): void {
    const socket = this.socket;
    if (!socket) return;
    this.socket = undefined;
    clearTimeout(this.requestTimer);
    clearTimeout(this.nextTimer);
    socket.destroy();
    // Only connections that were answered are worth a line: while a DENY holds, every reconnect fails.
    if (this.answered > 0) this.o.emit({ kind: 'closed', conn: this.conn, t: Date.now(), answered: this.answered, lastAnswer: this.lastAnswer, reason });
    if (!this.stopped) this.nextTimer = setTimeout(() => this.start(), this.o.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.requestTimer);
    clearTimeout(this.nextTimer);
    this.socket?.destroy();
    this.socket = undefined;
  }
}

/** Starts both probes; `stop` ends them and resolves once the attempts in flight are logged. */
export function startPolicyProbe(o: PolicyProbeOptions): { stop(): Promise<void> } {
  const request = getRequest(`${o.host}:${o.port}`, '/');
  const closeRequest = Buffer.from(request.toString('latin1').replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'), 'latin1');
  const sockets = new Set<Socket>();
  const inFlight = new Set<Promise<void>>();
  const keepAlive = new KeepAliveProbe(o, request);
  keepAlive.start();
  const timer = setInterval(() => {
    const p = attempt(o, closeRequest, sockets);
    inFlight.add(p);
    void p.then(() => inFlight.delete(p));
  }, o.intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      keepAlive.stop();
      await Promise.all(inFlight);
    },
  };
}

function main(): void {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      interval: { type: 'string', default: '10' },
      timeout: { type: 'string', default: '1000' },
    },
    strict: true,
  });
  if (!values.host || !values.port) throw new Error('--host and --port are required');
  const numbers = { port: Number(values.port), intervalMs: Number(values.interval), timeoutMs: Number(values.timeout) };
  for (const [name, v] of Object.entries(numbers)) if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name === 'port' ? 'port' : name.replace('Ms', '')} must be a positive integer`);
  const probe = startPolicyProbe({ host: values.host, ...numbers, emit: (e) => process.stdout.write(`${JSON.stringify(e)}\n`) });
  process.once('SIGTERM', () => void probe.stop().then(() => process.exit(0)));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`policy-probe: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
