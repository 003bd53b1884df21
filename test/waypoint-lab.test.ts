/**
 * Waypoints on a one-cluster lab with today's API: a Gateway of class istio-waypoint, the namespace
 * enrolled with istio.io/use-waypoint, requests to the service through the waypoint (its request
 * metrics), the waypoint killed and back; and seed 004's istio-mesh Gateway reaching Ready.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { readState } from '../src/lab/state.js';
import { ambit, kubectl, labExec, rolloutStatus, samples, waitFor } from './helpers/lab.js';
import { labDownChecked } from './helpers/multicluster.js';

const CTX = 'lab-cluster1';
const CLUSTER = 'cluster1';
let labPids: number[] = [];
const numbers: string[] = [];
const apply = (yaml: string) => kubectl(CTX, ['apply', '-f', '-'], yaml);

const WAYPOINT = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: sample
  labels: { istio.io/waypoint-for: service }
spec:
  gatewayClassName: istio-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
`;

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
    if (readState()) await ambit(['lab', 'down']);
    const up = await ambit(['lab', 'up', '-f', 'topologies/one-cluster.yaml'], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    labPids = readState()!.processes.map((p) => p.pid);
    const install = await ambit(['install', '--context', CTX, '--cluster-name', CLUSTER], { timeoutMs: 300_000 });
    assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);
    await kubectl(CTX, ['create', 'ns', 'sample']);
    await kubectl(CTX, ['label', 'ns', 'sample', 'istio.io/dataplane-mode=ambient']);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`]);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}curl.yaml`]);
    await rolloutStatus(CTX, 'sample', ['helloworld-v1', 'helloworld-v2', 'curl']);
  });

  after(() => labDownChecked(labPids, numbers));

  it('an istio-waypoint Gateway gets its Deployment and becomes Programmed', async () => {
    const started = Date.now();
    await apply(WAYPOINT);
    await waitFor('Programmed', async () => gatewayCondition(await kubectl(CTX, ['get', 'gateway', 'waypoint', '-n', 'sample', '-o', 'json']), 'Programmed')?.status === 'True', 120_000, 500);
    numbers.push(`istio-waypoint Gateway applied → Programmed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await rolloutStatus(CTX, 'sample', ['waypoint']);
  });

  it('with the namespace enrolled, requests to the service go through the waypoint and are counted there', async () => {
    await kubectl(CTX, ['label', 'ns', 'sample', 'istio.io/use-waypoint=waypoint']);
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
});
