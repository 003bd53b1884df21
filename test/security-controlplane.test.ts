// Lab (one cluster): control-plane security findings of issue 11 — DENY rules with HTTP attributes,
// and tokens that are no mesh credential (remote-secret reader token, API-server audience) at the CA and xDS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { readState } from '../src/lab/state.js';
import { ambit, kubectl, labExec, repoRoot, rolloutStatus, samples, waitFor } from './helpers/lab.js';
import { curlFrom, inNode, pods, ztunnelMetrics, type PodInfo } from './helpers/mesh.js';
import { labDownChecked } from './helpers/multicluster.js';

const CTX = 'lab-cluster1';
const CLUSTER = 'cluster1';
const SERVER_NAME = 'ambit-controlplane.istio-system.svc';
let labPids: number[] = [];
const numbers: string[] = [];

interface Outcome {
  code: string;
  details: string;
}

async function controlPlaneProbe(node: string, request: object): Promise<{ results: Array<{ ca: Outcome; xds: Outcome }>; flood: Record<string, number> }> {
  const r = await inNode(CLUSTER, node, [process.execPath, '--import', 'tsx', `${repoRoot}test/helpers/control-plane-probe.ts`, JSON.stringify(request)], 180_000);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as { results: Array<{ ca: Outcome; xds: Outcome }>; flood: Record<string, number> };
  } catch {
    throw new Error(`probe printed ${JSON.stringify(r.stdout)} ${r.stderr}`);
  }
}

/** A token from the TokenRequest API for a service account, with the given audiences (none: the API server's). */
async function requestToken(namespace: string, serviceAccount: string, audiences: string[]): Promise<string> {
  const body = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences, expirationSeconds: 3600 } });
  const out = await kubectl(CTX, ['create', '--raw', `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`, '-f', '-'], body);
  return (JSON.parse(out) as { status: { token: string } }).status.token;
}

