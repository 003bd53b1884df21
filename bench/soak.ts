/**
 * `npm run soak`: what a client can grow, measured (not asserted). On a one-cluster lab with ambit
 * installed: HBONE CONNECTs with random `baggage` to a ztunnel, denied by a policy, from a client
 * with a mesh certificate, and CA calls with garbage tokens; ztunnel and control-plane RSS, metric
 * series and /metrics size before and after, as a markdown table (bench/results/soak-latest.md) and JSON.
 * Run it under the lab lock: `flock /tmp/ambit-lab.lock npm run soak -- [--quick] [--keep-lab]`.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readState } from '../src/lab/state.js';
import { BenchCommandError, runCommand } from './exec.js';
import { ambitCli, clusterPlan, kubectl, podsWithLabel, prepareHost, repoRoot } from './lab-kube.js';
import { containerPid } from './lab-pods.js';
import { mintMeshCertificate } from './soak/mesh-certificate.js';

const CLUSTER = 'cluster1';
const CTX = `lab-${CLUSTER}`;
const NAMESPACE = 'soak';
const PROBER = `spiffe://cluster.local/ns/${NAMESPACE}/sa/prober`;
const log = (line: string) => process.stderr.write(`[soak] ${line}\n`);

interface Snapshot {
  rssMiB: number;
  series: number;
  metricsBytes: number;
}

interface ProcessRow {
  process: string;
  before: Snapshot;
  after: Snapshot;
}

function rssMiB(pid: number | undefined): number {
  if (!pid) return NaN;
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  return Math.round((kb / 1024) * 10) / 10;
}

function inNode(node: string, argv: string[], timeoutMs = 600_000) {
  const plan = clusterPlan(CLUSTER).nodes.find((n) => n.name === node);
  if (!plan) throw new BenchCommandError(`no node ${node} in ${CLUSTER}`);
  return runCommand(['ip', 'netns', 'exec', plan.netns, ...argv], { timeoutMs });
}

async function metricsOf(node: string, url: string): Promise<{ series: number; bytes: number }> {
  const r = await inNode(node, ['curl', '-sS', '--max-time', '10', url], 30_000);
  if (r.code !== 0) throw new BenchCommandError(`GET ${url}: ${r.stderr}`);
  return { series: r.stdout.split('\n').filter((line) => line && !line.startsWith('#')).length, bytes: Buffer.byteLength(r.stdout) };
}

async function runScript(node: string, script: string, request: object): Promise<Record<string, unknown>> {
  const r = await inNode(node, [process.execPath, '--import', 'tsx', join(repoRoot, script), JSON.stringify(request)]);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new BenchCommandError(`${script} printed ${JSON.stringify(r.stdout.slice(0, 500))} ${r.stderr.slice(0, 500)}`);
  }
}

async function ensureLab(): Promise<boolean> {
  if (readState()) {
    log('reusing the lab that is up');
    return false;
  }
  await prepareHost(log);
  log('lab up (topologies/one-cluster.yaml)');
  await ambitCli(['lab', 'up', '-f', 'topologies/one-cluster.yaml'], 600_000);
  return true;
}

async function ensureInstalled(): Promise<void> {
  if ((await runCommand(['kubectl', '--context', CTX, 'get', 'deploy', '-n', 'istio-system', 'ambit-controlplane'])).code === 0) return;
  log('ambit install');
  await ambitCli(['install', '--context', CTX, '--cluster-name', CLUSTER], 600_000);
}

async function deployTarget(): Promise<{ name: string; node: string; ip: string }> {
  if ((await runCommand(['kubectl', '--context', CTX, 'get', 'ns', NAMESPACE])).code !== 0) {
    await kubectl(CTX, ['create', 'ns', NAMESPACE]);
    await kubectl(CTX, ['label', 'namespace', NAMESPACE, 'istio.io/dataplane-mode=ambient']);
    // Every CONNECT of the soak is denied: the path that grew metrics with client-chosen labels.
    const policy = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-prober', namespace: NAMESPACE }, spec: { action: 'DENY', rules: [{ from: [{ source: { principals: [PROBER.slice('spiffe://'.length)] } }] }] } };
    await kubectl(CTX, ['apply', '-f', '-'], { input: JSON.stringify(policy) });
    const samples = process.env.AMBIT_SAMPLES_DIR ?? join(repoRoot, '../shared/samples/istio/');
    for (const selector of ['service=helloworld', 'version=v1']) await kubectl(CTX, ['apply', '-n', NAMESPACE, '-f', join(samples, 'helloworld.yaml'), '-l', selector]);
  }
  await kubectl(CTX, ['-n', NAMESPACE, 'rollout', 'status', 'deploy/helloworld-v1', '--timeout=180s'], { timeoutMs: 200_000 });
  const pod = (await podsWithLabel(CTX, NAMESPACE, 'app=helloworld')).find((p) => p.phase === 'Running');
  if (!pod) throw new BenchCommandError('no running helloworld pod');
  return pod;
}

async function snapshot(target: { node: string }): Promise<{ ztunnel: Snapshot; controlPlane: Snapshot }> {
  const plan = clusterPlan(CLUSTER);
  const ztunnelPod = (await podsWithLabel(CTX, 'istio-system', 'app=ztunnel')).find((p) => p.node === target.node)!;
  const cp = (await podsWithLabel(CTX, 'istio-system', 'app=ambit-controlplane'))[0]!;
  const nodeIp = plan.nodes.find((n) => n.name === target.node)!.ip;
  const zm = await metricsOf(target.node, `http://${nodeIp}:15020/metrics`);
  const cm = await metricsOf(cp.node, `http://${cp.ip}:15014/metrics`);
  return {
    ztunnel: { rssMiB: rssMiB(containerPid(CLUSTER, 'istio-system', ztunnelPod.name, 'ztunnel')), series: zm.series, metricsBytes: zm.bytes },
    controlPlane: { rssMiB: rssMiB(containerPid(CLUSTER, 'istio-system', cp.name, 'controlplane')), series: cm.series, metricsBytes: cm.bytes },
  };
}

function markdown(rows: ProcessRow[], facts: string[]): string {
  const kib = (bytes: number) => `${(bytes / 1024).toFixed(0)} KiB`;
  const lines = [
    '| process | RSS before | RSS after | metric series before | after | /metrics before | after |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.process} | ${r.before.rssMiB} MiB | ${r.after.rssMiB} MiB | ${r.before.series} | ${r.after.series} | ${kib(r.before.metricsBytes)} | ${kib(r.after.metricsBytes)} |`),
    '',
    ...facts.map((f) => `- ${f}`),
  ];
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, 'keep-lab': { type: 'boolean', default: false }, connects: { type: 'string' }, 'ca-calls': { type: 'string' } } });
  const connects = Number(values.connects ?? (values.quick ? 2_000 : 20_000));
  const caCalls = Number(values['ca-calls'] ?? (values.quick ? 500 : 5_000));
  const started = Date.now();
  const broughtUp = await ensureLab();
  try {
    await ensureInstalled();
    const target = await deployTarget();
    const client = await mintMeshCertificate(CTX, PROBER);
    const rootPem = await kubectl(CTX, ['get', 'configmap', '-n', 'istio-system', 'istio-ca-root-cert', '-o', 'jsonpath={.data.root-cert\\.pem}']);
    const cp = (await podsWithLabel(CTX, 'istio-system', 'app=ambit-controlplane'))[0]!;

    const before = await snapshot(target);
    log(`${connects} HBONE CONNECTs with random baggage to ${target.ip}:15008`);
    const hbone = await runScript(target.node, 'bench/soak/hbone-flood.ts', {
      host: target.ip,
      port: 15008,
      certPem: client.certPem,
      keyPem: client.keyPem,
      caPem: client.caPem,
      authority: `${target.ip}:5000`,
      connects,
      sessions: 8,
      inFlight: 32,
    });
    log(`${caCalls} CA calls with garbage tokens to ${cp.ip}:15012`);
    const caStarted = Date.now();
    const ca = await runScript(cp.node, 'test/helpers/control-plane-probe.ts', {
      address: `${cp.ip}:15012`,
      serverName: 'ambit-controlplane.istio-system.svc',
      rootPem,
      clusterId: CLUSTER,
      identity: PROBER,
      garbageCalls: caCalls,
      concurrency: 64,
    });
    const caSeconds = (Date.now() - caStarted) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const after = await snapshot(target);

    const rows: ProcessRow[] = [
      { process: `ztunnel (${target.node})`, before: before.ztunnel, after: after.ztunnel },
      { process: 'control plane', before: before.controlPlane, after: after.controlPlane },
    ];
    const facts = [
      `${connects} CONNECTs (8 sessions × 32 in flight) in ${hbone.seconds} s, statuses ${JSON.stringify(hbone.statuses ?? hbone)}`,
      `${caCalls} CA calls with random JWT-shaped tokens (64 in flight) in ${caSeconds.toFixed(1)} s, outcomes ${JSON.stringify(ca.flood ?? ca)}`,
      `RSS after a 5 s pause; a flat series count is the goal (measured, not asserted)`,
    ];
    const md = markdown(rows, facts);
    process.stdout.write(md);
    const dir = join(repoRoot, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const stamp = new Date(started).toISOString().replace(/[:.]/g, '-');
    const report = { started: new Date(started).toISOString(), quick: values.quick, connects, caCalls, rows, hbone, ca: ca.flood, caSeconds };
    for (const name of [`soak-${stamp}.json`, 'soak-latest.json']) writeFileSync(join(dir, name), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(dir, 'soak-latest.md'), `# Soak (${report.started}${values.quick ? ', quick' : ''})\n\n${md}`);
    log(`report: bench/results/soak-latest.md (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  } finally {
    if (broughtUp && !values['keep-lab']) {
      log('lab down');
      await ambitCli(['lab', 'down'], 300_000);
    }
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`[soak] failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
