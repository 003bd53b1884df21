// The ingress data path on loopback: a route to a plaintext service, and stop() draining requests in flight, then cutting what is left.
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { ipToBytes } from '../src/api/ip.js';
import { ListenerSchema, Protocol, RouteConfigSchema, type HttpRouteSchema } from '../src/gen/ambit/route/route_pb.js';
import { NetworkAddressSchema, PortListSchema, PortSchema, ServiceSchema, TunnelProtocol, WorkloadSchema } from '../src/gen/istio/workload/workload_pb.js';
import type { HbonePool, InnerHbonePool } from '../src/hbone/index.js';
import { IngressProxy } from '../src/ingress/proxy.js';
import { RequestMetrics } from '../src/l7/metrics.js';
import { ZtunnelState } from '../src/ztunnel/state/store.js';

const CLUSTER = 'cluster1';
const HOST = 'slow.default.svc.cluster.local';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function get(port: number, path: string): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host: 'slow' }, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (err) => resolve({ error: err.message }));
    });
    req.on('error', (err) => resolve({ error: err.message }));
    req.end();
  });
}

describe('ingress proxy', () => {
  let app: Server;
  let appPort = 0;
  let listenPort = 0;
  const delays = new Map<string, number>();
  const metrics = new RequestMetrics();

  before(async () => {
    app = createServer((req, res) => {
      const delay = delays.get(req.url ?? '') ?? 0;
      if (delay < 0) return; // never answers
      res.setHeader('x-app', 'slow');
      setTimeout(() => res.end(`answered ${req.url}${req.headers['x-canary'] ? ` canary=${String(req.headers['x-canary'])}` : ''}`), delay);
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    appPort = (app.address() as AddressInfo).port;
    listenPort = await freePort();
  });

  after(() => {
    app.closeAllConnections();
    app.close();
  });

  async function proxy(routes: Array<MessageInitShape<typeof HttpRouteSchema>> = [{ source: 'all', destinations: [{ hostname: HOST, port: 80, weight: 1 }] }]): Promise<IngressProxy> {
    const state = new ZtunnelState({ network: '', nodeName: 'node-1', clusterId: CLUSTER, systemNamespace: 'istio-system', logger: pino({ level: 'silent' }) });
    const service = create(ServiceSchema, { name: 'slow', namespace: 'default', hostname: HOST, addresses: [create(NetworkAddressSchema, { network: '', address: ipToBytes('10.96.0.50') })], ports: [create(PortSchema, { servicePort: 80, targetPort: appPort })] });
    const workload = create(WorkloadSchema, {
      uid: `${CLUSTER}//Pod/default/slow-aaaaa`,
      name: 'slow-aaaaa',
      namespace: 'default',
      addresses: [ipToBytes('127.0.0.1')],
      serviceAccount: 'slow',
      trustDomain: 'cluster.local',
      clusterId: CLUSTER,
      tunnelProtocol: TunnelProtocol.NONE,
      services: { [`default/${HOST}`]: create(PortListSchema, { ports: [create(PortSchema, { servicePort: 80, targetPort: appPort })] }) },
    });
    state.applyAddresses([{ name: `default/${HOST}`, service }, { name: workload.uid, workload }], []);
    const ingress = new IngressProxy({
      state,
      pool: {} as HbonePool,
      inner: {} as InnerHbonePool,
      identity: 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account',
      self: () => create(WorkloadSchema, { name: 'istio-ingressgateway-aaaaa', workloadName: 'istio-ingressgateway', namespace: 'istio-system' }),
      clusterId: CLUSTER,
      requestMetrics: metrics,
      log: pino({ level: 'silent' }),
      defaultPorts: [],
    });
    const config = create(RouteConfigSchema, {
      listeners: [create(ListenerSchema, { port: listenPort, protocol: Protocol.HTTP, virtualHosts: [{ domains: ['*'], routes }] })],
    });
    await ingress.update(config);
    return ingress;
  }

  it('routes a request to the service over plain TCP and counts it in istio_requests_total with Istio\'s labels', async () => {
    const ingress = await proxy();
    try {
      assert.deepEqual(await get(listenPort, '/now'), { status: 200, body: 'answered /now' });
      const text = await metrics.registry.metrics();
      const line = text.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('response_code="200"'));
      assert.ok(line, text.slice(0, 1500));
      for (const label of [
        'reporter="source"',
        'source_workload="istio-ingressgateway"',
        'source_workload_namespace="istio-system"',
        'source_principal="spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"',
        `destination_service="${HOST}"`,
        'destination_workload="slow-aaaaa"',
        'destination_principal="spiffe://cluster.local/ns/default/sa/slow"',
        'connection_security_policy="unknown"',
      ]) {
        assert.ok(line.includes(label), `${label} in ${line}`);
      }
      assert.match(text, /istio_request_duration_milliseconds_bucket\{/);
    } finally {
      await ingress.stop(100);
    }
  });

  it('applies a gateway VirtualService\'s route behaviour: redirect, fault abort, rewrite with header changes, timeout, and a subset without endpoints', async () => {
    const to = { hostname: HOST, port: 80, weight: 1 };
    delays.set('/new/slowly', 1000);
    const ingress = await proxy([
      { source: 'moved', matches: [{ path: { match: { case: 'exact', value: '/moved' } } }], redirect: { uri: '/here', code: 302 } },
      { source: 'broken', matches: [{ path: { match: { case: 'prefix', value: '/broken' } } }], destinations: [to], fault: { abortStatus: 418, abortPercent: 100 } },
      { source: 'old', matches: [{ path: { match: { case: 'prefix', value: '/old/' } } }], destinations: [to], rewrite: { uri: '/new/' }, requestHeaders: { set: { 'x-canary': 'yes' } }, timeoutMs: 300 },
      { source: 'v9', matches: [{ path: { match: { case: 'prefix', value: '/v9' } } }], destinations: [{ ...to, subset: 'v9', workloads: [] }] },
      { source: 'all', destinations: [to] },
    ]);
    try {
      const redirect = await new Promise<{ status: number; location?: string }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: listenPort, path: '/moved', headers: { host: 'bookinfo.example' }, agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location }));
        });
        req.on('error', reject);
        req.end();
      });
      assert.deepEqual(redirect, { status: 302, location: 'http://bookinfo.example/here' });
      assert.deepEqual(await get(listenPort, '/broken/x'), { status: 418, body: 'fault filter abort' });
      assert.deepEqual(await get(listenPort, '/old/page'), { status: 200, body: 'answered /new/page canary=yes' });
      assert.deepEqual(await get(listenPort, '/old/slowly'), { status: 504, body: 'upstream request timeout' });
      assert.deepEqual(await get(listenPort, '/v9/x'), { status: 503, body: 'no healthy upstream' });
      assert.deepEqual(await get(listenPort, '/plain'), { status: 200, body: 'answered /plain' });
    } finally {
      delays.delete('/new/slowly');
      await ingress.stop(100);
    }
  });

  it('stop() lets a request in flight finish, refuses new connections, and returns', async () => {
    const ingress = await proxy();
    delays.set('/slow', 300);
    const inFlight = get(listenPort, '/slow');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const stopped = ingress.stop(5000);
    const late = await get(listenPort, '/late');
    assert.ok('error' in late && /ECONNREFUSED/.test(late.error), `a new connection is refused: ${JSON.stringify(late)}`);
    assert.deepEqual(await inFlight, { status: 200, body: 'answered /slow' });
    await stopped;
  });

  it('stop() cuts a request that outlives the drain time', async () => {
    const ingress = await proxy();
    delays.set('/never', -1);
    const hung = get(listenPort, '/never');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await ingress.stop(200);
    const result = await hung;
    assert.ok('error' in result, `the hung request is cut: ${JSON.stringify(result)}`);
    assert.ok(Date.now() - started < 3000, 'stop returns soon after the drain time');
  });
});
