import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readState } from '../../src/lab/state.js';
import { ambit, kubectl, labExec, labLeftovers, samples, waitFor } from './lab.js';
import { pods, recordedLabPids } from './mesh.js';

/** A Gateway API east-west gateway (DESIGN §4), as seed 000 §7 applies it. */
export const eastWestGateway = (network: string, mode = 'Terminate', name = 'istio-eastwestgateway') =>
  [
    'apiVersion: gateway.networking.k8s.io/v1',
    'kind: Gateway',
    'metadata:',
    `  name: ${name}`,
    '  namespace: istio-system',
    '  labels:',
    `    topology.istio.io/network: "${network}"`,
    'spec:',
    '  gatewayClassName: "istio-east-west"',
    '  listeners:',
    '    - name: mesh',
    '      port: 15008',
    '      protocol: HBONE',
    '      tls:',
    `        mode: ${mode}`,
    ...(mode === 'Terminate' ? ['        options:', '          gateway.istio.io/tls-terminate-mode: ISTIO_MUTUAL'] : []),
    '',
  ].join('\n');

/** A Service labelled `istio.io/global=true` on port 5000 in namespace sample. */
export const globalService = (name: string, selector: Record<string, string>, o: { headless?: boolean } = {}) =>
  [
    'apiVersion: v1',
    'kind: Service',
    'metadata:',
    `  name: ${name}`,
    '  namespace: sample',
    '  labels:',
    '    istio.io/global: "true"',
    'spec:',
    ...(o.headless ? ['  clusterIP: None'] : []),
    '  selector:',
    ...Object.entries(selector).map(([k, v]) => `    ${k}: ${v}`),
    '  ports:',
    '  - name: http',
    '    port: 5000',
    '',
  ].join('\n');

export async function gatewayAddress(context: string, name = 'istio-eastwestgateway'): Promise<string> {
  return (await kubectl(context, ['-n', 'istio-system', 'get', 'svc', name, '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}'])).trim();
}

/** Cross-network connections a gateway of a cluster has carried (its `ambit_gateway_cross_network_connections_total`). */
export async function gatewayCrossings(cluster: { name: string; ctx: string }, gateway: string): Promise<number> {
  const [pod] = await pods(cluster.ctx, 'istio-system', `gateway.networking.k8s.io/gateway-name=${gateway}`);
  if (!pod) return 0;
  const r = await labExec(cluster.name, 'istio-system', pod.name, ['curl', '-sS', '--max-time', '3', 'http://127.0.0.1:15020/metrics']);
  let total = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /^ambit_gateway_cross_network_connections_total(?:\{[^}]*\})? (\d+(?:\.\d+)?)/.exec(line);
    if (m) total += Number(m[1]);
  }
  return total;
}

/**
 * `count` curls of `url` from deploy/curl, in one `lab exec` (a shell loop: starting an exec per
 * request would dominate the time): how often each helloworld version answered, and failures.
 */
export async function versions(cluster: string, count: number, url = 'helloworld.sample:5000/hello'): Promise<{ seen: Map<string, number>; failures: number }> {
  const script = `for i in $(seq 1 ${count}); do out=$(curl -sS --max-time 5 ${url} 2>&1) || out="FAILED $out"; echo "$out" | head -n 1; done`;
  const r = await labExec(cluster, 'sample', 'deploy/curl', ['sh', '-c', script]);
  const seen = new Map<string, number>();
  let answered = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /^Hello version: (v\d),/.exec(line);
    if (!m) continue;
    answered++;
    seen.set(m[1]!, (seen.get(m[1]!) ?? 0) + 1);
  }
  return { seen, failures: count - answered };
}

/**
 * `count` requests to helloworld in ONE curl (one kept-alive client connection) from deploy/curl:
 * how many each version answered, and how many TCP connections curl opened.
 */
export async function versionsOnOneConnection(cluster: string, count: number): Promise<{ seen: Map<string, number>; connects: number }> {
  const script = `curl -sS --max-time 30 $(for i in $(seq 1 ${count}); do printf "helloworld.sample:5000/hello "; done) -w "\\n%{num_connects}\\n"`;
  const r = await labExec(cluster, 'sample', 'deploy/curl', ['sh', '-c', script]);
  const seen = new Map<string, number>();
  for (const m of r.stdout.matchAll(/Hello version: (v\d)/g)) seen.set(m[1]!, (seen.get(m[1]!) ?? 0) + 1);
  const connects = r.stdout.split('\n').map((line) => line.trim()).filter((line) => /^\d+$/.test(line)).reduce((sum, n) => sum + Number(n), 0);
  return { seen, connects };
}

/**
 * A waypoint in `ctx`'s sample namespace for helloworld, a DestinationRule with one subset per
 * version label and a VirtualService splitting by `weights` (version → weight). Returns the undo.
 */
