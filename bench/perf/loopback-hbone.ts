/**
 * Loopback HBONE harness: ambit's pod → ztunnel → HBONE → ztunnel → pod data path without
 * Kubernetes, network namespaces or root, next to a direct TCP path and a stunnel pair in the same
 * run, with the bench's own load tools (iperf3, wrk, nginx, the fixed-rate client). See
 * bench/perf/README.md.
 *
 *   node --import tsx bench/perf/loopback-hbone.ts [options]
 *
 *   --paths direct,ambit,stunnel   paths to measure, in this order (default all three); <variant>-waypoint
 *                                  (e.g. ambit-waypoint) goes through a waypoint process
 *   --ambit <label>=<checkout>     one more ambit path, run from another checkout (e.g. a pristine
 *                                  copy for before/after); name it in --paths (repeatable)
 *   --external <label>=<host>:<port>@<pid>[,<pid>]
 *                                  a proxy to nginx started by hand, measured with its processes
 *   --cases throughput,rr,latency  cases (default all); rr = wrk keep-alive c=1 and c=32
 *   --seconds 10                   length of each measurement
 *   --bytes 2G                     throughput: send this much (iperf3 -n) instead of --seconds
 *   --rate 1000                    latency: fixed request rate (8 keep-alive connections)
 *   --repeat <n>                   n runs of each case, paths interleaved run by run; reports the
 *                                  median, the best run and every run
 *   --idle 5                       seconds of idle before RSS is read after the load
 *   --memory-detail                RSS again after a full GC, and after malloc_trim
 *   --profile <dir>                ztunnels run with --cpu-prof; profiles in <dir>/<path>-{a,b}/
 *   --heap-profile <dir>           allocation sampling (garbage included) over the measured runs
 *   --node-arg <flag>              extra node flag for the ztunnels (repeatable)
 *   --tsx                          run the ztunnels from TypeScript through tsx instead of a bundle
 *   --log-level info               the ztunnels' log level (logs in the work dir)
 *   --keep                         keep the work dir (logs)
 *   --json <file>                  also write the results as JSON
 *
 * Topology (all loopback; 127.0.0.1 is the address Linux picks as the source towards 127/8):
 *
 *   client (127.0.0.1, node-a) ──connect 127.10.0.2:<A outbound>──▶ ztunnel A ══HBONE══▶ 127.10.0.2:<B inbound>
 *     ztunnel B ──▶ nginx 127.10.0.2:18080   (iperf3 server: pod 127.10.0.3, port 15201)
 *   stunnel: client 127.10.1.1 → server 127.10.1.2 → the same servers
 *
 * The two ztunnels are separate processes (bench/perf/ztunnel-node.ts), like in the lab; CPU time,
 * read/write system calls, sleeps (voluntary context switches) and RSS are read from /proc for each
 * of them. ztunnel A takes the original destination from the accepted socket's local address (the
 * destination pod IP) and the app port from the pod's IP.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { generateTunnelCerts, type TunnelCerts } from '../certs.js';
import { runCommand, spawnCommand, stopAllSpawned, type Spawned } from '../exec.js';
import { fixedRateArgv } from '../load/generators.js';
import { parseIperf3 } from '../parsers/iperf3.js';
import { parseWrk } from '../parsers/wrk.js';
import { CostSampler, type GroupCost } from '../process-cost.js';
import { nginxConfig } from '../servers.js';
import type { FixedRateResult } from '../tools/fixed-rate.js';
import { createRootCa } from '../../src/util/pki.js';
import type { ChildMessage, ParentMessage, ZtunnelNodeConfig } from './ztunnel-node.js';

const CLIENT_POD_IP = '127.0.0.1';
const HTTP_POD_IP = '127.10.0.2';
const IPERF_POD_IP = '127.10.0.3';
const WAYPOINT_POD_IP = '127.10.0.4';
/** A Service selecting the nginx pod, served by the waypoint (the waypoint paths dial it). */
const WAYPOINT_SERVICE_VIP = '127.10.0.20';
const HTTP_PORT = 18080;
const IPERF_PORT = 15201;
const STUNNEL_CLIENT_IP = '127.10.1.1';
const STUNNEL_SERVER_IP = '127.10.1.2';
const STUNNEL_OFFSET = 20_000;
const LATENCY_CONNECTIONS = 8;
const SATURATED_CONNECTIONS = 32;

