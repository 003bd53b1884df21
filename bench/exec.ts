import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

/**
 * A place where benchmark programs run: a pod's or a node's namespaces. The bench never names
 * namespaces itself, it only asks a place to run a program, so plain network namespaces
 * (`ip netns exec`) and lab pods (`nsenter` into a container's namespaces) look the same.
 */
export interface Place {
  /** For logs and error messages, e.g. "client pod". */
  readonly label: string;
  /** Runs a program to completion (never rejects on a non-zero exit; check `code`). */
  run(argv: string[], options?: RunOptions): Promise<RunResult>;
  /** Starts a long-running program; its output goes to `logFile`. */
  spawn(argv: string[], logFile: string): Spawned;
}

export interface RunOptions {
  timeoutMs?: number;
  input?: string;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Spawned {
  /** PID of the program itself: the prefixes used here (`ip netns exec`, `nsenter`) exec, not fork. */
  readonly pid: number;
  readonly argv: string[];
  readonly logFile: string;
  /** True until the process has exited. */
  alive(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export class BenchCommandError extends Error {}

/** Thrown by a waitUntil probe to stop waiting at once (e.g. the awaited process died). */
export class GiveUpWaiting extends BenchCommandError {}

/** Commands running to completion right now, killed too when the bench is interrupted. */
const inFlight = new Set<ChildProcess>();

export function runCommand(argv: string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) throw new BenchCommandError('empty command');
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      inFlight.delete(child);
      const code = error ? (typeof error.code === 'number' ? error.code : error.killed ? 124 : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr || (error && typeof error.code !== 'number' ? error.message : '')) });
    });
    inFlight.add(child);
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

const running = new Set<Spawned>();

export function spawnCommand(argv: string[], logFile: string): Spawned {
  const [file, ...args] = argv;
  if (!file) throw new BenchCommandError('empty command');
  const log = openSync(logFile, 'a');
  const child = spawn(file, args, { stdio: ['ignore', log, log], detached: false });
  closeSync(log);
  let exited = false;
  const gone = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
    child.once('error', () => {
      exited = true;
      resolve();
    });
  });
  if (child.pid === undefined) throw new BenchCommandError(`could not start ${argv.join(' ')}`);
  const handle: Spawned = {
    pid: child.pid,
    argv,
    logFile,
    alive: () => !exited,
    async stop(graceMs = 3000) {
      running.delete(handle);
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await gone;
      clearTimeout(timer);
    },
  };
  running.add(handle);
  return handle;
}

/** Stops every program this process started and that still runs (on errors and signals). */
export async function stopAllSpawned(): Promise<void> {
  for (const child of inFlight) child.kill('SIGKILL');
  await Promise.all([...running].map((s) => s.stop(1000)));
}

/** A place entered by prefixing every command, e.g. `ip netns exec abench-cpod`. */
export function prefixPlace(label: string, prefix: string[]): Place {
  return {
    label,
    run: (argv, options) => runCommand([...prefix, ...argv], options),
    spawn: (argv, logFile) => spawnCommand([...prefix, ...argv], logFile),
  };
}

export const netnsPlace = (label: string, netns: string): Place => prefixPlace(label, ['ip', 'netns', 'exec', netns]);

/** The network, mount and UTS namespaces of a running process (a lab pod's container). */
export const processNamespacesPlace = (label: string, pid: number): Place => prefixPlace(label, ['nsenter', '-t', String(pid), '-n', '-m', '-u', '--']);

/** Waits until `probe` answers true, polling every `intervalMs`. */
export async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs = 10_000, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (err) {
      if (err instanceof GiveUpWaiting) throw err;
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new BenchCommandError(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
}

/** Waits until something in `place` listens on TCP `port`; `spawned` must stay up meanwhile. */
export async function waitForListener(place: Place, port: number, spawned: Spawned, timeoutMs = 10_000): Promise<void> {
  await waitUntil(`${spawned.argv[0]} to listen on port ${port} in ${place.label}`, async () => {
    if (!spawned.alive()) throw new GiveUpWaiting(`${spawned.argv.join(' ')} exited early; its log (${spawned.logFile}):\n${tail(spawned.logFile)}`);
    const r = await place.run(['ss', '-Htln', `sport = :${port}`], { timeoutMs: 5000 });
    return r.code === 0 && r.stdout.trim() !== '';
  }, timeoutMs);
}

export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
