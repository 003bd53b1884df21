import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { readState } from '../src/lab/state.js';
import { loadCa, issueLeaf, createRootCa } from '../src/util/pki.js';
import { ambit, kubectl, labExec, repoRoot, rolloutStatus, samples, sh, waitFor } from './helpers/lab.js';
import { containerPid, curlFrom, hboneProbe, inNode, nodeIp, pods, rssMiB, ztunnelMetrics, ztunnelPodOn, type PodInfo } from './helpers/mesh.js';
import { labDownChecked } from './helpers/multicluster.js';

const CTX = 'lab-cluster1';
const CLUSTER = 'cluster1';
const CURL_IDENTITY = 'spiffe://cluster.local/ns/sample/sa/curl';
let labPids: number[] = [];
const numbers: string[] = [];

const hello = (r: { stdout: string }) => /^Hello version: (v\d), instance: (\S+)\n$/.exec(r.stdout);

/** Enough requests that a random 50/50 balancer misses a version with odds of 2^-23; helloVersions stops once both answered. */
const BOTH_VERSIONS = 24;

async function helloVersions(count: number, namespace = 'sample', target = 'deploy/curl', url = 'helloworld.sample:5000/hello'): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    if (seen.size === 2 && count >= BOTH_VERSIONS) break;
    const r = await curlFrom(CLUSTER, namespace, target, url);
    assert.equal(r.code, 0, `request ${i + 1} from ${namespace}/${target} to ${url} failed: ${r.stderr}`);
    const m = hello(r);
    assert.ok(m, `unexpected answer ${JSON.stringify(r.stdout)}`);
    seen.set(m[1]!, (seen.get(m[1]!) ?? 0) + 1);
  }
  return seen;
}

/** A node script: one keep-alive HTTP connection, one request per second; prints {ok, fail, connections}. */
function keepAliveScript(host: string, requests: number): string {
  return `const http=require('http');const agent=new http.Agent({keepAlive:true,maxSockets:1});let ports=new Set(),ok=0,fail=0;` +
    `const once=()=>new Promise(r=>{const q=http.get({host:'${host}',port:5000,path:'/hello',agent},res=>{res.resume();res.on('end',()=>{ports.add(q.socket.localPort);ok++;r()})});q.on('error',()=>{fail++;r()})});` +
    `(async()=>{for(let i=0;i<${requests};i++){await once();await new Promise(r=>setTimeout(r,1000))}console.log(JSON.stringify({ok,fail,connections:ports.size}))})()`;
}

