// Lab: seed 004's ingress — `ambit install --set profile=ambient` makes istio-ingressgateway; bookinfo through it (Istio Gateway + VirtualService, then Gateway API class istio + HTTPRoute).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readState } from '../src/lab/state.js';
import { ambit, kubectl, labExec, rolloutStatus, samples, sh, waitFor } from './helpers/lab.js';
import { curlFrom } from './helpers/mesh.js';
import { labDownChecked } from './helpers/multicluster.js';

const CTX = 'lab-cluster1';
const CLUSTER = 'cluster1';
let labPids: number[] = [];
const numbers: string[] = [];

const firstLine = async (url: string) => {
  const r = await curlFrom(CLUSTER, 'default', 'deploy/sleep', url);
  return r.code === 0 ? r.stdout.split('\n')[0] : undefined;
};

describe('ingress gateway (seed 004)', { timeout: 900_000 }, () => {
  let expected = '';

  before(async () => {
    if (readState()) await ambit(['lab', 'down']);
    const up = await ambit(['lab', 'up', '-f', 'topologies/one-cluster.yaml'], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    labPids = readState()!.processes.map((p) => p.pid);
    const install = await ambit(['install', '--context', CTX, '--cluster-name', CLUSTER, '--set', 'profile=ambient'], { timeoutMs: 300_000 });
    assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`);
  });

  after(() => labDownChecked(labPids, numbers));

  it('kubectl get pod -n istio-system shows the ingress gateway', async () => {
    const out = await kubectl(CTX, ['get', 'pod', '-n', 'istio-system']);
    assert.match(out, /^istio-ingressgateway-\S+\s+1\/1\s+Running/m, out);
  });

  it('bookinfo.yaml and bookinfo-gateway.yaml apply; curl through istio-ingressgateway.istio-system prints the productpage', async () => {
    await kubectl(CTX, ['apply', '-n', 'default', '-f', `${samples}bookinfo.yaml`]);
    await kubectl(CTX, ['apply', '-n', 'default', '-f', `${samples}sleep.yaml`]);
    const applied = await sh('kubectl', ['--context', CTX, 'apply', '-n', 'default', '-f', `${samples}bookinfo-gateway.yaml`]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /gateway.networking.istio.io\/bookinfo-gateway created/);
    await rolloutStatus(CTX, 'default', ['productpage-v1', 'details-v1', 'reviews-v1', 'ratings-v1', 'sleep']);
    expected = await waitFor('productpage directly', () => firstLine('http://productpage:9080/productpage'), 60_000);
    const line = await waitFor('productpage through the ingress', async () => {
      const got = await firstLine('http://istio-ingressgateway.istio-system/productpage');
      return got === expected ? got : undefined;
    }, 90_000, 1000);
    assert.equal(line, expected);
    const missing = await curlFrom(CLUSTER, 'default', 'deploy/sleep', 'http://istio-ingressgateway.istio-system/nothing-here');
    assert.equal(missing.code, 0);
    assert.equal((await sh('kubectl', ['--context', CTX, 'get', 'vs', '-n', 'default'])).stdout.includes('bookinfo-gateway'), true, 'kubectl get vs shows the Gateways column');
  });

  it('after enrolment the ingress reaches productpage over HBONE', async () => {
    await kubectl(CTX, ['label', 'namespace', 'default', 'istio.io/dataplane-mode=ambient']);
    await new Promise((r) => setTimeout(r, 3000));
    for (let i = 0; i < 5; i++) assert.equal(await firstLine('http://istio-ingressgateway.istio-system/productpage'), expected);
  });

  it('the ingress counts its requests in istio_requests_total: productpage, 200, mutual TLS, both principals', async () => {
    const r = await labExec(CLUSTER, 'istio-system', 'deploy/istio-ingressgateway', ['sh', '-c', 'curl -s http://localhost:15020/stats/prometheus | grep "^istio_requests_total"']);
    const line = r.stdout.split('\n').find((l) => l.includes('response_code="200"') && l.includes('connection_security_policy="mutual_tls"'));
    assert.ok(line, r.stdout.slice(0, 2000));
    for (const label of [
      'reporter="source"',
      'source_workload="istio-ingressgateway"',
      'source_principal="spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"',
      'destination_service="productpage.default.svc.cluster.local"',
      'destination_workload="productpage-v1"',
      'destination_principal="spiffe://cluster.local/ns/default/sa/bookinfo-productpage"',
    ]) {
      assert.ok(line.includes(label), `${label} in ${line}`);
    }
    assert.ok(Number(line.split(' ').at(-1)) >= 5, `the five requests counted: ${line}`);
  });

  it('a Gateway API Gateway of class istio with an HTTPRoute serves the same page', async () => {
    const manifest = `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bookinfo, namespace: default}
spec:
  parentRefs: [{name: bookinfo-gateway}]
  rules:
  - matches: [{path: {type: Exact, value: /productpage}}, {path: {type: PathPrefix, value: /static}}]
    backendRefs: [{name: productpage, port: 9080}]
`;
    const applied = await sh('kubectl', ['--context', CTX, 'apply', '-f', '-'], { input: manifest });
    assert.equal(applied.code, 0, applied.stderr);
    await waitFor('Gateway Programmed', async () => (await kubectl(CTX, ['get', 'gateway.gateway.networking.k8s.io', '-n', 'default', 'bookinfo-gateway', '-o', 'jsonpath={.status.conditions[?(@.type=="Programmed")].status}'])) === 'True', 120_000, 1000);
    const line = await waitFor('productpage through bookinfo-gateway-istio', async () => {
      const got = await firstLine('http://bookinfo-gateway-istio.default/productpage');
      return got === expected ? got : undefined;
    }, 120_000, 1000);
    assert.equal(line, expected);
    const parents = JSON.parse(await kubectl(CTX, ['get', 'httproute', '-n', 'default', 'bookinfo', '-o', 'jsonpath={.status.parents}'])) as Array<{ conditions: Array<{ type: string; status: string }> }>;
    assert.deepEqual(parents[0]!.conditions.map((c) => `${c.type}=${c.status}`), ['Accepted=True', 'ResolvedRefs=True']);
  });
});
