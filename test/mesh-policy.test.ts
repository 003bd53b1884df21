// Lab: L4 policies are enforced on pods that already run, in every order of events, and stay enforced while ztunnel restarts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';

import { readState } from '../src/lab/state.js';
import { ambit, kubectl, labExec, rolloutStatus, samples, waitFor } from './helpers/lab.js';
import { inNode, pods, ztunnelMetrics } from './helpers/mesh.js';
import { labDownChecked } from './helpers/multicluster.js';

const CTX = 'lab-cluster1';
const CLUSTER = 'cluster1';
let labPids: number[] = [];
const numbers: string[] = [];

interface Outcomes {
  ok: number;
  refused: number;
}

/** `count` requests from `target` (one lab exec, a shell loop): how many got an HTTP answer, how many were refused. */
async function outcomes(namespace: string, target: string, urls: string[], count: number): Promise<Outcomes> {
  const script = `for i in $(seq 1 ${count}); do for u in ${urls.join(' ')}; do curl -s --max-time 2 -o /dev/null -w '%{http_code}\\n' "$u" || true; done; done`;
  const r = await labExec(CLUSTER, namespace, target, ['sh', '-c', script]);
  const codes = r.stdout.split('\n').filter(Boolean);
  const ok = codes.filter((code) => code !== '000').length;
  return { ok, refused: count * urls.length - ok };
}

/** Applies a manifest from standard input. */
const apply = (yaml: string) => kubectl(CTX, ['apply', '-f', '-'], yaml);

function policy(name: string, namespace: string, spec: string): string {
  return `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: ${namespace}\nspec:\n${spec.replace(/^/gm, '  ')}\n`;
}

const denyCurl = (name: string, selector = 'app: helloworld') =>
  policy(name, 'sample', `selector:\n  matchLabels: { ${selector} }\naction: DENY\nrules:\n- from:\n  - source:\n      principals: ["cluster.local/ns/sample/sa/curl"]`);

/** A curl client pinned to a node, running as service account `curl`. */
const pinnedClient = (name: string, node: string) => `apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name}, namespace: sample }
spec:
  replicas: 1
  selector: { matchLabels: { app: ${name} } }
  template:
    metadata: { labels: { app: ${name} } }
    spec:
      serviceAccountName: curl
      nodeSelector: { kubernetes.io/hostname: ${node} }
      terminationGracePeriodSeconds: 0
      containers:
      - name: curl
        image: docker.io/curlimages/curl:8.16.0
        command: ["/bin/sleep", "infinity"]
`;

const CLIENTS = ['curl-node1', 'curl-node2'];
const HELLO = 'http://helloworld.sample:5000/hello';

/** Requests from both clients (one per node), `count` each. */
async function fromBothNodes(count: number, urls = [HELLO]): Promise<Outcomes> {
  const results = await Promise.all(CLIENTS.map((client) => outcomes('sample', `deploy/${client}`, urls, count)));
  return { ok: results.reduce((sum, r) => sum + r.ok, 0), refused: results.reduce((sum, r) => sum + r.refused, 0) };
}

/** Waits until every request from both nodes is refused (or answered); returns the seconds it took. */
async function until(what: string, expect: 'refused' | 'answered', timeoutMs = 20_000): Promise<number> {
  const started = Date.now();
  await waitFor(what, async () => {
    const r = await fromBothNodes(2);
    return expect === 'refused' ? r.ok === 0 : r.refused === 0;
  }, timeoutMs, 100);
  return (Date.now() - started) / 1000;
}

