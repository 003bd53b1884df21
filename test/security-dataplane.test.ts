// Lab (one cluster, two nodes): data-plane security findings of issue 11 — a pod with a mesh
// certificate of its own forging `forwarded` past an ipBlocks DENY, and client headers growing metrics.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mintMeshCertificate, type MeshCertificate } from '../bench/soak/mesh-certificate.js';
import { readState } from '../src/lab/state.js';
import { ambit, kubectl, rolloutStatus, samples, waitFor } from './helpers/lab.js';
import { curlFrom, inPodNetwork, pods, runJsonScript, ztunnelMetrics, type PodInfo, type ProbeResult } from './helpers/mesh.js';
import { labDownChecked } from './helpers/multicluster.js';

const CTX = 'lab-cluster1';
const CLUSTER = 'cluster1';
const ATTACKER_IDENTITY = 'spiffe://cluster.local/ns/evil/sa/evil';
const HBONE_PORT = 15008;
/** Starts every random label value of the flood, to look for them in /metrics. */
const RANDOM_PREFIX = 'zzforged';
let labPids: number[] = [];
const numbers: string[] = [];

/** A pod in `evil`, not enrolled, service account `evil`: it speaks HBONE itself (the host's node, in its network namespace). */
const attackerManifest = [
  'apiVersion: v1',
  'kind: ServiceAccount',
  'metadata:',
  '  name: evil',
  '  namespace: evil',
  '---',
  'apiVersion: apps/v1',
  'kind: Deployment',
  'metadata:',
  '  name: attacker',
  '  namespace: evil',
  'spec:',
  '  replicas: 1',
  '  selector:',
  '    matchLabels:',
  '      app: attacker',
  '  template:',
  '    metadata:',
  '      labels:',
  '        app: attacker',
  '    spec:',
  '      terminationGracePeriodSeconds: 0',
  '      serviceAccountName: evil',
  '      containers:',
  '      - name: attacker',
  '        image: docker.io/curlimages/curl:8.16.0',
  '        command: ["/bin/sleep", "infinity"]',
  '',
].join('\n');

const denyAttackerIp = (ip: string) =>
  JSON.stringify({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'deny-attacker-ip', namespace: 'sample' },
    spec: { selector: { matchLabels: { app: 'helloworld' } }, action: 'DENY', rules: [{ from: [{ source: { ipBlocks: [`${ip}/32`] } }] }] },
  });

/** Non-comment lines of a Prometheus text exposition: one per series. */
const seriesCount = (metrics: string) => metrics.split('\n').filter((line) => line.trim() && !line.startsWith('#')).length;

