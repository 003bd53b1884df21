import { fileURLToPath } from 'node:url';
import { BenchCommandError, type Place } from '../exec.js';
import { parseIperf3, type Iperf3Result } from '../parsers/iperf3.js';
import { parseWrk, type WrkResult } from '../parsers/wrk.js';
import type { FixedRateResult } from '../tools/fixed-rate.js';
import type { Address } from '../paths/path.js';

const fixedRateTool = fileURLToPath(new URL('../tools/fixed-rate.ts', import.meta.url));
const tsxLoader = import.meta.resolve('tsx');

export const httpUrl = (a: Address) => `http://${a.host}:${a.port}/`;

export interface WrkOptions {
  connections: number;
  durationSeconds: number;
  threads?: number;
  /** One request per connection: wrk reconnects after every response. */
  closeEachConnection?: boolean;
}

export function wrkArgv(url: string, o: WrkOptions): string[] {
  return [
    'wrk', '--latency',
    '-t', String(o.threads ?? 1),
    '-c', String(o.connections),
    '-d', `${o.durationSeconds}s`,
    '--timeout', '5s',
    ...(o.closeEachConnection ? ['-H', 'Connection: close'] : []),
    url,
  ];
}

export async function runWrk(place: Place, target: Address, options: WrkOptions): Promise<WrkResult> {
  const argv = wrkArgv(httpUrl(target), options);
  const r = await place.run(argv, { timeoutMs: (options.durationSeconds + 30) * 1000 });
  if (r.code !== 0) throw new BenchCommandError(`${argv.join(' ')} in ${place.label} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 500)}`);
  return parseWrk(r.stdout);
}

export function iperf3Argv(target: Address, durationSeconds: number): string[] {
  // -O 1: leave TCP's slow start (the first second) out of the result.
  return ['iperf3', '-c', target.host, '-p', String(target.port), '-t', String(durationSeconds), '-O', '1', '-J', '--connect-timeout', '5000'];
}

export async function runIperf3(place: Place, target: Address, durationSeconds: number): Promise<Iperf3Result> {
  const r = await place.run(iperf3Argv(target, durationSeconds), { timeoutMs: (durationSeconds + 30) * 1000 });
  // iperf3 -J exits non-zero on failure but still prints JSON with "error"; the parser reports it.
  return parseIperf3(r.stdout || r.stderr);
}

export interface FixedRateOptions {
  rate: number;
  durationSeconds: number;
  connections: number;
  warmupSeconds: number;
}

export function fixedRateArgv(target: Address, o: FixedRateOptions): string[] {
  return [
    process.execPath, '--import', tsxLoader, fixedRateTool,
    '--url', httpUrl(target), '--rate', String(o.rate), '--duration', String(o.durationSeconds),
    '--connections', String(o.connections), '--warmup', String(o.warmupSeconds),
  ];
}

export async function runFixedRateLoad(place: Place, target: Address, options: FixedRateOptions): Promise<FixedRateResult> {
  const argv = fixedRateArgv(target, options);
  const r = await place.run(argv, { timeoutMs: (options.durationSeconds + options.warmupSeconds + 30) * 1000 });
  if (r.code !== 0) throw new BenchCommandError(`fixed-rate client in ${place.label} exited ${r.code}: ${r.stderr.trim().slice(0, 500)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as FixedRateResult;
}

/** One request through the path, to prove it works before measuring it. */
export async function probeHttp(place: Place, target: Address, expectBody: string): Promise<void> {
  const r = await place.run(['curl', '-sS', '--max-time', '5', httpUrl(target)], { timeoutMs: 10_000 });
  if (r.code !== 0 || r.stdout !== expectBody) {
    throw new BenchCommandError(`probe ${httpUrl(target)} from ${place.label} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  }
}