describe('control-plane security (issue 11): policies and credentials', { timeout: 900_000 }, () => {
  let target: PodInfo;

  before(async () => {
    if (readState()) await ambit(['lab', 'down']);
    const up = await ambit(['lab', 'up', '-f', 'topologies/one-cluster.yaml'], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    labPids = readState()!.processes.map((p) => p.pid);
    const install = await ambit(['install', '--context', CTX, '--cluster-name', CLUSTER], { timeoutMs: 300_000 });
    assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);
  });

  after(() => labDownChecked(labPids, numbers));

  it('DENY from namespace evil + to methods POST resets every TCP connection from a pod in evil', async () => {
    for (const ns of ['sample', 'evil', 'good']) {
      await kubectl(CTX, ['create', 'ns', ns]);
      await kubectl(CTX, ['label', 'namespace', ns, 'istio.io/dataplane-mode=ambient']);
    }
    // Applied before the pods exist, so this test does not depend on how running pods pick up policies.
    const policy = [
      'apiVersion: security.istio.io/v1',
      'kind: AuthorizationPolicy',
      'metadata:',
      '  name: no-posts-from-evil',
      '  namespace: sample',
      'spec:',
      '  action: DENY',
      '  rules:',
      '  - from:',
      '    - source:',
      '        namespaces: ["evil"]',
      '    to:',
      '    - operation:',
      '        methods: ["POST"]',
      '',
    ].join('\n');
    await kubectl(CTX, ['apply', '-f', '-'], policy);
    for (const selector of ['service=helloworld', 'version=v1']) await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`, '-l', selector]);
    for (const ns of ['evil', 'good']) await kubectl(CTX, ['apply', '-n', ns, '-f', `${samples}curl.yaml`]);
    await rolloutStatus(CTX, 'sample', ['helloworld-v1']);
    await rolloutStatus(CTX, 'evil', ['curl']);
    await rolloutStatus(CTX, 'good', ['curl']);
    target = (await pods(CTX, 'sample', 'app=helloworld'))[0]!;

    // Positive control: the mesh carries good's requests, and the policy is in force (evil refused at least once).
    await waitFor('good to reach helloworld', async () => (await curlFrom(CLUSTER, 'good', 'deploy/curl', 'helloworld.sample:5000/hello', 3)).code === 0, 90_000);
    await waitFor('the policy to reach the ztunnels', async () => (await curlFrom(CLUSTER, 'evil', 'deploy/curl', `http://${target.ip}:5000/hello`, 3)).code !== 0, 60_000);

    // GET is no POST, but ztunnel cannot see methods: the DENY applies to every connection from evil.
    for (let i = 0; i < 8; i++) {
      const url = i % 2 === 0 ? `http://${target.ip}:5000/hello` : 'helloworld.sample:5000/hello';
      const r = await curlFrom(CLUSTER, 'evil', 'deploy/curl', url, 5);
      assert.notEqual(r.code, 0, `evil reached helloworld (${url}): ${r.stdout}`);
      // 7: refused while connecting, 52/56: reset after connecting; never an answer or a timeout.
      assert.ok([7, 52, 56].includes(r.code), `evil's connection must be refused or reset (curl 7/52/56), got ${r.code}: ${r.stderr}`);
    }
    // Raw TCP, no HTTP at all: reset too.
    const raw = await labExec(CLUSTER, 'evil', 'deploy/curl', ['curl', '-sS', '--max-time', '4', `telnet://${target.ip}:5000`]);
    assert.ok(raw.code !== 0 && raw.code !== 28, `a raw TCP connection from evil stayed open (curl ${raw.code}): ${raw.stderr}`);
    for (let i = 0; i < 4; i++) assert.equal((await curlFrom(CLUSTER, 'good', 'deploy/curl', 'helloworld.sample:5000/hello', 5)).code, 0, 'good is not denied');
    const metrics = await ztunnelMetrics(CLUSTER, target.node);
    assert.match(metrics, /istio_tcp_connections_opened_total\{[^}]*source_principal="spiffe:\/\/cluster\.local\/ns\/evil\/sa\/curl"[^}]*response_flags="DENY"|istio_tcp_connections_opened_total\{[^}]*response_flags="DENY"[^}]*source_principal="spiffe:\/\/cluster\.local\/ns\/evil\/sa\/curl"/);
  });

  it('the reader token of a remote secret, and a token for the API server, are refused by the CA and xDS with the reason', async () => {
    const secretYaml = await ambit(['create-remote-secret', '--context', CTX, '--name', CLUSTER]);
    assert.equal(secretYaml.code, 0, secretYaml.stderr);
    const secret = parseAllDocuments(secretYaml.stdout)
      .map((doc) => doc.toJS() as { kind?: string; stringData?: Record<string, string> } | null)
      .find((doc) => doc?.kind === 'Secret' && doc.stringData?.[CLUSTER]);
    assert.ok(secret?.stringData, `no remote secret in ${secretYaml.stdout.length} bytes of output`);
    const kubeconfig = parseYaml(secret.stringData[CLUSTER]!) as { users: Array<{ user: { token: string } }> };
    const readerToken = kubeconfig.users[0]!.user.token;
    assert.ok(readerToken.length > 100, 'a reader token');
    const apiServerToken = await requestToken('evil', 'curl', []);
    const meshToken = await requestToken('evil', 'curl', ['istio-ca']);
    const rootPem = await kubectl(CTX, ['get', 'configmap', '-n', 'istio-system', 'istio-ca-root-cert', '-o', 'jsonpath={.data.root-cert\\.pem}']);
    const controlPlane = (await pods(CTX, 'istio-system', 'app=ambit-controlplane'))[0]!;

    const { results } = await controlPlaneProbe(controlPlane.node, {
      address: `${controlPlane.ip}:15012`,
      serverName: SERVER_NAME,
      rootPem,
      clusterId: CLUSTER,
      identity: 'spiffe://cluster.local/ns/evil/sa/curl',
      tokens: [readerToken, apiServerToken, meshToken],
    });
    const [reader, apiServer, mesh] = results;
    assert.deepEqual([reader!.ca.code, reader!.xds.code], ['UNAUTHENTICATED', 'UNAUTHENTICATED'], JSON.stringify(reader));
    assert.match(reader!.ca.details, /legacy Secret-based service account token/);
    assert.match(reader!.xds.details, /legacy Secret-based service account token/);
    assert.deepEqual([apiServer!.ca.code, apiServer!.xds.code], ['UNAUTHENTICATED', 'UNAUTHENTICATED'], JSON.stringify(apiServer));
    assert.match(apiServer!.ca.details, /audience/);
    assert.match(apiServer!.xds.details, /audience/);
    // Positive control: a projected-style token for istio-ca gets the workload its own identity, but no xDS.
    assert.equal(mesh!.ca.code, 'OK', JSON.stringify(mesh));
    assert.equal(mesh!.xds.code, 'PERMISSION_DENIED', JSON.stringify(mesh));
    assert.match(mesh!.xds.details, /service account evil\/curl may not subscribe to xDS/);
  });

  it('a flood of garbage tokens is refused without taking the control plane down; readiness stays ready', async () => {
    const controlPlane = (await pods(CTX, 'istio-system', 'app=ambit-controlplane'))[0]!;
    const rootPem = await kubectl(CTX, ['get', 'configmap', '-n', 'istio-system', 'istio-ca-root-cert', '-o', 'jsonpath={.data.root-cert\\.pem}']);
    const started = Date.now();
    const { flood } = await controlPlaneProbe(controlPlane.node, {
      address: `${controlPlane.ip}:15012`,
      serverName: SERVER_NAME,
      rootPem,
      clusterId: CLUSTER,
      identity: 'spiffe://cluster.local/ns/evil/sa/curl',
      garbageCalls: 1000,
      concurrency: 64,
    });
    numbers.push(`1,000 garbage-token CA calls: ${((Date.now() - started) / 1000).toFixed(1)} s, outcomes ${JSON.stringify(flood)}`);
    assert.equal((flood.UNAUTHENTICATED ?? 0) + (flood.RESOURCE_EXHAUSTED ?? 0), 1000, JSON.stringify(flood));
    const after = (await pods(CTX, 'istio-system', 'app=ambit-controlplane'))[0]!;
    assert.equal(after.restarts, controlPlane.restarts);
    assert.equal(after.ready, true);
    const ready = await inNode(CLUSTER, controlPlane.node, ['curl', '-sS', '--max-time', '5', `http://${controlPlane.ip}:8080/ready`]);
    assert.match(ready.stdout, /^ready/);
  });
});
