/**
 * Waypoints on a one-cluster lab, made as a user makes them: `ambit waypoint apply --enroll-namespace
 * --wait` (a Gateway of class istio-waypoint, the namespace labelled istio.io/use-waypoint), requests
 * to the service through the waypoint (its request metrics), `ambit waypoint list`, the waypoint
 * killed and back; seed 004's istio-mesh Gateway reaching Ready; `ambit waypoint delete` leaving
 * other Gateways alone and traffic going direct (L4).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { ambit, kubectl, labExec, rolloutStatus, samples, waitFor } from './helpers/lab.js';
import { freshLab, labDownChecked } from './helpers/multicluster.js';

const CTX = 'lab-cluster1';
const CLUSTER = 'cluster1';
let labPids: number[] = [];
const numbers: string[] = [];
const apply = (yaml: string) => kubectl(CTX, ['apply', '-f', '-'], yaml);

async function codes(count: number): Promise<string[]> {
  const r = await labExec(CLUSTER, 'sample', 'deploy/curl', ['sh', '-c', `for i in $(seq 1 ${count}); do curl -s -o /dev/null --max-time 5 -w '%{http_code}\\n' http://helloworld.sample:5000/hello || true; done`]);
  return r.stdout.split('\n').filter(Boolean);
}

async function waypointMetrics(): Promise<string> {
  const r = await labExec(CLUSTER, 'sample', 'deploy/waypoint', ['sh', '-c', 'curl -s http://localhost:15020/stats/prometheus | grep ^istio_requests_total']);
  return r.stdout;
}

function gatewayCondition(json: string, type: string): { status: string; reason: string; message: string } | undefined {
  const gateway = JSON.parse(json) as { status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } };
  return gateway.status?.conditions?.find((c) => c.type === type);
}

describe('waypoints (istio-waypoint, istio.io/use-waypoint; istio-mesh Ready)', { timeout: 1_200_000 }, () => {
  before(async () => {
    labPids = await freshLab('topologies/one-cluster.yaml');
    const install = await ambit(['install', '--context', CTX, '--cluster-name', CLUSTER], { timeoutMs: 300_000 });
    assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);
    await kubectl(CTX, ['create', 'ns', 'sample']);
    await kubectl(CTX, ['label', 'ns', 'sample', 'istio.io/dataplane-mode=ambient']);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`]);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}curl.yaml`]);
    await rolloutStatus(CTX, 'sample', ['helloworld-v1', 'helloworld-v2', 'curl']);
  });

  after(() => labDownChecked(labPids, numbers));

  it('`ambit waypoint apply --enroll-namespace --wait`: the Gateway is Programmed, its Deployment rolled out, the namespace enrolled', async () => {
    const started = Date.now();
    const applied = await ambit(['waypoint', 'apply', '--context', CTX, '-n', 'sample', '--enroll-namespace', '--wait', '--waypoint-timeout', '120s'], { timeoutMs: 180_000 });
    assert.equal(applied.code, 0, `${applied.stdout}\n${applied.stderr}`);
    numbers.push(`ambit waypoint apply --wait returned after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.deepEqual(applied.stdout.trim().split('\n'), ['waypoint sample/waypoint applied', 'waypoint sample/waypoint is ready!', 'namespace sample labeled with "istio.io/use-waypoint: waypoint"']);
    const gateway = await kubectl(CTX, ['get', 'gateways.gateway.networking.k8s.io', 'waypoint', '-n', 'sample', '-o', 'json']);
    assert.equal(gatewayCondition(gateway, 'Programmed')?.status, 'True');
    assert.equal((JSON.parse(gateway) as { metadata: { labels: Record<string, string> } }).metadata.labels['istio.io/waypoint-for'], 'service');
    assert.equal(await kubectl(CTX, ['get', 'ns', 'sample', '-o', 'jsonpath={.metadata.labels.istio\\.io/use-waypoint}']), 'waypoint');
    await rolloutStatus(CTX, 'sample', ['waypoint']);
  });

  it('with the namespace enrolled, requests to the service go through the waypoint and are counted there', async () => {
    await waitFor('requests counted by the waypoint', async () => {
      const answered = await codes(3);
      return answered.every((c) => c === '200') && (await waypointMetrics()).includes('response_code="200"');
    }, 60_000, 500);
    const got = await codes(20);
    assert.deepEqual([...new Set(got)], ['200']);
    const metrics = await waypointMetrics();
    // One series per destination workload (helloworld-v1 and -v2): the waypoint balanced per request.
    const lines = metrics.split('\n').filter((l) => l.includes('reporter="waypoint"') && l.includes('response_code="200"') && l.includes('destination_service="helloworld.sample.svc.cluster.local"'));
    assert.ok(lines.length > 0, metrics.slice(0, 1500));
    for (const line of lines) {
      for (const label of ['source_workload="curl"', 'source_principal="spiffe://cluster.local/ns/sample/sa/curl"', 'connection_security_policy="mutual_tls"']) assert.ok(line.includes(label), `${label} in ${line}`);
    }
    const counted = lines.reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
    assert.ok(counted >= 20, `${counted} requests counted by the waypoint, 20 sent`);
    numbers.push(`waypoint: ${counted} requests counted over ${lines.length} destination workload series`);
  });

  it('an L7 policy with targetRefs to the Service: POST gets 403 RBAC: access denied at the waypoint, GET works', async () => {
    await apply(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: hello-get-only, namespace: sample }
spec:
  targetRefs: [{ kind: Service, group: "", name: helloworld }]
  action: ALLOW
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/sample/sa/curl"] } }]
    to: [{ operation: { methods: ["GET"] } }]
`);
    const applied = Date.now();
    const post = async () => (await labExec(CLUSTER, 'sample', 'deploy/curl', ['sh', '-c', 'curl -s -X POST --max-time 5 http://helloworld.sample:5000/hello'])).stdout.trim();
    await waitFor('POST denied', async () => (await post()) === 'RBAC: access denied', 60_000, 300);
    numbers.push(`targetRefs policy applied → enforced at the waypoint in ${((Date.now() - applied) / 1000).toFixed(2)} s (includes exec)`);
    assert.deepEqual([...new Set(await codes(5))], ['200']);
    assert.ok((await waypointMetrics()).split('\n').some((l) => l.includes('response_code="403"') && l.includes('source_workload="curl"')));
    const accepted = await waitFor('the policy status WaypointAccepted', async () => {
      const text = await kubectl(CTX, ['get', 'authorizationpolicy', 'hello-get-only', '-n', 'sample', '-o', 'jsonpath={.status.conditions[?(@.type=="WaypointAccepted")].status} {.status.conditions[?(@.type=="WaypointAccepted")].message}']);
      return text.startsWith('True ') ? text : undefined;
    }, 30_000, 300);
    assert.equal(accepted, 'True bound to sample/waypoint');
    await kubectl(CTX, ['delete', 'authorizationpolicy', 'hello-get-only', '-n', 'sample']);
    await waitFor('POST allowed again', async () => (await post()) !== 'RBAC: access denied', 60_000, 300);
  });

  it('killing the waypoint fails requests clearly, and they recover when it is back', async () => {
    await kubectl(CTX, ['scale', 'deploy/waypoint', '-n', 'sample', '--replicas=0']);
    await waitFor('requests refused', async () => (await codes(1)).every((c) => c !== '200'), 60_000, 500);
    const started = Date.now();
    const down = await codes(1);
    assert.ok(Date.now() - started < 5000, 'refused at once, not after a timeout');
    numbers.push(`waypoint down: curl got ${down.join(',')}`);
    await kubectl(CTX, ['scale', 'deploy/waypoint', '-n', 'sample', '--replicas=1']);
    const back = Date.now();
    await waitFor('requests answered again', async () => (await codes(1)).every((c) => c === '200'), 120_000, 500);
    numbers.push(`waypoint scaled back → requests answered in ${((Date.now() - back) / 1000).toFixed(1)} s`);
  });

  it("seed 004's istio-mesh Gateway reaches Ready with Istio's message", async () => {
    await apply(`apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata:
  name: curl-mesh
  namespace: sample
  annotations:
    istio.io/service-account: curl
spec:
  gatewayClassName: istio-mesh
`);
    const ready = await waitFor('Ready', async () => {
      const condition = gatewayCondition(await kubectl(CTX, ['get', 'gateway', 'curl-mesh', '-n', 'sample', '-o', 'json']), 'Ready');
      return condition?.status === 'True' ? condition : undefined;
    }, 120_000, 500);
    assert.equal(ready.message, 'Deployed waypoint proxy to "sample" namespace for "curl" service account');
    await rolloutStatus(CTX, 'sample', ['curl-waypoint-proxy']);
  });

  it('`ambit waypoint list -n sample` shows the waypoint Programmed, and not the istio-mesh Gateway', async () => {
    // The kill-and-back step above may leave Programmed catching up with the new pod for a moment.
    const listed = await waitFor('the waypoint listed as Programmed', async () => {
      const r = await ambit(['waypoint', 'list', '--context', CTX, '-n', 'sample']);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().endsWith('True') ? r : undefined;
    }, 60_000, 1000);
    const lines = listed.stdout.trim().split('\n');
    assert.match(lines[0]!, /^NAME\s+REVISION\s+TRAFFIC TYPE\s+PROGRAMMED$/);
    assert.deepEqual(lines.slice(1).map((l) => l.split(/\s+/)), [['waypoint', 'default', 'service', 'True']]);
  });

  it('`ambit waypoint delete waypoint -n sample` removes it (Deployment too), leaves the istio-mesh Gateway, and traffic goes direct', async () => {
    const deleted = await ambit(['waypoint', 'delete', 'waypoint', '--context', CTX, '-n', 'sample']);
    assert.equal(deleted.code, 0, `${deleted.stdout}\n${deleted.stderr}`);
    assert.equal(deleted.stdout.trim(), 'waypoint sample/waypoint deleted');
    assert.match(deleted.stderr, /still has istio\.io\/use-waypoint=waypoint/);
    const gateways = await kubectl(CTX, ['get', 'gateways.gateway.networking.k8s.io', '-n', 'sample', '-o', 'jsonpath={.items[*].metadata.name}']);
    assert.deepEqual(gateways.trim().split(' '), ['curl-mesh']);
    await waitFor('the waypoint Deployment garbage-collected', async () => !(await kubectl(CTX, ['get', 'deploy', '-n', 'sample', '-o', 'jsonpath={.items[*].metadata.name}'])).split(' ').includes('waypoint'), 120_000, 500);
    // With no waypoint Deployment left, 200s can only come over the direct (ztunnel to ztunnel) path.
    await waitFor('requests answered directly', async () => (await codes(3)).every((c) => c === '200'), 60_000, 500);
    assert.deepEqual([...new Set(await codes(10))], ['200']);
    const again = await ambit(['waypoint', 'list', '--context', CTX, '-n', 'sample']);
    assert.equal(again.stdout, 'No waypoints found.\n');
  });
});