describe('mesh: policies on running pods, every order; fail closed while ztunnel restarts (issue 11, findings 0 and 6)', { timeout: 1_200_000 }, () => {
  before(async () => {
    if (readState()) await ambit(['lab', 'down']);
    const up = await ambit(['lab', 'up', '-f', 'topologies/one-cluster.yaml'], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    labPids = readState()!.processes.map((p) => p.pid);
    const install = await ambit(['install', '--context', CTX, '--cluster-name', CLUSTER], { timeoutMs: 300_000 });
    assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);
  });

  after(() => labDownChecked(labPids, numbers));

  it("seed 004: productpage-viewer applied after enrolment is enforced on the running pods (notsleep refused, sleep answered)", async () => {
    await kubectl(CTX, ['apply', '-n', 'default', '-f', `${samples}bookinfo.yaml`]);
    await kubectl(CTX, ['apply', '-n', 'default', '-f', `${samples}sleep.yaml`]);
    // The seed's notsleep is sleep under another name and service account.
    await apply(readFileSync(`${samples}sleep.yaml`, 'utf8').replace(/\bsleep\b(?!\s+infinity|")/g, 'notsleep').replace('"/bin/notsleep"', '"/bin/sleep"'));
    await rolloutStatus(CTX, 'default', ['productpage-v1', 'details-v1', 'ratings-v1', 'reviews-v1', 'reviews-v2', 'reviews-v3', 'sleep', 'notsleep']);
    await kubectl(CTX, ['label', 'namespace', 'default', 'istio.io/dataplane-mode=ambient']);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const url = 'http://productpage:9080/';
    // Warm: both clients reach the product page over the mesh, so pooled sessions exist when the policy lands.
    await waitFor('sleep and notsleep reach productpage over the mesh', async () => {
      const [a, b] = await Promise.all([outcomes('default', 'deploy/sleep', [url], 2), outcomes('default', 'deploy/notsleep', [url], 2)]);
      return a.refused === 0 && b.refused === 0;
    }, 60_000);
    const applied = Date.now();
    await apply(
      policy('productpage-viewer', 'default', 'selector:\n  matchLabels:\n    app: productpage\naction: ALLOW\nrules:\n- from:\n  - source:\n      principals: ["cluster.local/ns/default/sa/sleep", "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]'),
    );
    await waitFor('notsleep to be refused', async () => (await outcomes('default', 'deploy/notsleep', [url], 1)).ok === 0, 20_000, 100);
    numbers.push(`seed 004 productpage-viewer: applied → notsleep refused in ${((Date.now() - applied) / 1000).toFixed(2)} s (includes kubectl and exec)`);
    const notsleep = await outcomes('default', 'deploy/notsleep', [url], 8);
    assert.deepEqual(notsleep, { ok: 0, refused: 8 }, 'notsleep keeps being refused');
    const sleep = await outcomes('default', 'deploy/sleep', [url], 5);
    assert.deepEqual(sleep, { ok: 5, refused: 0 }, 'sleep is still allowed');
    await kubectl(CTX, ['delete', '-n', 'default', 'authorizationpolicy', 'productpage-viewer']);
    await kubectl(CTX, ['delete', '-n', 'default', '-f', `${samples}bookinfo.yaml`, '--wait=false']);
  });

  it('helloworld, clients on both nodes: first policy ever, replaced, removed, selector and pod labels changed', async () => {
    await kubectl(CTX, ['create', 'ns', 'sample']);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`]);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}curl.yaml`]);
    await apply(pinnedClient('curl-node1', 'cluster1-node1') + '---\n' + pinnedClient('curl-node2', 'cluster1-node2'));
    await rolloutStatus(CTX, 'sample', ['helloworld-v1', 'helloworld-v2', ...CLIENTS]);
    await kubectl(CTX, ['label', 'namespace', 'sample', 'istio.io/dataplane-mode=ambient']);
    await until('both clients to reach helloworld over the mesh', 'answered', 60_000);

    // First policy ever in the cluster's sample namespace, pods running and pooled sessions warm.
    await apply(denyCurl('deny-curl'));
    numbers.push(`first DENY on running pods → enforced from both nodes: ${(await until('DENY curl to be enforced', 'refused')).toFixed(2)} s`);
    assert.deepEqual(await fromBothNodes(5), { ok: 0, refused: 10 });

    // Replaced by an ALLOW for nobody: still refused.
    await kubectl(CTX, ['delete', '-n', 'sample', 'authorizationpolicy', 'deny-curl']);
    await apply(policy('allow-nobody', 'sample', 'selector:\n  matchLabels: { app: helloworld }\naction: ALLOW\nrules:\n- from:\n  - source:\n      principals: ["cluster.local/ns/sample/sa/nobody"]'));
    await until('ALLOW nobody to refuse curl', 'refused');
    assert.deepEqual(await fromBothNodes(5), { ok: 0, refused: 10 });
    await kubectl(CTX, ['delete', '-n', 'sample', 'authorizationpolicy', 'allow-nobody']);
    numbers.push(`policy removed → answered again: ${(await until('curl to be answered again', 'answered')).toFixed(2)} s`);

    // Selector changed from matching nothing to matching the running pods.
    await apply(denyCurl('deny-by-selector', 'app: nothing'));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.deepEqual(await fromBothNodes(3), { ok: 6, refused: 0 }, 'a selector that matches nothing denies nothing');
    await apply(denyCurl('deny-by-selector', 'app: helloworld'));
    await until('the changed selector to be enforced', 'refused');
    assert.deepEqual(await fromBothNodes(5), { ok: 0, refused: 10 });
    await kubectl(CTX, ['delete', '-n', 'sample', 'authorizationpolicy', 'deny-by-selector']);
    await until('curl to be answered again', 'answered');

    // Pod labels changed: the running pods come under the selector, then leave it.
    await apply(denyCurl('deny-locked', 'app: helloworld, locked: "yes"'));
    await kubectl(CTX, ['label', 'pod', '-n', 'sample', '-l', 'app=helloworld', 'locked=yes']);
    await until('relabelled pods to be denied', 'refused');
    assert.deepEqual(await fromBothNodes(5), { ok: 0, refused: 10 });
    await kubectl(CTX, ['label', 'pod', '-n', 'sample', '-l', 'app=helloworld', 'locked-']);
    await until('unlabelled pods to answer', 'answered');
    await kubectl(CTX, ['delete', '-n', 'sample', 'authorizationpolicy', 'deny-locked']);
  });

  it('policy before enrolment, before new pods, and across a control-plane restart', async () => {
    await kubectl(CTX, ['label', 'namespace', 'sample', 'istio.io/dataplane-mode-']);
    await until('plain text to work after leaving the mesh', 'answered', 30_000);
    await apply(denyCurl('deny-curl'));
    await kubectl(CTX, ['label', 'namespace', 'sample', 'istio.io/dataplane-mode=ambient']);
    numbers.push(`policy first, then enrolment → enforced: ${(await until('the policy to apply once enrolled', 'refused', 30_000)).toFixed(2)} s`);
    assert.deepEqual(await fromBothNodes(5), { ok: 0, refused: 10 });

    // New pods, created while the policy exists.
    await kubectl(CTX, ['rollout', 'restart', '-n', 'sample', 'deploy/helloworld-v1', 'deploy/helloworld-v2']);
    await rolloutStatus(CTX, 'sample', ['helloworld-v1', 'helloworld-v2']);
    assert.deepEqual(await fromBothNodes(5), { ok: 0, refused: 10 }, 'new pods are covered from their first connection');

    // The control plane restarts: nothing gets through meanwhile or after.
    const during = fromBothNodes(25);
    await kubectl(CTX, ['rollout', 'restart', '-n', 'istio-system', 'deploy/ambit-controlplane']);
    await rolloutStatus(CTX, 'istio-system', ['ambit-controlplane']);
    assert.equal((await during).ok, 0, 'no request got through while the control plane restarted');
    assert.deepEqual(await fromBothNodes(5), { ok: 0, refused: 10 });
    await kubectl(CTX, ['delete', '-n', 'sample', 'authorizationpolicy', 'deny-curl']);
    await until('curl to be answered again', 'answered', 30_000);
  });

  it("ipBlocks see the client pod's own address (its node's ztunnel speaks for it, issue 11 finding 1), and the destination's metrics name the source workload", async () => {
    const [client1] = await pods(CTX, 'sample', 'app=curl-node1');
    const hello = await pods(CTX, 'sample', 'app=helloworld');
    assert.ok(client1 && hello.length > 0);
    await apply(policy('deny-client1-address', 'sample', `selector:\n  matchLabels: { app: helloworld }\naction: DENY\nrules:\n- from:\n  - source:\n      ipBlocks: ["${client1.ip}/32"]`));
    await waitFor('the DENY on curl-node1 pod address to be enforced', async () => (await outcomes('sample', 'deploy/curl-node1', [HELLO], 2)).ok === 0, 20_000, 100);
    assert.deepEqual(await outcomes('sample', 'deploy/curl-node1', [HELLO], 4), { ok: 0, refused: 4 }, 'the pod address is denied');
    assert.deepEqual(await outcomes('sample', 'deploy/curl-node2', [HELLO], 4), { ok: 4, refused: 0 }, 'the same identity from another address is not');
    await kubectl(CTX, ['delete', '-n', 'sample', 'authorizationpolicy', 'deny-client1-address']);
    await until('curl to be answered again', 'answered');
    // Labels from the registry (the workload at the source address, with the certificate's identity).
    const metrics = (await Promise.all([...new Set(hello.map((p) => p.node))].map((node) => ztunnelMetrics(CLUSTER, node)))).join('\n');
    assert.match(metrics, /istio_tcp_connections_opened_total\{[^}]*reporter="destination"[^}]*source_workload="curl-node1"/, 'the destination names the client workload');
  });

  it('deny-all stays enforced while every ztunnel restarts: zero connections get through (service VIP and pod IPs)', async () => {
    const hello = await pods(CTX, 'sample', 'app=helloworld');
    const svc = JSON.parse(await kubectl(CTX, ['get', 'svc', '-n', 'sample', 'helloworld', '-o', 'json'])) as { spec: { clusterIP: string } };
    // Addresses, not names: DNS is captured too, and a failing lookup would hide a plain-text bypass.
    const urls = [`http://${svc.spec.clusterIP}:5000/hello`, ...hello.map((p) => `http://${p.ip}:5000/hello`)];
    assert.equal((await fromBothNodes(1, urls)).refused, 0, 'all addresses answer before the policy');
    await apply(policy('allow-nothing', 'sample', '{}').replace('spec:\n  {}', 'spec: {}'));
    await until('deny-all to be enforced', 'refused');
    const loop = Promise.all(CLIENTS.map((client) => labExec(CLUSTER, 'sample', `deploy/${client}`, [
      'sh', '-c', `end=$(( $(date +%s) + 45 )); while [ $(date +%s) -lt $end ]; do for u in ${urls.join(' ')}; do curl -s --max-time 1 -o /dev/null -w '%{http_code}\\n' "$u" || true; done; done`,
    ])));
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await kubectl(CTX, ['rollout', 'restart', '-n', 'istio-system', 'ds/ztunnel']);
    await kubectl(CTX, ['rollout', 'status', '-n', 'istio-system', 'ds/ztunnel', '--timeout=120s']);
    const results = await loop;
    const codes = results.flatMap((r) => r.stdout.split('\n').filter(Boolean));
    const answered = codes.filter((code) => code !== '000');
    numbers.push(`ztunnel rollout restart under deny-all: ${codes.length} attempts, ${answered.length} answered`);
    assert.ok(codes.length > 20, `the loop ran (${codes.length} attempts)`);
    assert.deepEqual(answered, [], 'no connection got through while ztunnels restarted');
    await kubectl(CTX, ['delete', '-n', 'sample', 'authorizationpolicy', 'allow-nothing']);
    await until('the mesh to answer again after the restart', 'answered', 30_000);
  });

  it('ambit uninstall: every ztunnel removes its capture (unlike a restart), and enrolled pods talk plain text again', async () => {
    const uninstall = await ambit(['uninstall', '--context', CTX], { timeoutMs: 300_000 });
    assert.equal(uninstall.code, 0, `${uninstall.stdout}\n${uninstall.stderr}`);
    for (const node of ['cluster1-node1', 'cluster1-node2']) {
      const table = await inNode(CLUSTER, node, ['nft', 'list', 'table', 'inet', 'ambit']);
      assert.notEqual(table.code, 0, `table inet ambit is gone on ${node}`);
    }
    assert.deepEqual(await fromBothNodes(3), { ok: 6, refused: 0 }, 'the namespace is still labelled ambient, but nothing captures it any more');
  });
});
