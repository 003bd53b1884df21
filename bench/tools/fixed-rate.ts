/**
 * Fixed-rate, open-loop HTTP/1.1 keep-alive load: requests are issued on a constant-rate timeline
 * whatever the server does, spread over a pool of connections. A request that finds every
 * connection busy waits in a queue, and that wait counts in its latency, so a slow server cannot
 * slow the load down and hide its own latency (no coordinated omission).
 *
 * Latency runs from the moment the scheduler issues a request, not from its ideal slot: Node's
 * timers wake up to a few ms late, and that lag is the tool's, not the server's. The lag is
 * reported separately (scheduleLagUs) so its size is visible, and so is the latency counted from
 * the ideal slots (latencyFromScheduleUs = latency + lag, what wrk2 reports).
 *
 *   node --import tsx bench/tools/fixed-rate.ts --url http://10.0.0.2:8080/ --rate 1000 --duration 10 [--connections 8] [--warmup 1]
 *
 * Prints one JSON object (FixedRateResult) on stdout.
 */
import { connect, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { summarize, type Percentiles } from '../stats.js';
import { getRequest, parseResponseHead } from './http1.js';

export interface FixedRateResult {
  url: string;
  rate: number;
  connections: number;
  durationSeconds: number;
  /** Requests issued in the measured window (after warm-up). */
  issued: number;
  completed: number;
  errors: number;
  achievedRate: number;
  latencyUs: Percentiles;
  /** Latency counted from each request's ideal slot instead: latencyUs plus the tool's timer lag. */
  latencyFromScheduleUs: Percentiles;
  scheduleLagUs: Percentiles;
}

interface Request {
  scheduledNs: bigint;
  issuedNs: bigint;
  measured: boolean;
}

class Connection {
  private socket: Socket | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  current: Request | undefined;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly request: Buffer,
    private readonly done: (req: Request, ok: boolean) => void,
  ) {}

  get idle(): boolean {
    return this.current === undefined;
  }

  send(req: Request): void {
    this.current = req;
    if (!this.socket || this.socket.destroyed) this.open();
    this.socket!.write(this.request);
  }

  private open(): void {
    this.buffer = Buffer.alloc(0);
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    // Events of a socket already replaced must not touch its successor.
    socket.on('data', (chunk: Buffer) => this.socket === socket && this.onData(chunk));
    socket.on('error', () => this.socket === socket && this.fail());
    socket.on('close', () => this.socket === socket && this.fail());
    this.socket = socket;
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    let head;
    try {
      head = parseResponseHead(this.buffer);
    } catch {
      this.socket?.destroy();
      return;
    }
    if (!head || this.buffer.length < head.headBytes + head.contentLength) return;
    this.buffer = this.buffer.subarray(head.headBytes + head.contentLength);
    const req = this.current;
    this.current = undefined;
    if (req) this.done(req, head.status >= 200 && head.status < 400);
  }

  private fail(): void {
    this.socket?.destroy();
    this.socket = undefined;
    const req = this.current;
    this.current = undefined;
    if (req) this.done(req, false);
  }

  close(): void {
    this.socket?.destroy();
  }
}

export async function runFixedRate(options: { url: string; rate: number; durationSeconds: number; connections: number; warmupSeconds: number }): Promise<FixedRateResult> {
  const url = new URL(options.url);
  if (url.protocol !== 'http:') throw new Error(`only http:// URLs are supported, got ${options.url}`);
  const port = Number(url.port || 80);
  const request = getRequest(url.host, url.pathname + url.search);
  const latencies: number[] = [];
  const fromSchedule: number[] = [];
  const lags: number[] = [];
  const queue: Request[] = [];
  let errors = 0;
  let issued = 0;

  const onDone = (req: Request, ok: boolean, conn: Connection) => {
    if (req.measured) {
      if (ok) {
        const now = process.hrtime.bigint();
        latencies.push(Number(now - req.issuedNs) / 1000);
        fromSchedule.push(Number(now - req.scheduledNs) / 1000);
      } else errors++;
    }
    const next = queue.shift();
    if (next) conn.send(next);
  };
  const pool: Connection[] = [];
  for (let i = 0; i < options.connections; i++) {
    const conn: Connection = new Connection(url.hostname, port, request, (req, ok) => onDone(req, ok, conn));
    pool.push(conn);
  }

  const intervalNs = BigInt(Math.round(1e9 / options.rate));
  const totalSlots = BigInt(Math.round((options.warmupSeconds + options.durationSeconds) * options.rate));
  const warmupSlots = BigInt(Math.round(options.warmupSeconds * options.rate));
  const start = process.hrtime.bigint();
  let slot = 0n;

  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = process.hrtime.bigint();
      while (slot < totalSlots && start + slot * intervalNs <= now) {
        const measured = slot >= warmupSlots;
        const scheduledNs = start + slot * intervalNs;
        if (measured) {
          issued++;
          lags.push(Number(now - scheduledNs) / 1000);
        }
        const req: Request = { scheduledNs, issuedNs: now, measured };
        const conn = pool.find((c) => c.idle);
        if (conn) conn.send(req);
        else queue.push(req);
        slot++;
      }
      if (slot >= totalSlots) return resolve();
      setTimeout(tick, Math.max(0, Number(start + slot * intervalNs - process.hrtime.bigint()) / 1e6));
    };
    tick();
  });

  // Let the requests in flight finish; whatever is still open after that counts as an error.
  const deadline = Date.now() + 5000;
  while ((queue.length || pool.some((c) => !c.idle)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  errors += queue.filter((r) => r.measured).length + pool.filter((c) => c.current?.measured).length;
  for (const c of pool) c.close();

  return {
    url: options.url,
    rate: options.rate,
    connections: options.connections,
    durationSeconds: options.durationSeconds,
    issued,
    completed: latencies.length,
    errors,
    achievedRate: latencies.length / options.durationSeconds,
    latencyUs: summarize(latencies),
    latencyFromScheduleUs: summarize(fromSchedule),
    scheduleLagUs: summarize(lags),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      rate: { type: 'string', default: '1000' },
      duration: { type: 'string', default: '10' },
      connections: { type: 'string', default: '8' },
      warmup: { type: 'string', default: '1' },
    },
    strict: true,
  });
  if (!values.url) throw new Error('--url is required');
  const numbers = { rate: Number(values.rate), durationSeconds: Number(values.duration), connections: Number(values.connections), warmupSeconds: Number(values.warmup) };
  for (const [name, v] of Object.entries(numbers)) if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} must be a non-negative number`);
  if (numbers.rate <= 0 || numbers.connections < 1) throw new Error('--rate must be > 0 and --connections >= 1');
  const result = await runFixedRate({ url: values.url, ...numbers });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`fixed-rate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