type PathName = string;
type CaseName = 'throughput' | 'rr' | 'latency';

interface Address {
  host: string;
  port: number;
}

interface OpenPath {
  name: PathName;
  http: Address;
  iperf: Address;
  /** Processes carrying the traffic, measured for CPU and RSS. */
  groups: Array<{ label: string; pids: () => number[] }>;
  memory?: (gc?: boolean, trim?: boolean) => Promise<Array<{ label: string; memory: NodeJS.MemoryUsage }>>;
  /** Starts, or stops and writes to `<dir>/<path>-{a,b}.heapprofile`, allocation sampling in the ztunnels. */
  heapSampling?: (dir?: string) => Promise<void>;
  close(): Promise<void>;
}

interface Row {
  path: PathName;
  test: string;
  value: number;
  unit: string;
  extra?: Record<string, number | string>;
  cpu?: Array<{ label: string; cpuSeconds: number }>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const checkout = fileURLToPath(new URL('../../', import.meta.url));

async function waitForPort(address: Address, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(address.port, address.host);
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${what} does not listen on ${address.host}:${address.port}`);
}

// ---------------------------------------------------------------------------------------------
// Servers and paths
// ---------------------------------------------------------------------------------------------

async function startServers(workDir: string): Promise<Spawned[]> {
  const dir = join(workDir, 'nginx');
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, HTTP_PORT).replace(`listen ${HTTP_PORT}`, `listen ${HTTP_POD_IP}:${HTTP_PORT}`));
  const nginx = spawnCommand(['nginx', '-p', dir, '-e', join(dir, 'nginx-error.log'), '-c', conf], join(dir, 'stdout.log'));
  const iperf = spawnCommand(['iperf3', '--server', '--bind', IPERF_POD_IP, '--port', String(IPERF_PORT)], join(workDir, 'iperf3-server.log'));
  await waitForPort({ host: HTTP_POD_IP, port: HTTP_PORT }, 'nginx');
  await waitForPort({ host: IPERF_POD_IP, port: IPERF_PORT }, 'iperf3 server');
  return [nginx, iperf];
}

function directPath(): OpenPath {
  return { name: 'direct', http: { host: HTTP_POD_IP, port: HTTP_PORT }, iperf: { host: IPERF_POD_IP, port: IPERF_PORT }, groups: [], close: async () => undefined };
}

async function stunnelPath(workDir: string, certs: TunnelCerts): Promise<OpenPath> {
  const dir = join(workDir, 'stunnel');
  mkdirSync(dir, { recursive: true });
  const global = 'foreground = yes\npid =\ndebug = 4\nsocket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n';
  const tls = (cert: string, key: string, peer: string) => `cert = ${cert}\nkey = ${key}\nCAfile = ${certs.caCert}\nverifyChain = yes\ncheckHost = ${peer}\nsslVersionMin = TLSv1.3\n`;
  const targets: Array<[string, number]> = [
    [HTTP_POD_IP, HTTP_PORT],
    [IPERF_POD_IP, IPERF_PORT],
  ];
  let client = global;
  let server = global;
  for (const [ip, port] of targets) {
    client += `\n[to-${port}]\nclient = yes\naccept = ${STUNNEL_CLIENT_IP}:${STUNNEL_OFFSET + port - 10_000}\nconnect = ${STUNNEL_SERVER_IP}:${STUNNEL_OFFSET + port}\n${tls(certs.clientCert, certs.clientKey, certs.serverName)}`;
    server += `\n[from-${port}]\naccept = ${STUNNEL_SERVER_IP}:${STUNNEL_OFFSET + port}\nconnect = ${ip}:${port}\n${tls(certs.serverCert, certs.serverKey, certs.clientName)}`;
  }
  writeFileSync(join(dir, 'client.conf'), client);
  writeFileSync(join(dir, 'server.conf'), server);
  const serverProcess = spawnCommand(['stunnel4', join(dir, 'server.conf')], join(dir, 'server.log'));
  const clientProcess = spawnCommand(['stunnel4', join(dir, 'client.conf')], join(dir, 'client.log'));
  const http = { host: STUNNEL_CLIENT_IP, port: STUNNEL_OFFSET + HTTP_PORT - 10_000 };
  const iperf = { host: STUNNEL_CLIENT_IP, port: STUNNEL_OFFSET + IPERF_PORT - 10_000 };
  await waitForPort(http, 'stunnel client');
  await waitForPort(iperf, 'stunnel client');
  return {
    name: 'stunnel',
    http,
    iperf,
    groups: [
      { label: 'stunnel client side', pids: () => [clientProcess.pid] },
      { label: 'stunnel server side', pids: () => [serverProcess.pid] },
    ],
    close: async () => {
      await clientProcess.stop();
      await serverProcess.stop();
    },
  };
}

class ZtunnelChild {
  private readonly child: ChildProcess;
  private readonly waiters: Array<(message: ChildMessage) => void> = [];

  constructor(
    readonly label: string,
    entry: { file: string; tsx: boolean },
    execArgv: string[],
    log: string,
  ) {
    writeFileSync(log, '');
    this.child = fork(entry.file, [], {
      execArgv: [...(entry.tsx ? ['--import', 'tsx'] : []), ...execArgv],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const append = (chunk: Buffer) => writeFileSync(log, chunk, { flag: 'a' });
    this.child.stdout?.on('data', append);
    this.child.stderr?.on('data', append);
    this.child.on('message', (message: ChildMessage) => this.waiters.shift()?.(message));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  private request(message: ParentMessage): Promise<ChildMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.label} did not answer ${message.type}`)), 30_000);
      this.waiters.push((answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      this.child.send(message);
    });
  }

  async start(config: ZtunnelNodeConfig): Promise<{ outbound: number; inbound: number }> {
    const answer = await this.request({ type: 'start', config });
    if (answer.type !== 'started') throw new Error(`${this.label} failed to start: ${answer.type === 'error' ? answer.message : answer.type}`);
    return answer.ports;
  }

  async memory(gc = false, trim = false): Promise<NodeJS.MemoryUsage> {
    const answer = await this.request({ type: 'memory', gc, trim });
    if (answer.type !== 'memory') throw new Error(`${this.label}: unexpected answer ${answer.type}`);
    return answer.memory;
  }

  async heapSampling(file?: string): Promise<void> {
    const answer = await this.request(file ? { type: 'heap-sampling-stop', file } : { type: 'heap-sampling-start' });
    if (answer.type !== 'done') throw new Error(`${this.label}: heap sampling failed: ${answer.type === 'error' ? answer.message : answer.type}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.send({ type: 'stop' } satisfies ParentMessage);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await gone;
    clearTimeout(timer);
  }
}

/**
 * The ztunnel process's entry point for a checkout: by default ztunnel-node.ts and what it imports
 * bundled into one JavaScript file (esbuild, packages left to node_modules), so that the process
 * runs compiled JavaScript as `ambit ztunnel` does from dist/, without tsx's loader thread and its
 * ~35 MiB; with `tsx` the TypeScript sources through tsx.
 */
function ztunnelEntry(name: string, root: string, tsx: boolean): { file: string; tsx: boolean } {
  const source = join(root, 'bench/perf/ztunnel-node.ts');
  if (tsx) return { file: source, tsx };
  // Inside the checkout's node_modules, so that the bundle's package imports resolve as the sources' do.
  const file = join(root, 'node_modules/.cache/ambit-perf', `${name}-ztunnel-node.mjs`);
  execFileSync(join(checkout, 'node_modules/.bin/esbuild'), [source, '--bundle', '--platform=node', '--format=esm', '--packages=external', '--sourcemap', `--outfile=${file}`, '--log-level=warning'], {
    stdio: 'inherit',
  });
  return { file, tsx };
}

async function ambitPath(name: string, root: string, workDir: string, nodeArgs: string[], profileDir: string | undefined, logLevel: string, tsx: boolean): Promise<OpenPath> {
  const ca = await createRootCa('ambit perf root');
  const pods = [
    { name: 'client', ip: CLIENT_POD_IP, node: 'node-a' },
    { name: 'http', ip: HTTP_POD_IP, node: 'node-b' },
    { name: 'iperf', ip: IPERF_POD_IP, node: 'node-b' },
  ];
  const appPortByIp = { [HTTP_POD_IP]: HTTP_PORT, [IPERF_POD_IP]: IPERF_PORT };
  // One directory per node: the tsx loader thread writes a (small) profile of its own there too.
  const execArgv = (tag: string) => ['--expose-gc', ...nodeArgs, ...(profileDir ? ['--cpu-prof', '--cpu-prof-interval', '250', '--cpu-prof-dir', join(profileDir, `${name}-${tag}`)] : [])];
  const entry = ztunnelEntry(name, root, tsx);
  const nodeB = new ZtunnelChild(`${name} ztunnel B`, entry, execArgv('b'), join(workDir, `${name}-ztunnel-b.log`));
  const nodeA = new ZtunnelChild(`${name} ztunnel A`, entry, execArgv('a'), join(workDir, `${name}-ztunnel-a.log`));
  const base = { caCertPem: ca.certPem, caKeyPem: ca.keyPem, pods, appPortByIp, logLevel };
  try {
    const portsB = await nodeB.start({ ...base, node: 'node-b', peerHbonePort: 0 });
    const portsA = await nodeA.start({ ...base, node: 'node-a', peerHbonePort: portsB.inbound });
    return {
      name,
      http: { host: HTTP_POD_IP, port: portsA.outbound },
      iperf: { host: IPERF_POD_IP, port: portsA.outbound },
      groups: [
        { label: 'ztunnel A', pids: () => [nodeA.pid] },
        { label: 'ztunnel B', pids: () => [nodeB.pid] },
      ],
      heapSampling: async (dir) => {
        await nodeA.heapSampling(dir && join(dir, `${name}-a.heapprofile`));
        await nodeB.heapSampling(dir && join(dir, `${name}-b.heapprofile`));
      },
      memory: async (gc, trim) => [
        { label: 'ztunnel A', memory: await nodeA.memory(gc, trim) },
        { label: 'ztunnel B', memory: await nodeB.memory(gc, trim) },
      ],
      close: async () => {
        await nodeA.stop();
        await nodeB.stop();
      },
    };
  } catch (error) {
    await nodeA.stop();
    await nodeB.stop();
    throw error;
  }
}

/**
 * `<variant>-waypoint`: ztunnel A → HBONE → the waypoint (its own process, node A) → HBONE →
 * ztunnel B → nginx, through a Service (VIP 127.10.0.20) with Service.waypoint, as in the lab's
 * waypoint case (no L7 policy).
 */
async function waypointPath(name: string, root: string, workDir: string, nodeArgs: string[], profileDir: string | undefined, logLevel: string, tsx: boolean): Promise<OpenPath> {
  const ca = await createRootCa('ambit perf root');
  const httpService = `default/http.default.svc.cluster.local`;
  const pods = [
    { name: 'client', ip: CLIENT_POD_IP, node: 'node-a' },
    { name: 'http', ip: HTTP_POD_IP, node: 'node-b', services: { [httpService]: HTTP_PORT } },
    { name: 'waypoint', ip: WAYPOINT_POD_IP, node: 'node-a' },
  ];
  const services = [{ name: 'http', vip: WAYPOINT_SERVICE_VIP, port: HTTP_PORT, waypointIp: WAYPOINT_POD_IP }];
  const appPortByIp = { [HTTP_POD_IP]: HTTP_PORT, [WAYPOINT_SERVICE_VIP]: HTTP_PORT };
  const execArgv = (tag: string) => ['--expose-gc', ...nodeArgs, ...(profileDir ? ['--cpu-prof', '--cpu-prof-interval', '250', '--cpu-prof-dir', join(profileDir, `${name}-${tag}`)] : [])];
  const entry = ztunnelEntry(name, root, tsx);
  const nodeB = new ZtunnelChild(`${name} ztunnel B`, entry, execArgv('b'), join(workDir, `${name}-ztunnel-b.log`));
  const waypoint = new ZtunnelChild(`${name} waypoint`, entry, execArgv('w'), join(workDir, `${name}-waypoint.log`));
  const nodeA = new ZtunnelChild(`${name} ztunnel A`, entry, execArgv('a'), join(workDir, `${name}-ztunnel-a.log`));
  const base = { caCertPem: ca.certPem, caKeyPem: ca.keyPem, pods, services, appPortByIp, logLevel };
  const children = [nodeA, waypoint, nodeB];
  try {
    const portsB = await nodeB.start({ ...base, node: 'node-b', peerHbonePort: 0 });
    const portsW = await waypoint.start({ ...base, role: 'waypoint', waypointPod: 'waypoint', node: 'node-a', peerHbonePort: portsB.inbound });
    const portsA = await nodeA.start({ ...base, node: 'node-a', peerHbonePort: portsB.inbound, hbonePortByIp: { [WAYPOINT_POD_IP]: portsW.inbound } });
    const labels = ['ztunnel A', 'waypoint', 'ztunnel B'];
    return {
      name,
      http: { host: WAYPOINT_SERVICE_VIP, port: portsA.outbound },
      iperf: { host: WAYPOINT_SERVICE_VIP, port: portsA.outbound },
      groups: children.map((child, i) => ({ label: labels[i]!, pids: () => [child.pid] })),
      heapSampling: async (dir) => {
        for (const [i, child] of children.entries()) await child.heapSampling(dir && join(dir, `${name}-${['a', 'w', 'b'][i]!}.heapprofile`));
      },
      memory: async (gc, trim) => Promise.all(children.map(async (child, i) => ({ label: labels[i]!, memory: await child.memory(gc, trim) }))),
      close: async () => {
        for (const child of children) await child.stop();
      },
    };
  } catch (error) {
    for (const child of children) await child.stop();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

async function iperf(target: Address, seconds: number, bytes: string | undefined): Promise<{ gbps: number; seconds: number }> {
  const argv = ['iperf3', '-c', target.host, '-p', String(target.port), ...(bytes ? ['-n', bytes] : ['-t', String(seconds), '-O', '1']), '-J', '--connect-timeout', '5000'];
  const r = await runCommand(argv, { timeoutMs: 600_000 });
  const parsed = parseIperf3(r.stdout || r.stderr);
  return { gbps: parsed.receivedBitsPerSecond / 1e9, seconds: parsed.durationSeconds };
}

async function wrk(target: Address, connections: number, seconds: number) {
  const argv = ['wrk', '--latency', '-t', '1', '-c', String(connections), '-d', `${seconds}s`, '--timeout', '5s', `http://${target.host}:${target.port}/`];
  const r = await runCommand(argv, { timeoutMs: (seconds + 30) * 1000 });
  if (r.code !== 0) throw new Error(`wrk failed: ${r.stderr || r.stdout}`);
  return parseWrk(r.stdout);
}

async function fixedRate(target: Address, rate: number, seconds: number): Promise<FixedRateResult> {
  const argv = fixedRateArgv(target, { rate, durationSeconds: seconds, connections: LATENCY_CONNECTIONS, warmupSeconds: 1 });
  const r = await runCommand(argv, { timeoutMs: (seconds + 60) * 1000 });
  if (r.code !== 0) throw new Error(`fixed-rate client failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as FixedRateResult;
}

function cpuOf(costs: GroupCost[]): Array<{ label: string; cpuSeconds: number }> {
  return costs.map((cost) => ({ label: cost.label, cpuSeconds: cost.cpuSeconds }));
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

interface Sample {
  value: number;
  /** Requests served in the window, for CPU seconds per 1,000 requests. */
  requests?: number;
  /** Bytes carried in the window (10^9), for CPU seconds per GB. */
  gigabytes?: number;
  extra?: Record<string, number | string>;
}

/** Read and write system calls (/proc/<pid>/io syscr + syscw) and voluntary context switches (sleeps) of a group's processes. */
function kernelCounters(groups: OpenPath['groups']): { syscalls: number; sleeps: number } {
  let syscalls = 0;
  let sleeps = 0;
  for (const group of groups) {
    for (const pid of group.pids()) {
      try {
        const io = readFileSync(`/proc/${pid}/io`, 'utf8');
        syscalls += Number(/syscr: (\d+)/.exec(io)?.[1] ?? 0) + Number(/syscw: (\d+)/.exec(io)?.[1] ?? 0);
        sleeps += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      } catch {
        // gone
      }
    }
  }
  return { syscalls, sleeps };
}

/** One measurement of one path, with the CPU time its processes spent meanwhile. */
async function sample(path: OpenPath, run: () => Promise<Sample>): Promise<Sample & { cpu: Array<{ label: string; cpuSeconds: number }> }> {
  const sampler = new CostSampler(path.groups);
  const kernelBefore = kernelCounters(path.groups);
  const r = await run();
  const cpu = cpuOf(sampler.stop());
  const kernelAfter = kernelCounters(path.groups);
  const syscalls = kernelAfter.syscalls - kernelBefore.syscalls;
  const sleeps = kernelAfter.sleeps - kernelBefore.sleeps;
  const extra: Record<string, number | string> = { ...r.extra };
  // Read/write system calls and sleeps of the proxies (all of them) per request, or per MB.
  if (r.requests !== undefined && path.groups.length) {
    extra.rwCallsPerReq = syscalls / r.requests;
    extra.sleepsPerReq = sleeps / r.requests;
  }
  if (r.gigabytes !== undefined && path.groups.length) {
    extra.rwCallsPerMB = syscalls / (r.gigabytes * 1000);
    extra.sleepsPerMB = sleeps / (r.gigabytes * 1000);
  }
  if (r.requests !== undefined && path.groups.length) {
    const total = cpu.reduce((sum, c) => sum + c.cpuSeconds, 0);
    extra.cpuPer1k = (total / r.requests) * 1000;
    extra.cpuPer1kBusiest = (Math.max(...cpu.map((c) => c.cpuSeconds)) / r.requests) * 1000;
  }
  if (r.gigabytes !== undefined && path.groups.length) {
    extra.cpuPerGB = cpu.reduce((sum, c) => sum + c.cpuSeconds, 0) / r.gigabytes;
  }
  await sleep(300);
  return { ...r, extra, cpu };
}

/** The run with the median value; the other runs' values and the medians of the numeric extras are attached. */
function summarizeRuns(path: PathName, test: string, unit: string, runs: Array<Sample & { cpu: Row['cpu'] }>): Row {
  const mid = median(runs.map((r) => r.value));
  const chosen = runs.find((r) => r.value === mid)!;
  const extra: Record<string, number | string> = {};
  for (const key of Object.keys(chosen.extra ?? {})) {
    const numbers = runs.map((r) => r.extra?.[key]).filter((v): v is number => typeof v === 'number');
    extra[key] = numbers.length === runs.length ? median(numbers) : chosen.extra![key]!;
  }
  if (runs.length > 1) {
    // Neighbours only ever slow a run down: the best run is the least disturbed one.
    const lowerIsBetter = unit.startsWith('ms');
    extra.best = lowerIsBetter ? Math.min(...runs.map((r) => r.value)) : Math.max(...runs.map((r) => r.value));
    for (const key of ['cpuPer1k', 'cpuPerGB']) {
      const numbers = runs.map((r) => r.extra?.[key]).filter((v): v is number => typeof v === 'number');
      if (numbers.length) extra[`${key}Best`] = Math.min(...numbers);
    }
    extra.runs = runs.map((r) => r.value.toFixed(unit === 'req/s' ? 0 : 3)).join(' ');
  }
  return { path, test, value: mid, unit, extra, cpu: chosen.cpu };
}

function format(row: Row): string {
  const extra = Object.entries(row.extra ?? {})
    .map(([k, v]) => `${k}=${typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3)) : v}`)
    .join(' ');
  const cpu = row.cpu?.length ? ` cpu[${row.cpu.map((c) => `${c.label}=${c.cpuSeconds.toFixed(2)}s`).join(', ')}]` : '';
  return `${row.path.padEnd(10)} ${row.test.padEnd(20)} ${row.value.toFixed(row.unit === 'req/s' ? 0 : 3).padStart(9)} ${row.unit.padEnd(7)} ${extra}${cpu}`;
}

interface Options {
  seconds: number;
  bytes?: string;
  rate: number;
  repeat: number;
  idle: number;
}

interface Test {
  name: string;
  unit: string;
  run(path: OpenPath): Promise<Sample>;
}

function testsFor(cases: CaseName[], options: Options): Test[] {
  const tests: Test[] = [];
  if (cases.includes('throughput')) {
    tests.push({
      name: options.bytes ? `iperf3 -n ${options.bytes}` : 'iperf3 1 stream',
      unit: 'Gbit/s',
      run: async (path) => {
        const r = await iperf(path.iperf, options.seconds, options.bytes);
        return { value: r.gbps, gigabytes: (r.gbps * r.seconds) / 8, extra: { seconds: r.seconds } };
      },
    });
  }
  if (cases.includes('rr')) {
    for (const connections of [1, SATURATED_CONNECTIONS]) {
      tests.push({
        name: `wrk c=${connections}`,
        unit: 'req/s',
        run: async (path) => {
          const r = await wrk(path.http, connections, options.seconds);
          return { value: r.requestsPerSecond, requests: r.requests, extra: { p50ms: r.latencyMs.p50 ?? NaN, p99ms: r.latencyMs.p99 ?? NaN, errors: r.errors } };
        },
      });
    }
  }
  if (cases.includes('latency')) {
    tests.push({
      name: `fixed ${options.rate} req/s`,
      unit: 'ms p50',
      run: async (path) => {
        const r = await fixedRate(path.http, options.rate, options.seconds);
        return {
          value: r.latencyUs.p50 / 1000,
          // The warm-up second's requests are inside the CPU window too.
          requests: r.completed + options.rate,
          extra: { p99ms: r.latencyUs.p99 / 1000, p999ms: r.latencyUs.p999 / 1000, maxms: r.latencyUs.max / 1000, errors: r.errors, lagP99ms: r.scheduleLagUs.p99 / 1000 },
        };
      },
    });
  }
  return tests;
}

async function reportRss(path: OpenPath, when: string, gc = false, trim = false): Promise<Record<string, number>> {
  const rss: Record<string, number> = {};
  if (!path.groups.length) return rss;
  const memory = path.memory ? await path.memory(gc, trim) : [];
  const costs = new CostSampler(path.groups).stop();
  for (const group of costs) {
    rss[group.label] = group.rssStartMiB;
    const heap = memory.find((m) => m.label === group.label)?.memory;
    const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
    const detail = heap ? ` (heapUsed ${mib(heap.heapUsed)}, heapTotal ${mib(heap.heapTotal)}, external ${mib(heap.external)}, arrayBuffers ${mib(heap.arrayBuffers)} MiB)` : '';
    console.log(`${path.name.padEnd(10)} RSS ${when.padEnd(17)} ${group.label}: ${group.rssStartMiB.toFixed(1)} MiB${detail}`);
  }
  return rss;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      paths: { type: 'string', default: 'direct,ambit,stunnel' },
      ambit: { type: 'string', multiple: true, default: [] },
      external: { type: 'string', multiple: true, default: [] },
      cases: { type: 'string', default: 'throughput,rr,latency' },
      seconds: { type: 'string', default: '10' },
      bytes: { type: 'string' },
      rate: { type: 'string', default: '1000' },
      idle: { type: 'string', default: '5' },
      repeat: { type: 'string', default: '1' },
      profile: { type: 'string' },
      'heap-profile': { type: 'string' },
      'node-arg': { type: 'string', multiple: true, default: [] },
      'log-level': { type: 'string', default: 'info' },
      json: { type: 'string' },
      keep: { type: 'boolean', default: false },
      tsx: { type: 'boolean', default: false },
      'memory-detail': { type: 'boolean', default: false },
    },
    strict: true,
  });
  // `--ambit label=/path/to/checkout` adds ambit paths run from other checkouts (e.g. a pristine copy for before/after).
  const variants = new Map<string, string>([['ambit', checkout]]);
  for (const spec of values.ambit) {
    const [label, root] = spec.split('=');
    if (!label || !root) throw new Error(`--ambit wants label=/path/to/checkout, got ${spec}`);
    variants.set(label, root);
  }
  // `--external label=host:port@pid,pid` measures a proxy started by hand that leads to nginx (HTTP cases only).
  const externals = new Map<string, OpenPath>();
  for (const spec of values.external) {
    const match = /^([^=]+)=([^:]+):(\d+)@([\d,]+)$/.exec(spec);
    if (!match) throw new Error(`--external wants label=host:port@pid[,pid], got ${spec}`);
    const [, label, host, port, pids] = match as unknown as [string, string, string, string, string];
    const address = { host, port: Number(port) };
    const groups = pids.split(',').map((pid) => ({ label: `${label} pid ${pid}`, pids: () => [Number(pid)] }));
    externals.set(label, { name: label, http: address, iperf: address, groups, close: async () => undefined });
  }
  const paths = values.paths.split(',').map((p) => p.trim());
  const cases = values.cases.split(',').map((c) => c.trim()) as CaseName[];
  const waypointVariant = (p: string) => (p.endsWith('-waypoint') && variants.has(p.slice(0, -'-waypoint'.length)) ? p.slice(0, -'-waypoint'.length) : undefined);
  for (const p of paths) if (!['direct', 'stunnel'].includes(p) && !variants.has(p) && !externals.has(p) && !waypointVariant(p)) throw new Error(`unknown path ${p}`);
  for (const c of cases) if (!['throughput', 'rr', 'latency'].includes(c)) throw new Error(`unknown case ${c}`);
  const options: Options = { seconds: Number(values.seconds), bytes: values.bytes, rate: Number(values.rate), repeat: Number(values.repeat), idle: Number(values.idle) };
  const workDir = mkdtempSync(join(tmpdir(), 'ambit-perf-'));
  const profileDir = values.profile ? resolve(values.profile) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const heapDir = values['heap-profile'] ? resolve(values['heap-profile']) : undefined;
  if (heapDir) mkdirSync(heapDir, { recursive: true });
  console.log(`# loopback HBONE harness: node ${process.version}, paths ${paths.join(', ')}, cases ${cases.join(', ')}, ${options.seconds} s each, ${options.repeat} run(s) interleaved, work dir ${workDir}`);
  const servers = await startServers(workDir);
  const open: OpenPath[] = [];
  const rows: Row[] = [];
  const rss: Record<string, Record<string, number>> = {};
  try {
    for (const name of paths) {
      open.push(
        externals.has(name)
          ? externals.get(name)!
          : name === 'direct'
          ? directPath()
          : name === 'stunnel'
            ? await stunnelPath(workDir, await generateTunnelCerts(mkdtempSync(join(workDir, 'certs-'))))
            : waypointVariant(name)
              ? await waypointPath(name, variants.get(waypointVariant(name)!)!, workDir, values['node-arg'], profileDir, values['log-level'], values.tsx)
              : await ambitPath(name, variants.get(name)!, workDir, values['node-arg'], profileDir, values['log-level'], values.tsx),
      );
    }
    for (const path of open) await reportRss(path, 'before load');
    // Warm-up: JIT, and the pooled HBONE session exists before anything is measured.
    for (const path of open) await wrk(path.http, 4, 1);
    // Allocation sampling covers the measured runs only (after the warm-up).
    if (heapDir) for (const path of open) await path.heapSampling?.();
    for (const test of testsFor(cases, options)) {
      // Runs of different paths alternate, so that a noisy neighbour hits them alike.
      const runs = new Map<string, Array<Sample & { cpu: Row['cpu'] }>>();
      for (let i = 0; i < options.repeat; i++) {
        for (const path of open) {
          const list = runs.get(path.name) ?? [];
          list.push(await sample(path, () => test.run(path)));
          runs.set(path.name, list);
        }
      }
      for (const path of open) {
        const row = summarizeRuns(path.name, test.name, test.unit, runs.get(path.name)!);
        rows.push(row);
        console.log(format(row));
      }
    }
    if (heapDir) {
      for (const path of open) await path.heapSampling?.(heapDir);
      console.log(`# allocation profiles in ${heapDir}; summarise with: node --import tsx bench/perf/heapprofile-top.ts <file>`);
    }
    await sleep(options.idle * 1000);
    for (const path of open) rss[path.name] = await reportRss(path, 'idle after load');
    if (values['memory-detail']) {
      for (const path of open) await reportRss(path, 'after a full GC', true);
      for (const path of open) await reportRss(path, '+ malloc_trim', true, true);
    }
  } finally {
    for (const path of open) await path.close();
    for (const server of servers) await server.stop();
    await stopAllSpawned();
  }
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ node: process.version, options, paths, rows, rss }, null, 2)}\n`);
  if (profileDir) console.log(`# CPU profiles in ${profileDir}/<path>-{a,b}/ (the largest file is the main thread); summarise with: node --import tsx bench/perf/cpuprofile-top.ts <file>`);
  for (const name of paths) {
    for (const log of [`${name}-ztunnel-a.log`, `${name}-waypoint.log`, `${name}-ztunnel-b.log`].map((f) => join(workDir, f))) {
      try {
        const text = readFileSync(log, 'utf8');
        const warnings = text.split('\n').filter((line) => /"level":(40|50|60)/.test(line));
        if (warnings.length) console.log(`# ${log}: ${warnings.length} warnings/errors, first: ${warnings[0]}`);
      } catch {
        // not an ambit path
      }
    }
  }
  if (values.keep) console.log(`# logs kept in ${workDir}`);
  else rmSync(workDir, { recursive: true, force: true });
}

main().catch(async (error: unknown) => {
  console.error(error instanceof Error ? error.stack : String(error));
  await stopAllSpawned();
  process.exit(1);
});
