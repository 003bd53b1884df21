/**
 * The waypoint proxy on real sockets: HBONE clients (as ztunnels) CONNECT to it with a service
 * VIP; behind it, fake destination ztunnels (HBONE endpoints with the pods' identities) serve a
 * small HTTP app. Pod addresses are mapped to loopback by the dial function.
 */
import assert from 'node:assert/strict';
import { Agent, createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { connect as http2Connect, performServerHandshake, type ClientHttp2Stream } from 'node:http2';
import { after, before, describe, test } from 'node:test';

import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { pino } from 'pino';

import { ipToBytes } from '../src/api/ip.js';
import { HttpRouteSchema, WeightedDestinationSchema } from '../src/gen/ambit/route/route_pb.js';
import { DestinationPolicySchema, LoadBalancer_Simple } from '../src/gen/ambit/waypoint/waypoint_pb.js';
import { Action, L7AuthorizationSchema, RuleSchema, SourceSchema, OperationSchema, StringMatchSchema, WaypointSchema, type L7Authorization } from '../src/gen/ambit/waypoint/waypoint_pb.js';
import {
  AppProtocol,
  GatewayAddressSchema,
  NetworkAddressSchema,
  PortListSchema,
  PortSchema,
  ServiceSchema,
  TunnelProtocol,
  WorkloadSchema,
  NetworkMode,
  WorkloadStatus,
  type Service,
  type Workload,
} from '../src/gen/istio/workload/workload_pb.js';
import { HboneEndpoint, HbonePool } from '../src/hbone/index.js';
import { RequestMetrics } from '../src/l7/metrics.js';
import { StreamSocket } from '../src/l7/stream-socket.js';
import { createRootCa, type CertificateAuthority } from '../src/util/pki.js';
import { WaypointConfig } from '../src/waypoint/config.js';
import { WaypointProxy } from '../src/waypoint/waypoint.js';
import { createProxyMetrics } from '../src/ztunnel/metrics.js';
import { ZtunnelState } from '../src/ztunnel/state/store.js';
import { captureLog, FakeCertificates } from './helpers/proxy-fakes.js';

const CLUSTER = 'cluster1';
const TD = 'cluster.local';
const id = (ns: string, sa: string) => `spiffe://${TD}/ns/${ns}/sa/${sa}`;
const WAYPOINT_IDENTITY = id('default', 'waypoint');
const SLEEP = id('default', 'sleep');
const NOTSLEEP = id('default', 'notsleep');
const PRODUCTPAGE = id('default', 'bookinfo-productpage');
const VIP = '10.96.0.10';
const GRPC_VIP = '10.96.0.11';
const TCP_VIP = '10.96.0.12';
const DOWN_VIP = '10.96.0.13';
const OTHER_VIP = '10.96.0.14';
const NODE_IP = '127.0.0.1';

function workload(name: string, ip: string, sa: string, services: Record<string, Array<[number, number]>> = {}, extra: Omit<MessageInitShape<typeof WorkloadSchema>, '$typeName'> = {}): Workload {
  return create(WorkloadSchema, {
    uid: `${CLUSTER}//Pod/default/${name}`,
    name,
    namespace: 'default',
    addresses: [ipToBytes(ip)],
    serviceAccount: sa,
    trustDomain: TD,
    node: 'node-1',
    clusterId: CLUSTER,
    workloadName: name.replace(/-[a-z0-9]{5}$/, ''),
    canonicalName: name.split('-')[0],
    canonicalRevision: 'v1',
    tunnelProtocol: TunnelProtocol.HBONE,
    services: Object.fromEntries(Object.entries(services).map(([svc, ports]) => [svc, create(PortListSchema, { ports: ports.map(([servicePort, targetPort]) => create(PortSchema, { servicePort, targetPort })) })])),
    ...extra,
  });
}

function service(name: string, vip: string, port: number, appProtocol = AppProtocol.UNKNOWN): Service {
  return create(ServiceSchema, {
    name,
    namespace: 'default',
    hostname: `${name}.default.svc.cluster.local`,
    addresses: [create(NetworkAddressSchema, { network: '', address: ipToBytes(vip) })],
    ports: [create(PortSchema, { servicePort: port, targetPort: port, appProtocol })],
  });
}

const PP = 'default/productpage.default.svc.cluster.local';
const GRPC = 'default/grpc.default.svc.cluster.local';
const TCP = 'default/tcpecho.default.svc.cluster.local';
const DOWN = 'default/down.default.svc.cluster.local';

function meshState(): ZtunnelState {
  const state = new ZtunnelState({ network: '', nodeName: 'node-1', clusterId: CLUSTER, systemNamespace: 'istio-system', logger: pino({ level: 'silent' }) });
  const services = [service('productpage', VIP, 9080), service('grpc', GRPC_VIP, 50051, AppProtocol.GRPC), service('tcpecho', TCP_VIP, 9000, AppProtocol.TCP), service('down', DOWN_VIP, 80), service('other', OTHER_VIP, 80)];
  const workloads = [
    workload('productpage-v1-aaaaa', '10.20.0.21', 'bookinfo-productpage', { [PP]: [[9080, 9080]] }),
    workload('productpage-v2-bbbbb', '10.20.0.22', 'bookinfo-productpage', { [PP]: [[9080, 9080]] }),
    workload('grpc-ccccc', '10.20.0.23', 'bookinfo-productpage', { [GRPC]: [[50051, 50051]] }),
    workload('tcpecho-ddddd', '10.20.0.24', 'bookinfo-productpage', { [TCP]: [[9000, 9000]] }),
    workload('down-eeeee', '10.20.0.25', 'bookinfo-productpage', { [DOWN]: [[80, 80]] }),
    workload('sleep-fffff', '10.20.0.31', 'sleep'),
    workload('notsleep-ggggg', '10.20.0.32', 'notsleep'),
    // The node's ztunnel (host network at the node address): it may speak for the pods of its node.
    workload('ztunnel-hhhhh', NODE_IP, 'ztunnel', {}, { namespace: 'istio-system', networkMode: NetworkMode.HOST_NETWORK, tunnelProtocol: TunnelProtocol.NONE }),
  ];
  state.applyAddresses([...services.map((s) => ({ name: `default/${s.hostname}`, service: s })), ...workloads.map((w) => ({ name: w.uid, workload: w }))], []);
  return state;
}

const exact = (value: string) => create(StringMatchSchema, { match: { case: 'exact', value } });

/** Seed 004's L7 policy: sleep may GET productpage, nothing else. */
function getOnlyFromSleep(workloads: string[]): L7Authorization {
  return create(L7AuthorizationSchema, {
    name: 'productpage-viewer',
    namespace: 'default',
    action: Action.ALLOW,
    workloads,
    rules: [create(RuleSchema, { from: [create(SourceSchema, { principals: [exact('cluster.local/ns/default/sa/sleep')] })], to: [create(OperationSchema, { methods: [exact('GET')] })] })],
  });
}

interface Fixture {
  ca: CertificateAuthority;
  certificates: FakeCertificates;
  state: ZtunnelState;
  config: WaypointConfig;
  waypoint: WaypointProxy;
  metrics: RequestMetrics;
  destinations: HboneEndpoint[];
  apps: HttpServer[];
  seen: Array<{ pod: string; authority: string; peer: string }>;
  ports: Map<string, number>;
}

const flakyServed = new Set<string>();
/** Every request the apps answered normally: which pod, path and Host. */
const appRequests: Array<{ pod: string; url: string; host: string }> = [];

async function startDestination(f: Fixture, pod: string, ip: string, identity: string, kind: 'http1' | 'http2' | 'echo'): Promise<void> {
  const app = createHttpServer((req, res) => {
    let body = 0;
    req.on('data', (c: Buffer) => (body += c.length));
    req.on('end', () => {
      const url = req.url ?? '/';
      // `/slow`: answers after a second; `/flaky-…`: the first request to each such path in the app (any pod) fails with 503.
      if (url === '/slow') return void setTimeout(() => res.end(`pod=${pod} slow\n`), 1000);
      if (url.startsWith('/fails-on-v1') && pod === 'productpage-v1') return void res.writeHead(500).end('broken');
      if (url.startsWith('/flaky-') && !flakyServed.has(url)) {
        flakyServed.add(url);
        return void res.writeHead(503).end('try again');
      }
      appRequests.push({ pod, url, host: String(req.headers.host) });
      res.setHeader('x-app', pod);
      res.end(`pod=${pod} ${req.method} ${url} body=${body} xfp=${String(req.headers['x-forwarded-proto'])} canary=${String(req.headers['x-canary'])}\n`);
    });
  });
  f.apps.push(app);
  const destination = new HboneEndpoint({
    role: `destination ${pod}`,
    identity,
    certificates: f.certificates,
    log: pino({ level: 'silent' }),
    metrics: createProxyMetrics(),
    onConnect: ({ connection, headers }) => {
      f.seen.push({ pod, authority: String(headers[':authority']), peer: connection.peerIdentity });
      return {
        kind: 'serve',
        serve: (stream) => {
          if (kind === 'http1') app.emit('connection', new StreamSocket(stream));
          else if (kind === 'echo') stream.pipe(stream);
          else {
            const session = performServerHandshake(new StreamSocket(stream));
            session.on('stream', (s, h) => {
              const answer = () => {
                if (s.destroyed) return;
                s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
                s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
                s.end(`h2 pod=${pod} ${String(h[':path'])}`);
              };
              s.on('error', () => undefined);
              // `/pkg.Svc/Slow` answers after a second.
              if (String(h[':path']) === '/pkg.Svc/Slow') setTimeout(answer, 1000);
              else answer();
            });
          }
        },
      };
    },
  });
  await destination.start(0, '127.0.0.1');
  f.destinations.push(destination);
  f.ports.set(ip, destination.port());
}

/** An HBONE client as a ztunnel speaking for `identity` (from the node address): CONNECTs to the waypoint. */
function client(f: Fixture, identity: string, podIp: string): { connect(authority: string): Promise<ClientHttp2Stream>; pool: HbonePool } {
  const pool = new HbonePool({ certificates: f.certificates, log: pino({ level: 'silent' }), metrics: createProxyMetrics(), hbonePort: 15008, dialAddress: () => ({ host: '127.0.0.1', port: f.waypoint.port() }) });
  return {
    pool,
    connect: (authority) => pool.connect({ sourceIdentity: identity, expectedIdentities: [WAYPOINT_IDENTITY], destination: '10.30.0.5', authority, headers: { forwarded: `for="${podIp}"` } }),
  };
}

/** A keep-alive agent whose one connection is a given tunnel. */
class TunnelAgent extends Agent {
  constructor(private readonly socket: StreamSocket) {
    super({ keepAlive: true, maxSockets: 1 });
  }

  override createConnection(): StreamSocket {
    return this.socket;
  }
}

/** One HTTP/1.1 request on a tunnel; pass the same agent to send several on one connection. */
async function http1(tunnel: ClientHttp2Stream | Agent, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: string }> {
  const agent = tunnel instanceof Agent ? tunnel : new TunnelAgent(new StreamSocket(tunnel));
  return new Promise((resolve, reject) => {
    const req = httpRequest({ agent, method, path, headers: { host: 'productpage:9080', ...headers } }, (res: IncomingMessage) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function waitForCondition(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function ejectionCountOf(f: Fixture): Promise<number> {
  const metric = f.metrics.registry.getSingleMetric('ambit_waypoint_outlier_ejections_total');
  if (!metric) return 0;
  return (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);
}

async function counter(f: Fixture, labels: Record<string, string>): Promise<number> {
  const metric = await f.metrics.registry.getSingleMetric('istio_requests_total')!.get();
  return metric.values.filter((v) => Object.entries(labels).every(([k, value]) => String(v.labels[k]) === value)).reduce((sum, v) => sum + v.value, 0);
}

describe('waypoint proxy', () => {
  const f = {} as Fixture;
  const captured = captureLog('waypoint');

  before(async () => {
    f.ca = await createRootCa('waypoint test CA');
    f.certificates = new FakeCertificates(f.ca);
    f.state = meshState();
    f.config = new WaypointConfig('default/waypoint', pino({ level: 'silent' }));
    f.config.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP, GRPC, TCP, DOWN] }) }], []);
    f.metrics = new RequestMetrics();
    f.destinations = [];
    f.apps = [];
    f.seen = [];
    f.ports = new Map();
    await startDestination(f, 'productpage-v1', '10.20.0.21', PRODUCTPAGE, 'http1');
    await startDestination(f, 'productpage-v2', '10.20.0.22', PRODUCTPAGE, 'http1');
    await startDestination(f, 'grpc', '10.20.0.23', PRODUCTPAGE, 'http2');
    await startDestination(f, 'tcpecho', '10.20.0.24', PRODUCTPAGE, 'echo');
    f.waypoint = new WaypointProxy({
      identity: WAYPOINT_IDENTITY,
      certificates: f.certificates,
      state: f.state,
      config: f.config,
      self: () => workload('waypoint-zzzzz', '10.20.0.40', 'waypoint'),
      clusterId: CLUSTER,
      log: captured.log,
      requestMetrics: f.metrics,
      proxyMetrics: createProxyMetrics(),
      accessLog: true,
      // An endpoint without a destination (down-…) gets a closed port.
      dialAddress: (ip) => ({ host: '127.0.0.1', port: f.ports.get(ip) ?? 1 }),
      detectTimeoutMs: 200,
    });
    await f.waypoint.start(0, '127.0.0.1');
  });

  after(async () => {
    await f.waypoint.stop(100);
    for (const d of f.destinations) await d.stop({ drainTimeoutMs: 100 });
  });

  test('a request to the service VIP reaches an endpoint over HBONE, CONNECT pod:port, with the waypoint identity', async () => {
    const sleep = client(f, SLEEP, '10.20.0.31');
    const res = await http1(await sleep.connect(`${VIP}:9080`), 'GET', '/productpage');
    assert.equal(res.status, 200);
    assert.match(res.body, /^pod=productpage-v[12] GET \/productpage body=0 xfp=http/);
    const last = f.seen.at(-1)!;
    assert.match(last.authority, /^10\.20\.0\.2[12]:9080$/);
    assert.equal(last.peer, WAYPOINT_IDENTITY);
    sleep.pool.destroy();
  });

  test('requests on one kept-alive client connection are balanced per request over both endpoints, on pooled upstream connections', async () => {
    const sleep = client(f, SLEEP, '10.20.0.31');
    const agent = new TunnelAgent(new StreamSocket(await sleep.connect(`${VIP}:9080`)));
    const pods = new Set<string>();
    const before = f.seen.length;
    for (let i = 0; i < 30; i++) {
      const res = await http1(agent, 'GET', `/r${i}`);
      assert.equal(res.status, 200);
      pods.add(res.body.split(' ')[0]!);
    }
    assert.deepEqual([...pods].sort(), ['pod=productpage-v1', 'pod=productpage-v2']);
    assert.ok(f.seen.length - before <= 4, `upstream tunnels are reused: ${f.seen.length - before} new CONNECTs for 30 requests`);
    agent.destroy();
    sleep.pool.destroy();
  });

  test('an endpoint the state marks unhealthy gets no more requests on a tunnel that is already open, and gets them again when healthy', async () => {
    const sleep = client(f, SLEEP, '10.20.0.31');
    const agent = new TunnelAgent(new StreamSocket(await sleep.connect(`${VIP}:9080`)));
    const v2 = workload('productpage-v2-bbbbb', '10.20.0.22', 'bookinfo-productpage', { [PP]: [[9080, 9080]] });
    const podsOf = async (count: number) => {
      const pods = new Set<string>();
      for (let i = 0; i < count; i++) pods.add((await http1(agent, 'GET', `/h${i}`)).body.split(' ')[0]!);
      return [...pods].sort();
    };
    assert.deepEqual(await podsOf(30), ['pod=productpage-v1', 'pod=productpage-v2']);
    f.state.applyAddresses([{ name: v2.uid, workload: create(WorkloadSchema, { ...v2, status: WorkloadStatus.UNHEALTHY }) }], []);
    assert.deepEqual(await podsOf(20), ['pod=productpage-v1']);
    f.state.applyAddresses([{ name: v2.uid, workload: v2 }], []);
    assert.deepEqual(await podsOf(30), ['pod=productpage-v1', 'pod=productpage-v2']);
    agent.destroy();
    sleep.pool.destroy();
  });

  test('a workload that has this waypoint (Workload.waypoint), addressed by its pod IP, is forwarded to that pod, twice in a row (the kept evaluation too)', async () => {
    const v1 = workload('productpage-v1-aaaaa', '10.20.0.21', 'bookinfo-productpage', { [PP]: [[9080, 9080]] });
    const behindWaypoint = create(WorkloadSchema, {
      ...v1,
      waypoint: create(GatewayAddressSchema, { destination: { case: 'address', value: create(NetworkAddressSchema, { network: '', address: ipToBytes('10.20.0.40') }) }, hboneMtlsPort: 15008 }),
    });
    f.state.applyAddresses([{ name: v1.uid, workload: behindWaypoint }], []);
    f.config.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP, GRPC, TCP, DOWN], workloads: [v1.uid] }) }], []);
    const sleep = client(f, SLEEP, '10.20.0.31');
    const before = f.seen.length;
    try {
      for (let i = 0; i < 2; i++) {
        const res = await http1(await sleep.connect('10.20.0.21:9080'), 'GET', `/w${i}`);
        assert.equal(res.status, 200, res.body);
        assert.match(res.body, new RegExp(`^pod=productpage-v1 GET /w${i} `));
      }
      // Upstream tunnels are pooled per endpoint: new CONNECTs, if any, go straight to the pod, not back to a waypoint.
      assert.deepEqual(f.seen.slice(before).filter((s) => s.authority !== '10.20.0.21:9080'), []);
    } finally {
      f.state.applyAddresses([{ name: v1.uid, workload: v1 }], []);
      f.config.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP, GRPC, TCP, DOWN] }) }], []);
      sleep.pool.destroy();
    }
  });

  test('seed 004 L7 policy: sleep GET passes, sleep DELETE and notsleep get 403 RBAC: access denied, counted with authenticated labels', async () => {
    f.config.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP, GRPC, TCP, DOWN], authorizations: [getOnlyFromSleep([`${CLUSTER}//Pod/default/productpage-v1-aaaaa`, `${CLUSTER}//Pod/default/productpage-v2-bbbbb`])] }) }], []);
    const sleep = client(f, SLEEP, '10.20.0.31');
    const notsleep = client(f, NOTSLEEP, '10.20.0.32');
    assert.equal((await http1(await sleep.connect(`${VIP}:9080`), 'GET', '/')).status, 200);
    const deleted = await http1(await sleep.connect(`${VIP}:9080`), 'DELETE', '/');
    assert.deepEqual([deleted.status, deleted.body], [403, 'RBAC: access denied']);
    const other = await http1(await notsleep.connect(`${VIP}:9080`), 'GET', '/');
    assert.deepEqual([other.status, other.body], [403, 'RBAC: access denied']);
    assert.equal(
      await counter(f, {
        reporter: 'waypoint',
        response_code: '403',
        source_workload: 'notsleep',
        source_workload_namespace: 'default',
        source_principal: NOTSLEEP,
        destination_principal: PRODUCTPAGE,
        destination_service: 'productpage.default.svc.cluster.local',
        connection_security_policy: 'mutual_tls',
      }),
      1,
    );
    assert.ok(captured.lines.some((l) => l.accessLog === true && l.status === 403 && l.method === 'DELETE'), 'an access log line for the denied DELETE');
    f.config.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP, GRPC, TCP, DOWN] }) }], []);
    sleep.pool.destroy();
    notsleep.pool.destroy();
  });

  test('an invalid policy is refused and the previous configuration stays in force', async () => {
    const good = create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP], authorizations: [getOnlyFromSleep([`${CLUSTER}//Pod/default/productpage-v1-aaaaa`, `${CLUSTER}//Pod/default/productpage-v2-bbbbb`])] });
    f.config.apply([{ name: 'default/waypoint', resource: good }], []);
    const bad = create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP], authorizations: [create(L7AuthorizationSchema, { name: 'broken', namespace: 'default', rules: [create(RuleSchema, { from: [create(SourceSchema, { principals: [create(StringMatchSchema, {})] })] })] })] });
    assert.throws(() => f.config.apply([{ name: 'default/waypoint', resource: bad }], []), /broken: rules\[0\]\.from\[0\]\.principals\[0\] has no match/);
    const notsleep = client(f, NOTSLEEP, '10.20.0.32');
    assert.equal((await http1(await notsleep.connect(`${VIP}:9080`), 'GET', '/')).status, 403, 'the ALLOW policy still applies');
    f.config.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP, GRPC, TCP, DOWN] }) }], []);
    notsleep.pool.destroy();
  });

  test('a CONNECT for a service or address the waypoint does not serve is refused', async () => {
    const sleep = client(f, SLEEP, '10.20.0.31');
    await assert.rejects(sleep.connect(`${OTHER_VIP}:80`), /403/);
    await assert.rejects(sleep.connect('10.20.0.31:80'), /403/);
    await assert.rejects(sleep.connect('productpage:9080'), /400/);
    sleep.pool.destroy();
  });

  test('HTTP/2 (gRPC) goes to the endpoint as HTTP/2, trailers included', async () => {
    const sleep = client(f, SLEEP, '10.20.0.31');
    const tunnel = await sleep.connect(`${GRPC_VIP}:50051`);
    const session = http2Connect('http://grpc', { createConnection: () => new StreamSocket(tunnel) });
    const req = session.request({ ':method': 'POST', ':path': '/pkg.Svc/Call', 'content-type': 'application/grpc', te: 'trailers' });
    let body = '';
    let trailers: Record<string, unknown> = {};
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('trailers', (t) => (trailers = t));
    await new Promise<void>((resolve, reject) => {
      req.on('end', () => resolve());
      req.on('error', reject);
      req.end('x');
    });
    assert.equal(body, 'h2 pod=grpc /pkg.Svc/Call');
    assert.equal(trailers['grpc-status'], '0');
    assert.equal(await counter(f, { request_protocol: 'grpc', grpc_response_status: '0', response_code: '200' }), 1);
    session.close();
    sleep.pool.destroy();
  });

  test('non-HTTP bytes pass as TCP to one endpoint', async () => {
    const sleep = client(f, SLEEP, '10.20.0.31');
    const tunnel = await sleep.connect(`${TCP_VIP}:9000`);
    tunnel.write('\x00\x01binary hello');
    const echoed = await new Promise<string>((resolve) => tunnel.once('data', (c: Buffer) => resolve(c.toString('latin1'))));
    assert.equal(echoed, '\x00\x01binary hello');
    tunnel.destroy();
    sleep.pool.destroy();
  });

  test('an endpoint that cannot be reached gets 503 with flag UF', async () => {
    const sleep = client(f, SLEEP, '10.20.0.31');
    const res = await http1(await sleep.connect(`${DOWN_VIP}:80`), 'GET', '/');
    assert.equal(res.status, 503);
    assert.match(res.body, /upstream connect error/);
    assert.ok((await counter(f, { response_code: '503', response_flags: 'UF' })) >= 1);
    sleep.pool.destroy();
  });

  test('garbage and oversized headers get 400/431 and the waypoint keeps serving', async () => {
    const sleep = client(f, SLEEP, '10.20.0.31');
    const raw = async (bytes: string) => {
      const tunnel = await sleep.connect(`${VIP}:9080`);
      tunnel.end(bytes);
      let text = '';
      for await (const chunk of tunnel) text += (chunk as Buffer).toString('latin1');
      return text;
    };
    assert.match(await raw('GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.match(await raw(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`), /^HTTP\/1\.1 431/);
    assert.match(await raw('GET / HTTP/9.9\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.equal((await http1(await sleep.connect(`${VIP}:9080`), 'GET', '/after')).status, 200);
    sleep.pool.destroy();
  });

  describe('mesh routes (VirtualService, DestinationRule subsets)', () => {
    const V1 = `${CLUSTER}//Pod/default/productpage-v1-aaaaa`;
    const V2 = `${CLUSTER}//Pod/default/productpage-v2-bbbbb`;
    const HOSTNAME = 'productpage.default.svc.cluster.local';
    const to = (subset: string, workloads: string[], weight = 1) => create(WeightedDestinationSchema, { hostname: HOSTNAME, weight, subset, workloads });
    const withRoutes = (...routes: Array<MessageInitShape<typeof HttpRouteSchema>>) =>
      f.config.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP, GRPC, TCP, DOWN], routes: [{ service: PP, routes }] }) }], []);
    const withPolicy = (destinationPolicy: MessageInitShape<typeof DestinationPolicySchema>) =>
      f.config.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP, GRPC, TCP, DOWN], destinationPolicies: [{ hostname: HOSTNAME, source: 'default/pp', ...destinationPolicy }] }) }], []);
    const podsOf = async (agent: Agent, count: number, headers: Record<string, string> = {}) => {
      const counts = new Map<string, number>();
      for (let i = 0; i < count; i++) {
        const res = await http1(agent, 'GET', `/r${i}`, headers);
        assert.equal(res.status, 200, res.body);
        const pod = res.body.split(' ')[0]!;
        counts.set(pod, (counts.get(pod) ?? 0) + 1);
      }
      return counts;
    };
    let sleep: ReturnType<typeof client>;
    let agent: Agent;
    const ejectionCount = () => ejectionCountOf(f);
    before(async () => {
      sleep = client(f, SLEEP, '10.20.0.31');
      agent = new TunnelAgent(new StreamSocket(await sleep.connect(`${VIP}:9080`)));
    });
    after(() => {
      agent.destroy();
      sleep.pool.destroy();
      f.config.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP, GRPC, TCP, DOWN] }) }], []);
    });

    test('90/10 by subset splits requests of one kept-alive connection per request; a subset without endpoints is 503', async () => {
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('v1', [V1], 90), to('v2', [V2], 10)] });
      const counts = await podsOf(agent, 300);
      const v2 = counts.get('pod=productpage-v2') ?? 0;
      // Expected 30 of 300 (binomial sd 5.2): far outside [8, 70] only by a broken split.
      assert.ok(v2 >= 8 && v2 <= 70, `v2 got ${v2} of 300: ${JSON.stringify([...counts])}`);
      assert.equal((counts.get('pod=productpage-v1') ?? 0) + v2, 300);
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('v1', [V1], 100), to('v2', [V2], 0)] });
      assert.deepEqual([...(await podsOf(agent, 20))], [['pod=productpage-v1', 20]]);
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('v9', [])] });
      const none = await http1(agent, 'GET', '/none');
      assert.equal(none.status, 503);
      assert.equal(none.body, 'no healthy upstream');
    });

    test('a header match sends end-user: jason to v2 and everyone else to v1 (Istio\'s request-routing task)', async () => {
      withRoutes(
        { source: 'VirtualService/default/pp#0', matches: [{ headers: [{ name: 'end-user', value: { match: { case: 'exact', value: 'jason' } } }] }], destinations: [to('v2', [V2])] },
        { source: 'VirtualService/default/pp#1', destinations: [to('v1', [V1])] },
      );
      assert.deepEqual([...(await podsOf(agent, 15, { 'end-user': 'jason' }))], [['pod=productpage-v2', 15]]);
      assert.deepEqual([...(await podsOf(agent, 15, { 'end-user': 'someone' }))], [['pod=productpage-v1', 15]]);
      assert.deepEqual([...(await podsOf(agent, 5))], [['pod=productpage-v1', 5]]);
    });

    test('fault abort 500 for every request: 500 "fault filter abort", counted with flag FI; nothing reaches the app', async () => {
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('v1', [V1])], fault: { abortStatus: 500, abortPercent: 100 } });
      const before = f.seen.length;
      const before500 = await counter(f, { response_code: '500', response_flags: 'FI' });
      for (let i = 0; i < 5; i++) assert.deepEqual(await http1(agent, 'GET', '/x'), { status: 500, body: 'fault filter abort' });
      assert.equal(await counter(f, { response_code: '500', response_flags: 'FI' }), before500 + 5);
      assert.equal(f.seen.length, before, 'no tunnel opened for aborted requests');
    });

    test('fault delay: the request is answered no sooner than the delay, flag DI', async () => {
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('v1', [V1])], fault: { delayMs: 400, delayPercent: 100 } });
      const started = performance.now();
      const res = await http1(agent, 'GET', '/delayed');
      const elapsed = performance.now() - started;
      assert.equal(res.status, 200);
      assert.ok(elapsed >= 395, `answered after ${elapsed.toFixed(0)} ms, delay 400 ms`);
      assert.ok((await counter(f, { response_flags: 'DI' })) >= 1);
    });

    test('a route timeout: 504 "upstream request timeout" (UT) for a slow endpoint; the connection keeps serving', async () => {
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('v1', [V1])], timeoutMs: 200 });
      assert.deepEqual(await http1(agent, 'GET', '/slow'), { status: 504, body: 'upstream request timeout' });
      assert.ok((await counter(f, { response_code: '504', response_flags: 'UT' })) >= 1);
      assert.equal((await http1(agent, 'GET', '/after-timeout')).status, 200);
    });

    test('retries on 5xx: a failing first try is retried and answered; without retries the 503 reaches the client', async () => {
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('both', [V1, V2])], retry: { attempts: 2, retryOn: ['5xx'] } });
      const retried = await http1(agent, 'GET', '/flaky-retried');
      assert.equal(retried.status, 200, retried.body);
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('both', [V1, V2])] });
      assert.deepEqual(await http1(agent, 'GET', '/flaky-plain'), { status: 503, body: 'try again' });
      // A per-try timeout is retried too, and the last try's timeout is the answer.
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('v1', [V1])], retry: { attempts: 1, perTryTimeoutMs: 150, retryOn: ['5xx'] } });
      const started = performance.now();
      assert.deepEqual(await http1(agent, 'GET', '/slow'), { status: 504, body: 'upstream request timeout' });
      assert.ok(performance.now() - started >= 295, 'two tries of 150 ms');
    });

    test('header changes: a request header set, a response header removed', async () => {
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('v1', [V1])], requestHeaders: { set: { 'x-canary': 'yes' } }, responseHeaders: { remove: ['x-app'] } });
      const res = await new Promise<{ body: string; headers: Record<string, unknown> }>((resolve, reject) => {
        const req = httpRequest({ agent, method: 'GET', path: '/h', headers: { host: 'productpage:9080' } }, (response) => {
          let text = '';
          response.on('data', (c: Buffer) => (text += c.toString()));
          response.on('end', () => resolve({ body: text, headers: response.headers }));
        });
        req.on('error', reject);
        req.end();
      });
      assert.match(res.body, /canary=yes/);
      assert.equal(res.headers['x-app'], undefined);
    });

    test('DestinationRule load balancing at the waypoint: round robin alternates; consistent hash by header keeps a user on one pod', async () => {
      withPolicy({ loadBalancer: { simple: LoadBalancer_Simple.ROUND_ROBIN } });
      const order: string[] = [];
      for (let i = 0; i < 6; i++) order.push((await http1(agent, 'GET', `/rr${i}`)).body.split(' ')[0]!);
      assert.ok(order.every((pod, i) => i === 0 || pod !== order[i - 1]), `alternates: ${order.join(', ')}`);
      withPolicy({ loadBalancer: { hashHeader: 'x-user' } });
      for (const user of ['alice', 'bob', 'carol']) {
        const pods = new Set<string>();
        for (let i = 0; i < 8; i++) pods.add((await http1(agent, 'GET', `/h${i}`, { 'x-user': user })).body.split(' ')[0]!);
        assert.equal(pods.size, 1, `${user} stays on one pod: ${[...pods].join(', ')}`);
      }
    });

    test('outlier detection: an endpoint answering 5xx in a row is ejected (counted, logged) and the rest of the requests succeed on the other', async () => {
      withPolicy({ outlierDetection: { consecutive5xxErrors: 2, baseEjectionTimeMs: 60_000, maxEjectionPercent: 50 } });
      const before = await ejectionCount();
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) statuses.push((await http1(agent, 'GET', `/fails-on-v1-${i}`)).status);
      assert.equal(await ejectionCount(), before + 1, 'one ejection');
      assert.ok(statuses.filter((s) => s === 500).length <= 2, `at most the two 500s that tripped it: ${statuses.join(' ')}`);
      assert.deepEqual(statuses.slice(-20), Array(20).fill(200), 'after the ejection only productpage-v2 answers');
      assert.ok(captured.lines.some((line) => line.msg === 'outlier detection ejected an endpoint' && String(line.endpoint).includes('productpage-v1')), 'logged, naming the endpoint');
    });

    test('rewrite (prefix and authority), redirect (301 with Location) and a mirror (a copy with Host -shadow, its answer dropped)', async () => {
      withRoutes({
        source: 'VirtualService/default/pp#0',
        matches: [{ path: { match: { case: 'prefix', value: '/old/' } } }],
        destinations: [to('v1', [V1])],
        rewrite: { uri: '/new/', authority: 'pp.example' },
        mirrors: [{ destination: to('v2', [V2]), percent: 100 }],
      }, {
        source: 'VirtualService/default/pp#1',
        matches: [{ path: { match: { case: 'exact', value: '/moved' } } }],
        redirect: { uri: '/here', code: 301 },
      });
      const before = appRequests.length;
      const res = await http1(agent, 'GET', '/old/page?x=1');
      assert.equal(res.status, 200);
      assert.match(res.body, /^pod=productpage-v1 GET \/new\/page\?x=1 /, 'the prefix rewritten, the query kept');
      await waitForCondition(() => appRequests.length >= before + 2);
      const seen = appRequests.slice(before);
      assert.deepEqual(seen.find((r) => r.pod === 'productpage-v1'), { pod: 'productpage-v1', url: '/new/page?x=1', host: 'pp.example' });
      assert.deepEqual(seen.find((r) => r.pod === 'productpage-v2'), { pod: 'productpage-v2', url: '/new/page?x=1', host: 'pp.example-shadow' }, 'the mirror got a copy');
      const redirected = await new Promise<{ status: number; location?: string }>((resolve, reject) => {
        const req = httpRequest({ agent, method: 'GET', path: '/moved?q=2', headers: { host: 'productpage:9080' } }, (response) => {
          response.resume();
          response.on('end', () => resolve({ status: response.statusCode ?? 0, location: response.headers.location }));
        });
        req.on('error', reject);
        req.end();
      });
      assert.deepEqual(redirected, { status: 301, location: 'http://productpage:9080/here' });
    });

    test('connection pool limits (circuit breaking): a request beyond http2MaxRequests gets 503 UO while another is in flight, and passes once it is done', async () => {
      withPolicy({ connectionPool: { maxRequests: 1 } });
      const second = new TunnelAgent(new StreamSocket(await sleep.connect(`${VIP}:9080`)));
      try {
        const slow = http1(agent, 'GET', '/slow');
        await new Promise((resolve) => setTimeout(resolve, 100));
        assert.deepEqual(await http1(second, 'GET', '/meanwhile'), { status: 503, body: 'upstream connect error or disconnect/reset before headers. reset reason: overflow' });
        assert.equal((await slow).status, 200);
        assert.equal((await http1(second, 'GET', '/after')).status, 200);
        const overflow = f.metrics.registry.getSingleMetric('ambit_waypoint_overflow_total');
        assert.ok(overflow && (await overflow.get()).values.some((v) => v.value >= 1), 'counted');
      } finally {
        second.destroy();
      }
    });

    test('a route timeout on gRPC (HTTP/2): DEADLINE_EXCEEDED (grpc-status 4) when the endpoint is slower, flag UT', async () => {
      const GRPC_HOST = 'grpc.default.svc.cluster.local';
      f.config.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: [PP, GRPC, TCP, DOWN], routes: [{ service: GRPC, routes: [{ source: 'VirtualService/default/grpc#0', destinations: [{ hostname: GRPC_HOST, weight: 1 }], timeoutMs: 200 }] }] }) }], []);
      const grpcClient = client(f, SLEEP, '10.20.0.31');
      const tunnel = await grpcClient.connect(`${GRPC_VIP}:50051`);
      const session = http2Connect('http://grpc', { createConnection: () => new StreamSocket(tunnel) });
      const call = (path: string) =>
        new Promise<{ status: string | undefined; body: string }>((resolve, reject) => {
          const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
          let body = '';
          let status: string | undefined;
          req.on('response', (headers) => (status = headers['grpc-status'] as string | undefined));
          req.on('trailers', (t) => (status = (t['grpc-status'] as string | undefined) ?? status));
          req.on('data', (c: Buffer) => (body += c.toString()));
          req.on('end', () => resolve({ status, body }));
          req.on('error', reject);
          req.end('x');
        });
      try {
        assert.deepEqual(await call('/pkg.Svc/Slow'), { status: '4', body: '' });
        assert.equal((await call('/pkg.Svc/Call')).status, '0', 'a fast call on the same session passes');
        assert.ok((await counter(f, { response_flags: 'UT', request_protocol: 'grpc' })) >= 1);
      } finally {
        session.close();
        grpcClient.pool.destroy();
      }
    });

    test('a bad route on the wire (invalid regex) is refused and the previous routes stay', () => {
      withRoutes({ source: 'VirtualService/default/pp#0', destinations: [to('v1', [V1])] });
      assert.throws(() => withRoutes({ source: 'bad', matches: [{ path: { match: { case: 'regex', value: '(' } } }], destinations: [to('v1', [V1])] }), /invalid regular expression/);
      assert.equal(f.config.served.routes.get(PP)?.[0]?.source, 'VirtualService/default/pp#0');
    });
  });
});
