// Built-in programs that stand in for the container images of Istio's sample
// apps when the lab runs a pod as a host process in a network namespace.
//
//   node dist/lab/programs/run.js <program>
//
// The program listens on $BIND_ADDRESS (default 0.0.0.0) and $PORT (default:
// the port the real image listens on), writes one access-log line per request
// to stdout, and exits 0 on SIGTERM/SIGINT after closing its server.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { helloworld } from './helloworld.js';
import { details, productpage, ratings, reviews } from './bookinfo.js';

/** Environment as seen by a program (process.env, or a test's own map). */
export type Env = Readonly<Record<string, string | undefined>>;

/** One running copy of a program: its request handler and its cleanup. */
export interface ProgramInstance {
  handle(req: http.IncomingMessage, res: http.ServerResponse): void | Promise<void>;
  /** Release timers, agents and the like; called once the server has closed. */
  close?(): void;
}

export interface Program {
  /** What the program imitates, for usage messages. */
  readonly description: string;
  /** The port the real image listens on. */
  readonly defaultPort: number;
  create(env: Env): ProgramInstance;
}

export const PROGRAMS = {
  helloworld,
  'bookinfo-details': details,
  'bookinfo-ratings': ratings,
  'bookinfo-reviews': reviews,
  'bookinfo-productpage': productpage,
} as const satisfies Record<string, Program>;

export type ProgramName = keyof typeof PROGRAMS;

export const PROGRAM_NAMES = Object.keys(PROGRAMS) as ProgramName[];

export function isProgramName(name: string): name is ProgramName {
  return Object.prototype.hasOwnProperty.call(PROGRAMS, name);
}

export interface StartOptions {
  /** Defaults to process.env. PORT and BIND_ADDRESS are read from it unless given below. */
  env?: Env;
  port?: number;
  host?: string;
  /** Access-log sink; defaults to a line on stdout. */
  log?: (line: string) => void;
}

export interface RunningProgram {
  readonly name: ProgramName;
  readonly server: http.Server;
  readonly host: string;
  readonly port: number;
  /** http://host:port, with IPv6 hosts bracketed. */
  readonly url: string;
  /** Stop accepting connections, finish (or after 2 s cut) open ones, release resources. */
  close(): Promise<void>;
}

function parsePort(value: string, what: string): number {
  if (!/^\d+$/.test(value.trim())) throw new Error(`invalid ${what} ${JSON.stringify(value)}`);
  const port = Number(value);
  if (port > 65535) throw new Error(`invalid ${what} ${JSON.stringify(value)}`);
  return port;
}

function formatRemote(req: http.IncomingMessage): string {
  return req.socket.remoteAddress ?? '-';
}

/** Start a program's HTTP server in this process. */
export async function startProgram(name: ProgramName, opts: StartOptions = {}): Promise<RunningProgram> {
  const program: Program = PROGRAMS[name];
  const env = opts.env ?? process.env;
  const port = opts.port ?? (env.PORT ? parsePort(env.PORT, 'PORT') : program.defaultPort);
  const host = opts.host ?? (env.BIND_ADDRESS || '0.0.0.0');
  const log = opts.log ?? ((line: string) => void process.stdout.write(line + '\n'));

  const instance = program.create(env);
  const server = http.createServer((req, res) => {
    const started = process.hrtime.bigint();
    res.once('close', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const aborted = res.writableFinished ? '' : ' (aborted)';
      log(`${req.method ?? '-'} ${req.url ?? '-'} ${res.statusCode} ${ms.toFixed(1)}ms ${formatRemote(req)}${aborted}`);
    });
    Promise.resolve()
      .then(() => instance.handle(req, res))
      .catch((err: unknown) => {
        process.stderr.write(`${name}: error handling ${req.method ?? ''} ${req.url ?? ''}: ${String(err)}\n`);
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
          res.end('Internal Server Error\n');
        } else {
          res.destroy();
        }
      });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      instance.close?.();
      reject(err);
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });

  const address = server.address() as AddressInfo;
  const urlHost = address.address.includes(':') ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    name,
    server,
    host: address.address,
    port: address.port,
    url: `http://${urlHost}:${address.port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), 2000);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          instance.close?.();
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

function usage(): string {
  const lines = PROGRAM_NAMES.map((n) => `  ${n.padEnd(22)} ${PROGRAMS[n].description}`);
  return `usage: run.js <program>\nknown programs:\n${lines.join('\n')}\n`;
}

export async function main(argv: readonly string[]): Promise<number | undefined> {
  const name = argv[0];
  if (name === undefined || name === '' || name === '-h' || name === '--help') {
    process.stderr.write(`run.js: missing program name\n${usage()}`);
    return 2;
  }
  if (!isProgramName(name)) {
    process.stderr.write(`run.js: unknown program ${JSON.stringify(name)}; known programs: ${PROGRAM_NAMES.join(', ')}\n`);
    return 2;
  }

  let running: RunningProgram;
  try {
    running = await startProgram(name);
  } catch (err) {
    process.stderr.write(`${name}: cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  process.stdout.write(`${name} listening on ${running.url}\n`);

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) process.exit(0);
    signalled = true;
    process.stdout.write(`${name} received ${signal}, shutting down\n`);
    void running.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return undefined;
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const code = await main(process.argv.slice(2));
  if (code !== undefined) process.exitCode = code;
}