export async function helloworldSubsetRoute(ctx: string, weights: Record<string, number>): Promise<() => Promise<void>> {
  const waypoint = await ambit(['waypoint', 'apply', '--context', ctx, '-n', 'sample', '--wait']);
  assert.equal(waypoint.code, 0, waypoint.stderr);
  await kubectl(ctx, ['label', 'svc', 'helloworld', '-n', 'sample', 'istio.io/use-waypoint=waypoint', '--overwrite']);
  const versions = Object.keys(weights);
  await kubectl(ctx, ['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'helloworld', namespace: 'sample' }, spec: { host: 'helloworld', subsets: versions.map((v) => ({ name: v, labels: { version: v } })) } },
      { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'helloworld', namespace: 'sample' }, spec: { hosts: ['helloworld'], http: [{ route: versions.map((v) => ({ destination: { host: 'helloworld', subset: v }, weight: weights[v] })) }] } },
    ],
  }));
  return async () => {
    await kubectl(ctx, ['delete', 'virtualservice,destinationrule', 'helloworld', '-n', 'sample', '--ignore-not-found']);
    await kubectl(ctx, ['label', 'svc', 'helloworld', '-n', 'sample', 'istio.io/use-waypoint-']);
    await ambit(['waypoint', 'delete', 'waypoint', '--context', ctx, '-n', 'sample']);
  };
}

export async function onlyVersions(cluster: string, expected: string[], what: string, timeoutMs = 60_000, url?: string): Promise<void> {
  await waitFor(what, async () => {
    const { seen, failures } = await versions(cluster, 6, url);
    return failures === 0 && [...seen.keys()].sort().join(',') === [...expected].sort().join(',');
  }, timeoutMs);
}

export interface Capture {
  /** Raw tcpdump text (`-A`: payload as ASCII). */
  text: string;
  /** `src:sport > dst:dport` of every IPv4 TCP packet. */
  flows: Set<string>;
}

/** Runs tcpdump in a network namespace (on every interface) while `during` runs. */
export async function captureIn(netns: string, during: () => Promise<unknown>): Promise<Capture> {
  const dump = spawn('ip', ['netns', 'exec', netns, 'tcpdump', '-i', 'any', '-nn', '-A', '-l', '-U', 'tcp', 'and', 'not', 'port', '6443'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  let ready = false;
  dump.stdout.on('data', (d: Buffer) => (text += d.toString('latin1')));
  dump.stderr.on('data', (d: Buffer) => (ready ||= d.toString().includes('listening')));
  try {
    await waitFor(`tcpdump in ${netns}`, async () => ready, 10_000);
    await during();
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    dump.kill('SIGINT');
    await new Promise((r) => dump.once('exit', r));
  }
  const flows = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+):/.exec(line);
    if (m) flows.add(`${m[1]}:${m[2]} > ${m[3]}:${m[4]}`);
  }
  return { text, flows };
}

export interface MeshCluster {
  name: string;
  ctx: string;
  network: string;
}

/**
 * Seed 000 §4–§7 on lab clusters: Istio's sample CA in `cacerts`, `ambit install` with the cluster
 * name and network, the network label on the system namespace, `ambit link` between all of them,
 * and an east-west Gateway each. Returns each cluster's gateway address.
 */
export async function meshClusters(clusters: readonly MeshCluster[]): Promise<Map<string, string>> {
  for (const c of clusters) {
    await kubectl(c.ctx, ['create', 'ns', 'istio-system']);
    await kubectl(c.ctx, ['create', 'secret', 'generic', 'cacerts', '-n', 'istio-system', ...['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem'].map((f) => `--from-file=${samples}certs/${f}`)]);
    const install = await ambit(['install', '--context', c.ctx, '--cluster-name', c.name, '--network', c.network], { timeoutMs: 300_000 });
    assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);
    await kubectl(c.ctx, ['label', 'ns', 'istio-system', `topology.istio.io/network=${c.network}`, '--overwrite']);
  }
  const link = await ambit(['link', ...clusters.flatMap((c) => ['--context', c.ctx])], { timeoutMs: 180_000 });
  assert.equal(link.code, 0, `${link.stdout}\n${link.stderr}`);
  const gateways = new Map<string, string>();
  for (const c of clusters) {
    await kubectl(c.ctx, ['apply', '--server-side', '-f', '-'], eastWestGateway(c.network));
    gateways.set(c.name, await waitFor(`the east-west gateway address in ${c.name}`, () => gatewayAddress(c.ctx)));
  }
  return gateways;
}

/** Brings a fresh lab up from a topology file; returns the PIDs it started. */
export async function freshLab(topology: string): Promise<number[]> {
  if (readState()) await ambit(['lab', 'down']);
  const up = await ambit(['lab', 'up', '-f', topology], { timeoutMs: 400_000 });
  assert.equal(up.code, 0, up.stderr);
  return readState()!.processes.map((p) => p.pid);
}

/** Prints the numbers, takes the lab down and checks that none of its processes (pods' included) is left. */
export async function labDownChecked(labPids: number[], numbers: string[]): Promise<void> {
  for (const line of numbers) console.log(`# number: ${line}`);
  // Pods' container processes too: a gateway once outlived `lab down` (its netns is not visible from the host).
  const pids = [...labPids, ...recordedLabPids()];
  const down = await ambit(['lab', 'down']);
  assert.equal(down.code, 0, down.stderr);
  assert.deepEqual(await labLeftovers(pids), []);
}