describe('data-plane security (issue 11): what an HBONE client claims in headers', { timeout: 600_000 }, () => {
  let attacker: PodInfo;
  let client: PodInfo;
  let target: PodInfo;
  let certificate: MeshCertificate;
  const fromAttacker = <T>(script: string, request: object, timeoutMs = 30_000) =>
    runJsonScript<T>((argv) => inPodNetwork(CLUSTER, 'evil', attacker.name, 'attacker', argv, timeoutMs), script, request);
  const probe = (requests: Array<{ method: string; authority: string; headers?: Record<string, string> }>) =>
    fromAttacker<ProbeResult>('test/helpers/hbone-probe.ts', { host: target.ip, port: HBONE_PORT, certPem: certificate.certPem, keyPem: certificate.keyPem, caPem: certificate.caPem, requests });

  before(async () => {
    if (readState()) await ambit(['lab', 'down']);
    const up = await ambit(['lab', 'up', '-f', 'topologies/one-cluster.yaml'], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    labPids = readState()!.processes.map((p) => p.pid);
    const install = await ambit(['install', '--context', CTX, '--cluster-name', CLUSTER], { timeoutMs: 300_000 });
    assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);

    await kubectl(CTX, ['create', 'ns', 'sample']);
    await kubectl(CTX, ['label', 'namespace', 'sample', 'istio.io/dataplane-mode=ambient']);
    await kubectl(CTX, ['create', 'ns', 'evil']);
    await kubectl(CTX, ['apply', '-f', '-'], attackerManifest);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}curl.yaml`]);
    await rolloutStatus(CTX, 'evil', ['attacker']);
    await rolloutStatus(CTX, 'sample', ['curl']);
    attacker = (await pods(CTX, 'evil', 'app=attacker'))[0]!;
    client = (await pods(CTX, 'sample', 'app=curl'))[0]!;
    // The policy exists before the pods it selects, so these tests do not depend on how running pods pick up policies.
    await kubectl(CTX, ['apply', '-f', '-'], denyAttackerIp(attacker.ip));
    for (const selector of ['service=helloworld', 'version=v1']) await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`, '-l', selector]);
    await rolloutStatus(CTX, 'sample', ['helloworld-v1']);
    target = (await pods(CTX, 'sample', 'app=helloworld'))[0]!;
    certificate = await mintMeshCertificate(CTX, ATTACKER_IDENTITY);
    await waitFor('the enrolled client to reach helloworld', async () => (await curlFrom(CLUSTER, 'sample', 'deploy/curl', 'helloworld.sample:5000/hello', 3)).code === 0, 90_000);
    // The attacker's own CONNECT is denied by its address: the policy is in force at the destination ztunnel.
    await waitFor('the ipBlocks DENY to reach the destination ztunnel', async () => (await probe([{ method: 'CONNECT', authority: `${target.ip}:5000` }])).statuses[0] === 401, 60_000);
    numbers.push(`attacker ${attacker.ip} on ${attacker.node}, client ${client.ip} on ${client.node}, helloworld ${target.ip} on ${target.node}`);
  });

  after(() => labDownChecked(labPids, numbers));

  it('a pod with its own mesh certificate cannot pass an ipBlocks DENY by forging `forwarded: for=` (finding 1)', async () => {
    // Positive control: the enrolled client, whose address the attacker claims, is answered through the mesh.
    for (let i = 0; i < 3; i++) {
      const r = await curlFrom(CLUSTER, 'sample', 'deploy/curl', 'helloworld.sample:5000/hello', 5);
      assert.equal(r.code, 0, `the enrolled client is not denied: ${r.stderr}`);
      assert.match(r.stdout, /Hello version: v1/);
    }
    const authority = `${target.ip}:5000`;
    const result = await probe([
      { method: 'CONNECT', authority },
      { method: 'CONNECT', authority, headers: { forwarded: `for="${client.ip}"` } },
      { method: 'CONNECT', authority, headers: { forwarded: `for=${client.ip}` } },
    ]);
    numbers.push(`attacker's CONNECTs to ${authority} (own address, forwarded for="${client.ip}", forwarded for=${client.ip}): ${JSON.stringify(result)}`);
    assert.equal(result.handshake, 'ok', 'the attacker completes mTLS with its own mesh certificate');
    assert.equal(result.statuses[0], 401, `the attacker's own CONNECT must be denied by the ipBlocks DENY, got ${result.statuses[0]}`);
    assert.equal(result.statuses[1], 401, `a CONNECT claiming \`forwarded: for="${client.ip}"\` (the enrolled client) must still be denied: the source is the TCP peer ${attacker.ip}, got ${result.statuses[1]}`);
    assert.equal(result.statuses[2], 401, `a CONNECT claiming \`forwarded: for=${client.ip}\` must still be denied, got ${result.statuses[2]}`);
  });

  it('denied CONNECTs with random `baggage` and `x-forwarded-network` do not grow the ztunnel /metrics (finding 3)', async () => {
    const connects = 2_000;
    const before = await ztunnelMetrics(CLUSTER, target.node);
    const flood = await fromAttacker<{ statuses?: Record<string, number>; seconds?: number; error?: string }>(
      'bench/soak/hbone-flood.ts',
      { host: target.ip, port: HBONE_PORT, certPem: certificate.certPem, keyPem: certificate.keyPem, caPem: certificate.caPem, authority: `${target.ip}:5000`, connects, sessions: 4, inFlight: 32, randomNetwork: true, valuePrefix: RANDOM_PREFIX },
      120_000,
    );
    const after = await ztunnelMetrics(CLUSTER, target.node);
    const grown = seriesCount(after) - seriesCount(before);
    numbers.push(`${connects} denied CONNECTs with random baggage and x-forwarded-network: ${JSON.stringify(flood)}`);
    numbers.push(`ztunnel (${target.node}) /metrics: ${seriesCount(before)} → ${seriesCount(after)} series (+${grown}), ${Buffer.byteLength(before)} → ${Buffer.byteLength(after)} bytes`);
    assert.equal(flood.error, undefined, `the flood could not run: ${flood.error}`);
    const answered = Object.values(flood.statuses ?? {}).reduce((n, count) => n + count, 0);
    assert.equal(answered, connects, `every CONNECT got an outcome: ${JSON.stringify(flood.statuses)}`);
    assert.equal(flood.statuses?.['200'], undefined, `no CONNECT of the attacker may pass its ipBlocks DENY: ${JSON.stringify(flood.statuses)}`);
    const leaked = after.split('\n').filter((line) => line.includes(RANDOM_PREFIX));
    assert.ok(grown <= 30, `the series may grow by the labels of one new peer (≤ 30), not per request: +${grown} series after ${connects} CONNECTs; e.g. ${(leaked[0] ?? '').slice(0, 400)}`);
    assert.equal(leaked.length, 0, `client-chosen header values must not become metric labels: ${leaked.length} lines carry them, e.g. ${(leaked[0] ?? '').slice(0, 400)}`);
  });
});
