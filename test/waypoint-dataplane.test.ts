/**
 * ztunnel's side of waypoints on real sockets: two ztunnels with ZtunnelState fed objects directly,
 * and a stand-in waypoint (an HBONE endpoint with the waypoint's identity that records each CONNECT
 * and tunnels on to the destination ztunnel with its own identity, as the real waypoint does).
 */
import assert from 'node:assert/strict';
import { connect as http2Connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';

import { create } from '@bufbuild/protobuf';

import { ipToBytes, normalizeIp } from '../src/api/ip.js';
import { Action, AuthorizationSchema, Scope, StringMatchSchema } from '../src/gen/istio/security/authorization_pb.js';
import {
  GatewayAddressSchema,
  NamespacedHostnameSchema,
  NetworkAddressSchema,
  PortListSchema,
  PortSchema,
  ServiceSchema,
  TunnelProtocol,
  WorkloadSchema,
  WorkloadType,
  type Workload,
} from '../src/gen/istio/workload/workload_pb.js';
import { HboneEndpoint } from '../src/hbone/endpoint.js';
import { HbonePool } from '../src/hbone/pool.js';
import { spliceCounted } from '../src/hbone/index.js';
import { createRootCa, type CertificateAuthority } from '../src/util/pki.js';
import { createProxyMetrics, type ProxyMetrics } from '../src/ztunnel/metrics.js';
import { Proxy } from '../src/ztunnel/proxy/proxy.js';
import { ZtunnelState } from '../src/ztunnel/state/store.js';
import { captureLog, FakeCertificates, listenOn, metricValue, readExactly, readToEnd, waitFor, type CapturedLog } from './helpers/proxy-fakes.js';

const CLUSTER = 'cluster1';
const TRUST_DOMAIN = 'cluster.local';
const identity = (sa: string) => `spiffe://${TRUST_DOMAIN}/ns/default/sa/${sa}`;
const CURL_IDENTITY = identity('curl');
const WAYPOINT_IDENTITY = identity('waypoint');
const HBONE = 15008;
const APP_PORT = 9080;

const CURL_IP = '127.0.81.1'; // node-a, the client
const WAYPOINT_IP = '127.0.82.1'; // the waypoint pod (not captured, HBONE on 15008 itself)
const PRODUCTPAGE_IP = '127.0.83.1'; // node-b, behind its service's waypoint
const REVIEWS_IP = '127.0.83.2'; // node-b, Workload.waypoint (the sandwich rule applies)
const LOCKED_IP = '127.0.83.3'; // node-b, Workload.waypoint, its L4 policy denies the waypoint
const OUTSIDER_IP = '127.0.84.1'; // a plaintext client from outside the mesh
const PRODUCTPAGE_VIP = '127.0.85.1';
const REVIEWS_VIP = '127.0.85.2';
const WAYPOINT_VIP = '127.0.85.3';

const WAYPOINT_HOST = 'waypoint.default.svc.cluster.local';
const waypointAddress = () =>
  create(GatewayAddressSchema, { destination: { case: 'hostname', value: create(NamespacedHostnameSchema, { namespace: 'default', hostname: WAYPOINT_HOST }) }, hboneMtlsPort: HBONE });

function pod(name: string, ip: string, node: string, sa: string, services: Record<string, number>, extra: Partial<Pick<Workload, 'waypoint' | 'tunnelProtocol' | 'authorizationPolicies'>> = {}): Workload {
  return create(WorkloadSchema, {
    uid: `${CLUSTER}//Pod/default/${name}`,
    name,
    namespace: 'default',
    addresses: [ipToBytes(ip)],
    serviceAccount: sa,
    trustDomain: TRUST_DOMAIN,
    node,
    canonicalName: name.replace(/-\d+$/, ''),
    canonicalRevision: 'v1',
    workloadName: name.replace(/-\d+$/, ''),
    workloadType: WorkloadType.DEPLOYMENT,
    clusterId: CLUSTER,
    tunnelProtocol: TunnelProtocol.HBONE,
    services: Object.fromEntries(Object.entries(services).map(([svc, port]) => [`default/${svc}`, create(PortListSchema, { ports: [create(PortSchema, { servicePort: port, targetPort: port })] })])),
    ...extra,
  });
}

function service(name: string, vip: string, port: number, waypoint: boolean) {
  return create(ServiceSchema, {
    name,
    namespace: 'default',
    hostname: `${name}.default.svc.cluster.local`,
    addresses: [create(NetworkAddressSchema, { network: '', address: ipToBytes(vip) })],
    ports: [create(PortSchema, { servicePort: port, targetPort: port })],
    waypoint: waypoint ? waypointAddress() : undefined,
  });
}

/** The same mesh as every ztunnel's control plane would send it. */
function meshState(nodeName: string): ZtunnelState {
  const state = new ZtunnelState({ network: '', nodeName, clusterId: CLUSTER, systemNamespace: 'istio-system', logger: captureLog(`state-${nodeName}`).log });
  const services = [service('productpage', PRODUCTPAGE_VIP, APP_PORT, true), service('reviews', REVIEWS_VIP, APP_PORT, false), service('waypoint', WAYPOINT_VIP, HBONE, false)];
  const workloads = [
    pod('curl-1', CURL_IP, 'node-a', 'curl', {}),
    pod('waypoint-1', WAYPOINT_IP, 'node-w', 'waypoint', { [WAYPOINT_HOST]: HBONE }, { tunnelProtocol: TunnelProtocol.NONE }),
    pod('productpage-1', PRODUCTPAGE_IP, 'node-b', 'bookinfo-productpage', { 'productpage.default.svc.cluster.local': APP_PORT }),
    pod('reviews-1', REVIEWS_IP, 'node-b', 'bookinfo-reviews', { 'reviews.default.svc.cluster.local': APP_PORT }, { waypoint: waypointAddress() }),
    pod('locked-1', LOCKED_IP, 'node-b', 'locked', {}, { waypoint: waypointAddress(), authorizationPolicies: ['default/deny-waypoint'] }),
  ];
  state.applyAddresses([...services.map((svc) => ({ name: `default/${svc.hostname}`, service: svc })), ...workloads.map((w) => ({ name: w.uid, workload: w }))], []);
  const denyWaypoint = create(AuthorizationSchema, {
    name: 'deny-waypoint',
    namespace: 'default',
    scope: Scope.WORKLOAD_SELECTOR,
    action: Action.DENY,
    rules: [{ clauses: [{ matches: [{ principals: [create(StringMatchSchema, { matchType: { case: 'exact', value: `${TRUST_DOMAIN}/ns/default/sa/waypoint` } })] }] }] }],
  });
  state.applyAuthorizations([{ name: 'default/deny-waypoint', authorization: denyWaypoint }], []);
  return state;
}

interface SeenConnect {
  peerIdentity: string;
  headers: IncomingHttpHeaders;
}

describe('ztunnel and waypoints on real sockets', () => {
  let ca: CertificateAuthority;
  let certificates: FakeCertificates;
  let clientState: ZtunnelState;
  let serverState: ZtunnelState;
  let clientMetrics: ProxyMetrics;
  let serverMetrics: ProxyMetrics;
  let waypointMetrics: ProxyMetrics;
  let clientLog: CapturedLog;
  let serverLog: CapturedLog;
  let clientProxy: Proxy;
  let serverProxy: Proxy;
  let waypoint: HboneEndpoint;
  let waypointPool: HbonePool;
  let echo: Server;
  let echoPort = 0;
  const seen: SeenConnect[] = [];
  const sockets = new Set<Socket>();

  /** Where each address:port is in the test: pods' app port → the echo server; HBONE → the ztunnel of node-b or the waypoint. */
  const dialAddress = (ip: string, port: number) => {
    if (port === HBONE) return ip === WAYPOINT_IP ? { host: '127.0.0.1', port: waypoint.port() } : { host: ip, port: serverProxy.ports().inbound };
    return { host: ip, port: port === APP_PORT ? echoPort : port };
  };
  const originalDestination = (proxy: () => Proxy) => (socket: Socket) => {
    const ip = normalizeIp(socket.localAddress ?? '');
    return { ip, port: socket.localPort === proxy().ports().inbound ? HBONE : APP_PORT };
  };

  /** A captured connection from curl to `ip`, as the pod would make it. */
  function fromCurl(ip: string): Socket {
    const socket = netConnect({ host: ip, port: clientProxy.ports().outbound, localAddress: CURL_IP, allowHalfOpen: true });
    sockets.add(socket);
    socket.on('error', () => undefined);
    return socket;
  }

  async function roundTrip(socket: Socket, message: string): Promise<string> {
    const reply = readExactly(socket, Buffer.byteLength(message));
    socket.write(message);
    return (await reply).toString();
  }

  /** A CONNECT straight to node-b's ztunnel with a certificate of `sa`, as a client going around the waypoint would. */
  async function directConnect(sa: string, ip: string): Promise<{ status: number; body: string }> {
    const certificate = await certificates.certificateFor(identity(sa));
    const tls = tlsConnect({ host: ip, port: serverProxy.ports().inbound, ca: ca.certPem, cert: certificate.certChainPem, key: certificate.keyPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    tls.on('error', () => undefined);
    const session: ClientHttp2Session = http2Connect(`https://${ip}`, { createConnection: () => tls });
    session.on('error', () => undefined);
    try {
      return await new Promise((resolve, reject) => {
        const stream = session.request({ ':method': 'CONNECT', ':authority': `${ip}:${APP_PORT}` }, { endStream: false });
        const chunks: Buffer[] = [];
        stream.on('response', (headers) => {
          const status = Number(headers[':status']);
          if (status === 200) {
            stream.close();
            resolve({ status, body: '' });
            return;
          }
          stream.on('data', (chunk: Buffer) => chunks.push(chunk));
          stream.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString() }));
        });
        stream.on('error', reject);
      });
    } finally {
      session.destroy();
    }
  }

  before(async () => {
    ca = await createRootCa('ambit waypoint test root');
    certificates = new FakeCertificates(ca);
    echo = createNetServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    echoPort = await listenOn(echo);

    clientState = meshState('node-a');
    serverState = meshState('node-b');
    clientMetrics = createProxyMetrics();
    serverMetrics = createProxyMetrics();
    waypointMetrics = createProxyMetrics();
    clientLog = captureLog('client-ztunnel');
    serverLog = captureLog('server-ztunnel');
    const listen = { outbound: 0, inbound: 0, inboundPlaintext: 0, host: '0.0.0.0' };
    serverProxy = new Proxy({ state: serverState, certificates, log: serverLog.log, metrics: serverMetrics, clusterId: CLUSTER, listen, originalDestination: originalDestination(() => serverProxy), dialAddress });
    await serverProxy.start();
    clientProxy = new Proxy({ state: clientState, certificates, log: clientLog.log, metrics: clientMetrics, clusterId: CLUSTER, listen, originalDestination: originalDestination(() => clientProxy), hbonePort: HBONE, dialAddress });
    await clientProxy.start();

    // The stand-in waypoint: records the CONNECT, resolves its :authority as the waypoint does
    // (ignoreWaypoints) and tunnels to the endpoint's ztunnel with the waypoint's own identity.
    const waypointLog = captureLog('waypoint');
    waypointPool = new HbonePool({ certificates, log: waypointLog.log, metrics: waypointMetrics, hbonePort: HBONE, dialAddress });
    const self = clientState.workloadByIp(WAYPOINT_IP)!;
    waypoint = new HboneEndpoint({
      role: 'waypoint',
      identity: WAYPOINT_IDENTITY,
      certificates,
      log: waypointLog.log,
      metrics: waypointMetrics,
      onConnect: async ({ connection, headers }) => {
        seen.push({ peerIdentity: connection.peerIdentity, headers });
        const [ip, port] = String(headers[':authority']).split(':');
        const resolution = clientState.resolve(self, ip!, Number(port), { ignoreWaypoints: true });
        if (resolution.kind !== 'hbone') return { kind: 'reject', status: 503, reason: 'no_endpoint', message: `resolved to ${resolution.kind}` };
        const { upstream } = resolution;
        try {
          const tunnel = await waypointPool.connect({ sourceIdentity: WAYPOINT_IDENTITY, expectedIdentities: upstream.expectedIdentities, destination: upstream.address, authority: `${upstream.address}:${upstream.port}`, headers: {} });
          return { kind: 'serve', serve: (stream) => spliceCounted(stream, tunnel, waypointMetrics.openTcpConnection({ reporter: 'destination', source: {}, destination: {}, mutualTls: true }), waypointLog.log, {}) };
        } catch (error) {
          return { kind: 'reject', status: 503, reason: 'upstream_refused', message: error instanceof Error ? error.message : String(error) };
        }
      },
    });
    await waypoint.start(0, '127.0.0.1');
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    await clientProxy?.stop({ drainTimeoutMs: 0 });
    await serverProxy?.stop({ drainTimeoutMs: 0 });
    await waypoint?.stop({ drainTimeoutMs: 0 });
    waypointPool?.destroy();
    for (const metrics of [clientMetrics, serverMetrics, waypointMetrics]) metrics?.close();
    echo?.close();
  });

  test('a service with Service.waypoint: HBONE to the waypoint pod, CONNECT VIP:port with the HBONE headers, then on to the endpoint', async () => {
    const before = seen.length;
    const socket = fromCurl(PRODUCTPAGE_VIP);
    assert.equal(await roundTrip(socket, 'via the waypoint'), 'via the waypoint');
    socket.end();
    assert.equal((await readToEnd(socket)).reset, false);
    const connect = seen.slice(before);
    assert.equal(connect.length, 1, 'the waypoint got exactly one CONNECT');
    assert.equal(connect[0]!.peerIdentity, CURL_IDENTITY, 'the client ztunnel speaks for curl to the waypoint');
    assert.equal(connect[0]!.headers[':authority'], `${PRODUCTPAGE_VIP}:${APP_PORT}`);
    assert.equal(connect[0]!.headers.forwarded, `for="${CURL_IP}"`);
    assert.match(String(connect[0]!.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    assert.ok(String(connect[0]!.headers.baggage).split(',').includes('k8s.deployment.name=curl'));
    // reporter=source: the peer is the waypoint, the service is what the client asked for.
    const labels = { reporter: 'source', source_principal: CURL_IDENTITY, destination_principal: WAYPOINT_IDENTITY, destination_workload: 'waypoint', destination_service: 'productpage.default.svc.cluster.local' };
    await waitFor('the client ztunnel to count the connection', async () => (await metricValue(clientMetrics, 'istio_tcp_connections_closed_total', labels)) === 1);
    // The destination ztunnel saw the waypoint's identity.
    await waitFor('the destination ztunnel to count it', async () =>
      (await metricValue(serverMetrics, 'istio_tcp_connections_closed_total', { reporter: 'destination', source_principal: WAYPOINT_IDENTITY, destination_workload: 'productpage' })) === 1);
  });

  test('a pod with Workload.waypoint, addressed directly: CONNECT pod:port to the waypoint; the destination ztunnel accepts the waypoint', async () => {
    const before = seen.length;
    const socket = fromCurl(REVIEWS_IP);
    assert.equal(await roundTrip(socket, 'sandwich'), 'sandwich');
    socket.destroy();
    assert.equal(seen.slice(before).at(0)?.headers[':authority'], `${REVIEWS_IP}:${APP_PORT}`);
  });

  test('a service without a waypoint whose picked endpoint has one: CONNECT to that pod through the waypoint', async () => {
    const before = seen.length;
    const socket = fromCurl(REVIEWS_VIP);
    assert.equal(await roundTrip(socket, 'picked'), 'picked');
    socket.destroy();
    assert.equal(seen.slice(before).at(0)?.headers[':authority'], `${REVIEWS_IP}:${APP_PORT}`);
  });

  test('the sandwich rule: a client going around the waypoint is refused 401 (waypoint_bypassed), counted and logged naming the waypoint', async () => {
    const refused = await directConnect('curl', REVIEWS_IP);
    assert.equal(refused.status, 401);
    assert.match(refused.body, /through its waypoint default\/waypoint\.default\.svc\.cluster\.local/);
    assert.equal(await metricValue(serverMetrics, 'ambit_hbone_rejected_streams_total', { direction: 'inbound', code: '401', reason: 'waypoint_bypassed' }), 1);
    assert.equal(await metricValue(serverMetrics, 'istio_tcp_connections_opened_total', { reporter: 'destination', source_principal: CURL_IDENTITY, destination_workload: 'reviews', response_flags: 'DENY' }), 1);
    await waitFor('the refusal to be logged', () => serverLog.lines.some((line) => line.msg === 'HBONE CONNECT rejected' && line.waypoint === `default/${WAYPOINT_HOST}`));
    // The waypoint's own identity is let through (the destination's L4 policy allows it here).
    assert.equal((await directConnect('waypoint', REVIEWS_IP)).status, 200);
  });

  test('the waypoint still meets the destination\'s L4 policy, with the waypoint\'s identity as the source', async () => {
    const denied = await directConnect('waypoint', LOCKED_IP);
    assert.equal(denied.status, 401);
    assert.equal(await metricValue(serverMetrics, 'ambit_hbone_rejected_streams_total', { direction: 'inbound', code: '401', reason: 'policy_denied' }), 1);
    // Through the client ztunnel and the waypoint, the same denial resets the client.
    const socket = fromCurl(LOCKED_IP);
    socket.write('x');
    const outcome = await readToEnd(socket);
    assert.equal(outcome.data.length, 0);
  });

  test('plaintext (15006) to a workload behind a waypoint is refused, counted and logged', async () => {
    const socket = netConnect({ host: REVIEWS_IP, port: serverProxy.ports().inboundPlaintext, localAddress: OUTSIDER_IP });
    sockets.add(socket);
    socket.on('error', () => undefined);
    const outcome = await readToEnd(socket);
    assert.equal(outcome.data.length, 0);
    assert.equal(await metricValue(serverMetrics, 'ambit_proxy_refused_connections_total', { listener: 'inbound_plaintext', reason: 'waypoint_bypassed' }), 1);
    assert.ok(serverLog.lines.some((line) => line.waypoint === `default/${WAYPOINT_HOST}` && /plaintext connection to a workload behind waypoint/.test(String(line.msg))));
    // A workload without a waypoint still takes plaintext from outside the mesh.
    const open = netConnect({ host: PRODUCTPAGE_IP, port: serverProxy.ports().inboundPlaintext, localAddress: OUTSIDER_IP, allowHalfOpen: true });
    sockets.add(open);
    await new Promise((resolve) => open.once('connect', resolve));
    assert.equal(await roundTrip(open, 'plain'), 'plain');
    open.destroy();
  });

  test('a waypoint presenting another identity is refused by the client ztunnel', async () => {
    // The waypoint pod now says it runs as another service account: the client expects that one.
    const moved = pod('waypoint-1', WAYPOINT_IP, 'node-w', 'someone-else', { [WAYPOINT_HOST]: HBONE }, { tunnelProtocol: TunnelProtocol.NONE });
    clientState.applyAddresses([{ name: moved.uid, workload: moved }], []);
    try {
      const socket = fromCurl(PRODUCTPAGE_VIP);
      socket.write('x');
      const outcome = await readToEnd(socket);
      assert.equal(outcome.data.length, 0);
      assert.equal(outcome.reset, true);
      await waitFor('the failure to be logged with the waypoint hop', () =>
        clientLog.lines.some((line) => line.msg === 'outbound HBONE connection failed; resetting' && line.waypoint === `default/${WAYPOINT_HOST}` && line.waypointPod === 'default/waypoint-1'));
    } finally {
      const original = pod('waypoint-1', WAYPOINT_IP, 'node-w', 'waypoint', { [WAYPOINT_HOST]: HBONE }, { tunnelProtocol: TunnelProtocol.NONE });
      clientState.applyAddresses([{ name: original.uid, workload: original }], []);
    }
  });
});