/** Packets on the network's node segment during `action`, as tcpdump prints them (-nn -A). */
async function captureNodeSegment(action: () => Promise<void>): Promise<string> {
  const state = readState()!;
  const routerNetns = state.plan.networks[0]!.netns;
  const dump = spawn('ip', ['netns', 'exec', routerNetns, 'tcpdump', '-i', 'br0', '-nn', '-A', '-l', '-U', 'tcp'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  dump.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
  let ready = false;
  dump.stderr.on('data', (d: Buffer) => (ready ||= d.toString().includes('listening')));
  await waitFor('tcpdump to start', async () => ready, 10_000);
  await action();
  await new Promise((r) => setTimeout(r, 500));
  dump.kill('SIGINT');
  await new Promise((r) => dump.once('exit', r));
  return out;
}

describe('mesh: one cluster, ambient mode (seed 004, first half)', { timeout: 900_000 }, () => {
  let curl: PodInfo;
  let helloPods: PodInfo[] = [];
  let remoteHello: PodInfo;

  before(async () => {
    if (readState()) await ambit(['lab', 'down']);
    const up = await ambit(['lab', 'up', '-f', 'topologies/one-cluster.yaml'], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    labPids = readState()!.processes.map((p) => p.pid);
    const started = Date.now();
    const install = await ambit(['install', '--context', CTX, '--cluster-name', CLUSTER], { timeoutMs: 300_000 });
    assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);
    numbers.push(`ambit install until ready: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  after(() => labDownChecked(labPids, numbers));

  it('install: control plane and one ztunnel per node are ready; the manifests are the ones manifest generate prints', async () => {
    const ds = JSON.parse(await kubectl(CTX, ['get', 'ds', '-n', 'istio-system', 'ztunnel', '-o', 'json'])) as { status: { numberReady: number; desiredNumberScheduled: number } };
    assert.equal(ds.status.desiredNumberScheduled, 2);
    assert.equal(ds.status.numberReady, 2);
    const generated = await ambit(['manifest', 'generate', '--cluster-name', CLUSTER]);
    assert.equal(generated.code, 0, generated.stderr);
    const dryRun = await sh('kubectl', ['--context', CTX, 'apply', '--dry-run=server', '-f', '-'], { input: generated.stdout });
    assert.equal(dryRun.code, 0, dryRun.stderr);
    assert.match(dryRun.stdout, /daemonset.apps\/ztunnel (unchanged|configured)/);
  });

  it('seed 004: sample apps work in plain text before enrolment, across two nodes', async () => {
    await kubectl(CTX, ['create', 'ns', 'sample']);
    for (const selector of ['service=helloworld', 'version=v1', 'version=v2']) {
      await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`, '-l', selector]);
    }
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}curl.yaml`]);
    await rolloutStatus(CTX, 'sample', ['helloworld-v1', 'helloworld-v2', 'curl']);
    curl = (await pods(CTX, 'sample', 'app=curl'))[0]!;
    helloPods = await pods(CTX, 'sample', 'app=helloworld');
    const other = helloPods.find((p) => p.node !== curl.node);
    assert.ok(other, `the scheduler put every pod on ${curl.node}; the test needs a cross-node pair`);
    remoteHello = other;
    const seen = await helloVersions(BOTH_VERSIONS);
    assert.deepEqual([...seen.keys()].sort(), ['v1', 'v2']);
  });

  it('kubectl label namespace → mTLS without restarting pods; only 15008 between nodes, no clear text', async () => {
    const labelled = Date.now();
    await kubectl(CTX, ['label', 'namespace', 'sample', 'istio.io/dataplane-mode=ambient']);
    const serverMetric = `source_principal="${CURL_IDENTITY}"`;
    await waitFor('a request carried over HBONE (server-side ztunnel reports the curl identity)', async () => {
      const r = await curlFrom(CLUSTER, 'sample', 'deploy/curl', `http://${remoteHello.ip}:5000/hello`, 3);
      if (r.code !== 0) return false;
      return (await ztunnelMetrics(CLUSTER, remoteHello.node)).includes(serverMetric);
    }, 60_000);
    numbers.push(`kubectl label → first mTLS request: ${((Date.now() - labelled) / 1000).toFixed(2)} s`);

    const after = await pods(CTX, 'sample');
    for (const p of [curl, ...helloPods]) {
      const now = after.find((a) => a.name === p.name);
      assert.ok(now, `pod ${p.name} was replaced`);
      assert.equal(now.uid, p.uid);
      assert.equal(now.restarts, 0, `pod ${p.name} restarted`);
    }

    const seen = new Map<string, number>();
    const packets = await captureNodeSegment(async () => {
      for (const [k, v] of await helloVersions(20)) seen.set(k, v);
    });
    assert.deepEqual([...seen.keys()].sort(), ['v1', 'v2'], 'both versions answer through the mesh');
    assert.doesNotMatch(packets, /Hello version/, 'application payload crossed the node link in clear text');
    assert.doesNotMatch(packets, /GET \/hello/, 'application request crossed the node link in clear text');
    const ports = new Set<string>();
    for (const line of packets.split('\n')) {
      const m = /IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+):/.exec(line);
      if (!m) continue;
      const [, , sport, , dport] = m;
      // Control traffic is not pod traffic: node agents ↔ API server (6443), ztunnel ↔ control plane (TLS on 15012).
      if ([sport, dport].some((p) => p === '6443' || p === '15012')) continue;
      ports.add(Number(sport) === 15008 ? 'from 15008' : Number(dport) === 15008 ? 'to 15008' : `${sport}->${dport}`);
    }
    assert.ok(ports.has('to 15008'), `no HBONE packets captured: ${[...ports].join(', ')}`);
    assert.deepEqual([...ports].filter((p) => !p.includes('15008')), [], 'pod traffic between nodes must only use 15008');

    const metrics = await ztunnelMetrics(CLUSTER, remoteHello.node);
    assert.match(metrics, new RegExp(`istio_tcp_connections_opened_total\\{[^}]*reporter="destination"[^}]*source_principal="${CURL_IDENTITY}"`));
  });

  it('the curl certificate: SAN spiffe://cluster.local/ns/sample/sa/curl, 24 h lifetime', async () => {
    const out = await ambit(['proxy-config', 'certs', '--context', CTX, curl.node, '-o', 'json']);
    assert.equal(out.code, 0, out.stderr);
    const certs = JSON.parse(out.stdout) as Array<{ identity: string; state: string; notBefore?: string; notAfter?: string; chain: Array<{ uriSans: string[] }> }>;
    const cert = certs.find((c) => c.identity === CURL_IDENTITY);
    assert.ok(cert, `no certificate for ${CURL_IDENTITY}: ${certs.map((c) => c.identity).join(', ')}`);
    assert.equal(cert.state, 'valid');
    assert.deepEqual(cert.chain[0]!.uriSans, [CURL_IDENTITY]);
    const lifetimeH = (Date.parse(cert.notAfter!) - Date.parse(cert.notBefore!)) / 3_600_000;
    assert.ok(lifetimeH > 23.9 && lifetimeH < 24.1, `lifetime ${lifetimeH} h`);
    const workloads = await ambit(['proxy-config', 'workloads', '--context', CTX, curl.node]);
    assert.equal(workloads.code, 0, workloads.stderr);
    assert.match(workloads.stdout, /curl-\S+\s+.*HBONE/);
  });

  it('the CA refuses a ztunnel asking for an identity of a pod on another node', async () => {
    const otherNode = remoteHello.node;
    const ztunnel = await ztunnelPodOn(CTX, otherNode);
    const r = await labExec(CLUSTER, 'istio-system', ztunnel, [process.execPath, `${repoRoot}bin/ambit.js`, 'ztunnel', 'request-certificate', CURL_IDENTITY]);
    assert.notEqual(r.code, 0, `the CA issued ${CURL_IDENTITY} to the ztunnel on ${otherNode}: ${r.stdout}`);
    assert.match(r.stderr, new RegExp(`node ${otherNode}.*${CURL_IDENTITY.replace(/\//g, '\\/')}`));
    const own = await labExec(CLUSTER, 'istio-system', await ztunnelPodOn(CTX, curl.node), [process.execPath, `${repoRoot}bin/ambit.js`, 'ztunnel', 'request-certificate', CURL_IDENTITY]);
    assert.equal(own.code, 0, `the ztunnel on curl's node must get it: ${own.stderr}`);
  });

  it('HBONE server: foreign CA refused, non-CONNECT 400, CONNECT to another ip:port refused', async () => {
    const secret = JSON.parse(await kubectl(CTX, ['get', 'secret', '-n', 'istio-system', 'istio-ca-secret', '-o', 'json'])) as { data: Record<string, string> };
    const decode = (k: string) => Buffer.from(secret.data[k]!, 'base64').toString();
    const meshCa = await loadCa(decode('ca-cert.pem'), decode('ca-key.pem'));
    const meshClient = await issueLeaf(meshCa, { commonName: '', uris: ['spiffe://cluster.local/ns/sample/sa/probe'], client: true, server: true, lifetimeMs: 3_600_000 });
    const foreignCa = await createRootCa('someone else');
    const foreignClient = await issueLeaf(foreignCa, { commonName: '', uris: [CURL_IDENTITY], client: true, lifetimeMs: 3_600_000 });
    const base = { host: remoteHello.ip, port: 15008, caPem: meshCa.certPem };
    const node = curl.node;

    const good = await hboneProbe(CLUSTER, node, { ...base, certPem: meshClient.certPem, keyPem: meshClient.keyPem, requests: [
      { method: 'CONNECT', authority: `${remoteHello.ip}:5000` },
      { method: 'GET', authority: `${remoteHello.ip}:5000`, path: '/hello' },
      { method: 'CONNECT', authority: `${curl.ip}:5000` },
      { method: 'CONNECT', authority: 'not-an-address' },
    ] });
    assert.equal(good.handshake, 'ok');
    assert.equal(good.statuses[0], 200, 'positive control: a mesh client may CONNECT to the pod it dialled');
    assert.equal(good.statuses[1], 400, 'non-CONNECT must get 400');
    assert.equal(good.statuses[2], 400, 'CONNECT to an ip that is not the connection destination must be refused');
    assert.equal(good.statuses[3], 400, 'a malformed authority must be refused');

    const foreign = await hboneProbe(CLUSTER, node, { ...base, certPem: foreignClient.certPem, keyPem: foreignClient.keyPem, requests: [{ method: 'CONNECT', authority: `${remoteHello.ip}:5000` }] });
    assert.ok(foreign.handshake !== 'ok' || typeof foreign.statuses[0] !== 'number', `a client of another CA got through: ${JSON.stringify(foreign)}`);
    const metrics = await ztunnelMetrics(CLUSTER, remoteHello.node);
    assert.match(metrics, /untrusted/i, 'the refusal is visible in metrics');
  });

  it('unenrolled namespaces keep working in plain text, both ways with enrolled ones', async () => {
    await kubectl(CTX, ['create', 'ns', 'plain']);
    await kubectl(CTX, ['apply', '-n', 'plain', '-f', `${samples}sleep.yaml`]);
    await kubectl(CTX, ['apply', '-n', 'plain', '-f', `${samples}helloworld.yaml`, '-l', 'service=helloworld']);
    await kubectl(CTX, ['apply', '-n', 'plain', '-f', `${samples}helloworld.yaml`, '-l', 'version=v1']);
    await rolloutStatus(CTX, 'plain', ['sleep', 'helloworld-v1']);
    const fromPlain = await helloVersions(BOTH_VERSIONS, 'plain', 'deploy/sleep', 'helloworld.sample:5000/hello');
    assert.deepEqual([...fromPlain.keys()].sort(), ['v1', 'v2'], 'unenrolled → enrolled');
    const toPlain = await helloVersions(4, 'sample', 'deploy/curl', 'helloworld.plain:5000/hello');
    assert.deepEqual([...toPlain.keys()], ['v1'], 'enrolled → unenrolled');
    const within = await helloVersions(3, 'plain', 'deploy/sleep', 'helloworld.plain:5000/hello');
    assert.deepEqual([...within.keys()], ['v1'], 'unenrolled → unenrolled');
    // A service the mesh has no endpoints for (the API server's, hand-written Endpoints) passes through.
    const api = await labExec(CLUSTER, 'sample', 'deploy/curl', ['curl', '-sk', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', 'https://kubernetes.default.svc/healthz']);
    assert.equal(api.code, 0, `enrolled pod → kubernetes.default: ${api.stderr}`);
    assert.match(api.stdout, /^(200|401|403)$/);
  });

  it("seed 004's L4 AuthorizationPolicy: only the allowed principal reaches helloworld", async () => {
    const policy = [
      'apiVersion: security.istio.io/v1beta1',
      'kind: AuthorizationPolicy',
      'metadata:',
      '  name: helloworld-viewer',
      '  namespace: sample',
      'spec:',
      '  selector:',
      '    matchLabels:',
      '      app: helloworld',
      '  action: ALLOW',
      '  rules:',
      '  - from:',
      '    - source:',
      '        principals: ["cluster.local/ns/sample/sa/curl"]',
      '',
    ].join('\n');
    await kubectl(CTX, ['apply', '-f', '-'], policy);
    try {
      await waitFor('the policy to reach the ztunnels', async () => (await curlFrom(CLUSTER, 'plain', 'deploy/sleep', `http://${remoteHello.ip}:5000/hello`, 2)).code !== 0, 30_000);
      // Through the Service VIP too, whichever node sleep and the chosen endpoint are on.
      for (let i = 0; i < 8; i++) {
        const viaVip = await curlFrom(CLUSTER, 'plain', 'deploy/sleep', 'helloworld.sample:5000/hello', 3);
        assert.notEqual(viaVip.code, 0, `sleep reached helloworld through the VIP despite the policy: ${viaVip.stdout}`);
      }
      const allowed = await helloVersions(BOTH_VERSIONS);
      assert.deepEqual([...allowed.keys()].sort(), ['v1', 'v2'], 'curl (allowed principal) still reaches both versions');
      for (const pod of helloPods) {
        const denied = await curlFrom(CLUSTER, 'plain', 'deploy/sleep', `http://${pod.ip}:5000/hello`, 3);
        assert.notEqual(denied.code, 0, `sleep (no identity) must be refused by ${pod.name}: ${denied.stdout}`);
      }
      const nodes = [...new Set(helloPods.map((p) => p.node))];
      const metrics = await Promise.all(nodes.map((node) => ztunnelMetrics(CLUSTER, node)));
      assert.ok(metrics.every((m) => /istio_tcp_connections_opened_total\{[^}]*response_flags="DENY"/.test(m)), 'each destination ztunnel reports its denials');
    } finally {
      await kubectl(CTX, ['delete', 'authorizationpolicy', '-n', 'sample', 'helloworld-viewer']);
    }
    for (const pod of helloPods) {
      await waitFor(`access to ${pod.name} to be restored`, async () => (await curlFrom(CLUSTER, 'plain', 'deploy/sleep', `http://${pod.ip}:5000/hello`, 2)).code === 0, 30_000);
    }
  });

  it('garbage on 15008, 15012 and 15001 crashes nothing', async () => {
    const ztunnel = await ztunnelPodOn(CTX, remoteHello.node);
    const cp = (await pods(CTX, 'istio-system', 'app=ambit-controlplane'))[0]!;
    const before = [...(await pods(CTX, 'istio-system'))].map((p) => `${p.name}:${p.restarts}`).sort();
    const targets = [[remoteHello.ip, 15008], [nodeIp(CLUSTER, remoteHello.node), 15008], [cp.ip, 15012], [nodeIp(CLUSTER, remoteHello.node), 15001], [nodeIp(CLUSTER, remoteHello.node), 15006]];
    // Plain HTTP, a truncated TLS record, an HTTP/2 preface followed by junk, and random bytes, to each port.
    const sendJunk = `const net=require('net'),crypto=require('crypto');const payloads=[Buffer.from('GET / HTTP/1.1\\r\\n\\r\\n'),Buffer.from([0x16,3,1,0xff,0xff,1,2]),Buffer.concat([Buffer.from('PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n'),crypto.randomBytes(64)]),crypto.randomBytes(3000)];` +
      `const targets=${JSON.stringify(targets)};(async()=>{for(const [h,p] of targets)for(const data of payloads)await new Promise(r=>{const s=net.connect(p,h,()=>s.end(data));s.on('error',r);s.on('close',r);s.setTimeout(2000,()=>s.destroy());s.resume()})})()`;
    const junk = await inNode(CLUSTER, curl.node, [process.execPath, '-e', sendJunk]);
    assert.equal(junk.code, 0, junk.stderr);
    const afterPods = [...(await pods(CTX, 'istio-system'))].map((p) => `${p.name}:${p.restarts}`).sort();
    assert.deepEqual(afterPods, before, 'no control plane or ztunnel restarted');
    assert.ok(ztunnel);
    const seen = await helloVersions(4);
    assert.ok(seen.size >= 1);
  });

  it('control plane killed: established and new connections keep working; it recovers', async () => {
    const cp = (await pods(CTX, 'istio-system', 'app=ambit-controlplane'))[0]!;
    const pid = containerPid(CLUSTER, 'istio-system', cp.name, 'controlplane');
    assert.ok(pid, 'control plane pid');
    const established = labExec(CLUSTER, 'sample', 'deploy/curl', [process.execPath, '-e', keepAliveScript(remoteHello.ip, 12)]);
    await new Promise((r) => setTimeout(r, 2000));
    process.kill(pid, 'SIGKILL');
    await waitFor('ztunnel to notice', async () => {
      const r = await curlFrom(CLUSTER, 'sample', 'deploy/curl', `http://${remoteHello.ip}:5000/hello`);
      return r.code === 0;
    }, 10_000);
    const during = await helloVersions(6);
    assert.ok(during.size >= 1, 'new connections work while the control plane is down');
    await waitFor('control plane back', async () => (await pods(CTX, 'istio-system', 'app=ambit-controlplane')).some((p) => p.restarts > cp.restarts), 60_000);
    await rolloutStatus(CTX, 'istio-system', ['ambit-controlplane']);
    const afterwards = await helloVersions(6);
    assert.ok(afterwards.size >= 1);
    const kept = await established;
    assert.equal(kept.code, 0, kept.stderr);
    assert.deepEqual(JSON.parse(kept.stdout.trim()), { ok: 12, fail: 0, connections: 1 }, 'the established connection lived through the control plane restart');
  });

  it('a killed ztunnel breaks only its node, and traffic recovers when it is back', async () => {
    const victimNode = curl.node;
    const ztunnel = await ztunnelPodOn(CTX, victimNode);
    const pid = containerPid(CLUSTER, 'istio-system', ztunnel, 'ztunnel');
    assert.ok(pid, 'ztunnel pid');
    const idle = rssMiB(pid);
    numbers.push(`ztunnel RSS (node ${victimNode}, after tests): ${idle} MiB`);
    process.kill(pid, 'SIGKILL');
    // The other node's ztunnel keeps serving: the unenrolled sleep reaches the pod there directly.
    const other = await curlFrom(CLUSTER, 'plain', 'deploy/sleep', `http://${remoteHello.ip}:5000/hello`);
    assert.equal(other.code, 0, `traffic to the other node broke: ${other.stderr}`);
    await waitFor('traffic from the victim node to recover', async () => (await curlFrom(CLUSTER, 'sample', 'deploy/curl', `http://${remoteHello.ip}:5000/hello`, 2)).code === 0, 90_000);
    const seen = await helloVersions(BOTH_VERSIONS);
    assert.deepEqual([...seen.keys()].sort(), ['v1', 'v2']);
  });

  it('short certificate lifetime: renewal happens and a long-lived connection survives it', async () => {
    const install = await ambit(['install', '--context', CTX, '--cluster-name', CLUSTER, '--set', 'controlPlane.workloadCertTtl=20s', '--set', 'controlPlane.maxWorkloadCertTtl=20s'], { timeoutMs: 300_000 });
    assert.equal(install.code, 0, install.stderr);
    await kubectl(CTX, ['delete', 'pods', '-n', 'istio-system', '-l', 'app=ztunnel', '--wait=true']);
    await kubectl(CTX, ['rollout', 'status', '-n', 'istio-system', 'ds/ztunnel', '--timeout=120s']);
    const serial = async () => {
      const out = await ambit(['proxy-config', 'certs', '--context', CTX, curl.node, '-o', 'json']);
      const certs = JSON.parse(out.stdout) as Array<{ identity: string; serialNumber?: string; notBefore?: string; notAfter?: string }>;
      return certs.find((c) => c.identity === CURL_IDENTITY);
    };
    await waitFor('mTLS after the ztunnel restart', async () => (await curlFrom(CLUSTER, 'sample', 'deploy/curl', `http://${remoteHello.ip}:5000/hello`, 2)).code === 0, 60_000);
    const first = await waitFor('a short-lived curl certificate', async () => {
      const c = await serial();
      return c && Date.parse(c.notAfter!) - Date.parse(c.notBefore!) < 120_000 ? c : undefined;
    });
    // One keep-alive HTTP connection, one request every second for 25 s, across at least one renewal.
    const long = await labExec(CLUSTER, 'sample', 'deploy/curl', [process.execPath, '-e', keepAliveScript(remoteHello.ip, 25)]);
    assert.equal(long.code, 0, long.stderr);
    const result = JSON.parse(long.stdout.trim()) as { ok: number; fail: number; connections: number };
    assert.deepEqual(result, { ok: 25, fail: 0, connections: 1 }, 'the long-lived connection kept working on one socket');
    const second = await serial();
    assert.ok(second && second.serialNumber !== first.serialNumber, 'the certificate was renewed while the connection lived');
  });
});
