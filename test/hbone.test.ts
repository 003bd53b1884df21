import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as http2Connect, performServerHandshake, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';

import { create } from '@bufbuild/protobuf';

import { NetworkMode, ServiceSchema, TunnelProtocol, WorkloadSchema, WorkloadType, type Workload } from '../src/gen/istio/workload/workload_pb.js';
import { ipToBytes, bytesToIp, normalizeIp } from '../src/api/ip.js';
import { createRootCa, issueLeaf, type CertificateAuthority, type KeyPairPem } from '../src/util/pki.js';
import { createProxyMetrics, type ProxyMetrics } from '../src/ztunnel/metrics.js';
import { baggageFor, forwardedFor, parseAuthority, parseBaggage, parseForwardedFor, parseHboneTarget } from '../src/hbone/headers.js';
import { spiffeIdentities, subjectAltNames } from '../src/hbone/peer-identity.js';
import { Proxy } from '../src/ztunnel/proxy/proxy.js';
import { serviceTargetOf } from '../src/ztunnel/state/service-target.js';
import type { AuthorizationDecision, ConnectionFacts, ProxyState, Resolution, ServiceTarget } from '../src/ztunnel/state/types.js';
import { captureLog, FakeCertificates, listenOn, metricValue, readExactly, readToEnd, waitFor, type CapturedLog } from './helpers/proxy-fakes.js';

// ---------------------------------------------------------------------------------------------
// Topology: two "nodes" (two proxies) on loopback. Pod IPs are loopback addresses, so the
// address a connection was sent to is the accepted socket's local address, as after REDIRECT.
// ---------------------------------------------------------------------------------------------

const TRUST_DOMAIN = 'cluster.local';
const CLUSTER = 'cluster1';
const identity = (sa: string) => `spiffe://${TRUST_DOMAIN}/ns/default/sa/${sa}`;
const CURL_IDENTITY = identity('curl');
const ECHO_IDENTITY = identity('echo');

const HBONE = 15008;
const ECHO_PORT = 8080;
const CLOSED_PORT = 8081;
const SINK_PORT = 9000;

const NODE_A_IP = '127.0.0.1'; // node-a's address: its ztunnel dials from here
const CURL_IP = '127.0.10.1'; // node-a, the client
const STRANGER_IP = '127.0.10.99'; // not a mesh workload
const ECHO_IP = '127.0.20.1'; // node-b
const ECHO2_IP = '127.0.20.2'; // node-b, same identity
const POOL_IP = '127.0.20.3'; // node-b, only used by the pooling test
const RENEW_IP = '127.0.20.4'; // node-b, only used by the renewal test
const LOCKED_IP = '127.0.20.5'; // node-b, denied by policy
const FLOODED_IP = '127.0.20.12'; // node-b, denied by policy, only used by the cardinality test
const DOWN_IP = '127.0.20.6'; // node-b, nothing listens on its port
const SINK_IP = '127.0.20.7'; // node-b, counts bytes
const IMPOSTOR_IP = '127.0.20.8'; // node-b, the client expects another identity for it
const PROBE_IP = '127.0.20.9'; // a bare HBONE server that records what the client sends
const BUSY_IP = '127.0.20.10'; // node-b, only used by the concurrency test
const IDLE_IP = '127.0.20.11'; // node-b, only used by the idle-release test
const PLAIN_IP = '127.0.30.1'; // node-b, not enrolled (tunnel protocol NONE)
const EXTERNAL_IP = '127.0.40.1'; // not in the mesh
const GHOST_VIP = '127.0.50.1'; // a service with no endpoint
const OUTSIDER_IP = '127.0.60.1'; // a plaintext client from outside the mesh

const APP_PORT = new Map<string, number>([
  [DOWN_IP, CLOSED_PORT],
  [SINK_IP, SINK_PORT],
]);

function workload(name: string, ip: string, node: string, options: { serviceAccount?: string; tunnel?: TunnelProtocol; hostNetwork?: boolean } = {}): Workload {
  return create(WorkloadSchema, {
    uid: `${CLUSTER}//Pod/default/${name}`,
    name,
    namespace: 'default',
    addresses: [ipToBytes(ip)],
    serviceAccount: options.serviceAccount ?? name,
    trustDomain: TRUST_DOMAIN,
    node,
    canonicalName: name,
    canonicalRevision: 'v1',
    workloadName: name,
    workloadType: WorkloadType.DEPLOYMENT,
    tunnelProtocol: options.tunnel ?? TunnelProtocol.HBONE,
    networkMode: options.hostNetwork ? NetworkMode.HOST_NETWORK : NetworkMode.STANDARD,
    clusterId: CLUSTER,
  });
}

const WORKLOADS: Workload[] = [
  workload('curl', CURL_IP, 'node-a'),
  workload('echo', ECHO_IP, 'node-b'),
  workload('echo2', ECHO2_IP, 'node-b', { serviceAccount: 'echo' }),
  workload('pooled', POOL_IP, 'node-b', { serviceAccount: 'echo' }),
  workload('renewed', RENEW_IP, 'node-b', { serviceAccount: 'echo' }),
  workload('locked', LOCKED_IP, 'node-b', { serviceAccount: 'echo' }),
  workload('locked-flooded', FLOODED_IP, 'node-b', { serviceAccount: 'echo' }),
  workload('down', DOWN_IP, 'node-b', { serviceAccount: 'echo' }),
  workload('sink', SINK_IP, 'node-b', { serviceAccount: 'echo' }),
  workload('impostor', IMPOSTOR_IP, 'node-b', { serviceAccount: 'echo' }),
  workload('probe', PROBE_IP, 'node-c', { serviceAccount: 'echo' }),
  workload('busy', BUSY_IP, 'node-b', { serviceAccount: 'echo' }),
  workload('idle', IDLE_IP, 'node-b', { serviceAccount: 'echo' }),
  workload('plain', PLAIN_IP, 'node-b', { tunnel: TunnelProtocol.NONE }),
  // node-a's ztunnel pod (host network): HBONE connections come from its node address, and it may
  // name its own pods as the source in `forwarded`.
  workload('ztunnel-node-a', NODE_A_IP, 'node-a', { serviceAccount: 'ztunnel', tunnel: TunnelProtocol.NONE, hostNetwork: true }),
];

const GHOST_SERVICE = create(ServiceSchema, { name: 'ghost', namespace: 'default', hostname: 'ghost.default.svc.cluster.local' });

class FakeState implements ProxyState {
  readonly network = '';
  readonly authorizations: ConnectionFacts[] = [];

  constructor(readonly nodeName: string) {}

  waypointIdentities(): string[] {
    return [];
  }

  workloadByIp(ip: string): Workload | undefined {
    return WORKLOADS.find((candidate) => candidate.networkMode !== NetworkMode.HOST_NETWORK && candidate.addresses.some((address) => bytesToIp(address) === ip));
  }

  hostNetworkWorkloadsAt(ip: string): Workload[] {
    return WORKLOADS.filter((candidate) => candidate.networkMode === NetworkMode.HOST_NETWORK && candidate.addresses.some((address) => bytesToIp(address) === ip));
  }

  knowsNetwork(network: string): boolean {
    return network === this.network;
  }

  resolve(_source: Workload, destinationIp: string, destinationPort: number): Resolution {
    if (destinationIp === GHOST_VIP) return { kind: 'unavailable', service: GHOST_SERVICE, reason: 'no healthy endpoint' };
    const destination = this.workloadByIp(destinationIp);
    if (!destination) return { kind: 'passthrough' };
    const expectedIdentities = destinationIp === IMPOSTOR_IP ? [identity('someone-else')] : [identity(destination.serviceAccount)];
    const upstream = { workload: destination, address: destinationIp, port: destinationPort, expectedIdentities };
    return destination.tunnelProtocol === TunnelProtocol.HBONE ? { kind: 'hbone', upstream } : { kind: 'plaintext', upstream };
  }

  serviceTarget(destination: Workload, hostname: string, servicePort: number): ServiceTarget {
    return serviceTargetOf(destination, hostname, servicePort, () => undefined);
  }

  authorize(facts: ConnectionFacts): AuthorizationDecision {
    this.authorizations.push(facts);
    if (facts.destination.name.startsWith('locked')) return { allowed: false, policy: 'default/deny-all', reason: 'matched a DENY rule' };
    return { allowed: true, reason: 'no policy' };
  }

  localEnrolledWorkloads(): Workload[] {
    return WORKLOADS.filter((candidate) => candidate.node === this.nodeName && candidate.tunnelProtocol === TunnelProtocol.HBONE);
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function connected(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
}

async function roundTrip(socket: Socket, message: string): Promise<string> {
  const reply = readExactly(socket, Buffer.byteLength(message));
  socket.write(message);
  return (await reply).toString();
}

// ---------------------------------------------------------------------------------------------
// Header and certificate parsing
// ---------------------------------------------------------------------------------------------

describe('HBONE request parsing', () => {
  test(':authority must be ip:port', () => {
    assert.deepEqual(parseAuthority('10.1.2.3:8080'), { ok: true, ip: '10.1.2.3', port: 8080 });
    assert.deepEqual(parseAuthority('[fd00::1]:443'), { ok: true, ip: 'fd00::1', port: 443 });
    for (const bad of [undefined, '', '10.1.2.3', 'echo.default.svc:80', '10.1.2.3:0', '10.1.2.3:70000', '[fd00::1]', 'fd00::1:80', '10.1.2.3:80:90']) {
      const parsed = parseAuthority(bad);
      assert.equal(parsed.ok, false, `${String(bad)} is refused`);
      if (!parsed.ok) assert.match(parsed.reason, /:authority/);
    }
  });

  test(':authority of an HBONE CONNECT may also be hostname:port', () => {
    assert.deepEqual(parseHboneTarget('10.1.2.3:8080'), { ok: true, kind: 'address', ip: '10.1.2.3', port: 8080 });
    assert.deepEqual(parseHboneTarget('HelloWorld.sample.svc.cluster.local:5000'), { ok: true, kind: 'hostname', hostname: 'helloworld.sample.svc.cluster.local', port: 5000 });
    assert.deepEqual(parseHboneTarget('localhost:1'), { ok: true, kind: 'hostname', hostname: 'localhost', port: 1 });
    for (const bad of [undefined, '', 'echo:0', 'echo:70000', 'echo', '-echo.svc:80', 'echo..svc:80', 'echo_1.svc:80', '10.1.2.3:0', '10.1.2:80', 'a b:80']) {
      const parsed = parseHboneTarget(bad);
      assert.equal(parsed.ok, false, `${String(bad)} is refused`);
      if (!parsed.ok) assert.match(parsed.reason, /:authority/);
    }
  });

  test('forwarded for= round-trips IPv4 and IPv6, and ignores what is not an address', () => {
    assert.equal(parseForwardedFor(forwardedFor('10.0.0.1')), '10.0.0.1');
    assert.equal(parseForwardedFor(forwardedFor('fd00::7')), 'fd00::7');
    assert.equal(parseForwardedFor('for=192.0.2.60;proto=http;by=203.0.113.43'), '192.0.2.60');
    assert.equal(parseForwardedFor('for="[2001:db8:cafe::17]:4711"'), '2001:db8:cafe::17');
    assert.equal(parseForwardedFor('for=_hidden'), undefined);
    assert.equal(parseForwardedFor('for="not an ip"'), undefined);
    assert.equal(parseForwardedFor(undefined), undefined);
  });

  test('baggage carries the source workload and parses back', () => {
    const source = workload('curl', CURL_IP, 'node-a');
    const baggage = baggageFor(source, 'fallback');
    assert.equal(baggage, 'k8s.cluster.name=cluster1,k8s.namespace.name=default,k8s.deployment.name=curl,service.name=curl,service.version=v1');
    assert.deepEqual(parseBaggage(baggage), { cluster: 'cluster1', namespace: 'default', workload: 'curl', canonicalService: 'curl', canonicalRevision: 'v1' });
    assert.deepEqual(parseBaggage('garbage,=x,k8s.namespace.name=%E0%A4%A,service.name=a%2Cb;prop=1'), { canonicalService: 'a,b' });
  });

  test('SPIFFE identities come from URI SANs only, quoted values included', () => {
    assert.deepEqual(subjectAltNames('DNS:a.example, URI:spiffe://td/ns/a/sa/b, IP Address:10.0.0.1', 'URI'), ['spiffe://td/ns/a/sa/b']);
    assert.deepEqual(subjectAltNames('URI:"spiffe://td/ns/a/sa/b, DNS:x", DNS:y', 'URI'), ['spiffe://td/ns/a/sa/b, DNS:x']);
    assert.deepEqual(spiffeIdentities('URI:https://example.com/x, URI:spiffe://td/ns/a/sa/b'), ['spiffe://td/ns/a/sa/b']);
    assert.deepEqual(spiffeIdentities('DNS:spiffe.example'), []);
    assert.deepEqual(spiffeIdentities(undefined), []);
  });
});

// ---------------------------------------------------------------------------------------------
// The test bed
// ---------------------------------------------------------------------------------------------

describe('HBONE data path', () => {
  let ca: CertificateAuthority;
  let otherCa: CertificateAuthority;
  let certificates: FakeCertificates;
  let clientState: FakeState;
  let serverState: FakeState;
  let clientMetrics: ProxyMetrics;
  let serverMetrics: ProxyMetrics;
  let clientLog: CapturedLog;
  let serverLog: CapturedLog;
  let clientProxy: Proxy;
  let serverProxy: Proxy;
  let echoServer: Server;
  let sinkServer: Server;
  let probeServer: ReturnType<typeof createTlsServer>;
  const probeSeen: Array<{ servername: string | false | null | undefined; headers: IncomingHttpHeaders }> = [];
  let probeSendsGoaway = false;
  const portMap = new Map<number, number>();
  const openSockets = new Set<Socket>();

  const dialAddress = (ip: string, port: number) => {
    if (ip === PROBE_IP && port === HBONE) return { host: '127.0.0.1', port: (probeServer.address() as AddressInfo).port };
    return { host: ip, port: portMap.get(port) ?? port };
  };

  const originalDestination = (proxy: () => Proxy) => (socket: Socket) => {
    const ip = normalizeIp(socket.localAddress ?? '');
    if (socket.localPort === proxy().ports().inbound) return { ip, port: HBONE };
    return { ip, port: APP_PORT.get(ip) ?? ECHO_PORT };
  };

  /** A captured connection from `sourceIp` to `destinationIp` (its app port), as a pod would make it. */
  async function connectOutbound(sourceIp: string, destinationIp: string): Promise<Socket> {
    const socket = netConnect({ host: destinationIp, port: clientProxy.ports().outbound, localAddress: sourceIp, allowHalfOpen: true });
    openSockets.add(socket);
    socket.once('close', () => openSockets.delete(socket));
    await connected(socket);
    return socket;
  }

  /** A captured connection the proxy is expected to refuse: what arrived, and whether it ended in a reset. */
  async function refusedOutbound(sourceIp: string, destinationIp: string): Promise<{ data: Buffer; reset: boolean }> {
    const socket = netConnect({ host: destinationIp, port: clientProxy.ports().outbound, localAddress: sourceIp });
    openSockets.add(socket);
    return readToEnd(socket);
  }

  async function rawTls(host: string, port: number, options: { pair?: KeyPairPem; alpn?: string[]; localAddress?: string } = {}): Promise<TLSSocket> {
    const socket = tlsConnect({
      // A TCP socket of our own when the client must dial from a given address.
      ...(options.localAddress ? { socket: netConnect({ host, port, localAddress: options.localAddress }) } : { host, port }),
      ca: ca.certPem,
      cert: options.pair?.certPem,
      key: options.pair?.keyPem,
      ALPNProtocols: options.alpn ?? ['h2'],
      checkServerIdentity: () => undefined,
    });
    socket.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('closed during handshake')));
    });
    return socket;
  }

  /** An HBONE client session with a chosen certificate, straight to the server proxy's HBONE port. */
  async function rawHboneSession(targetIp: string, pair: KeyPairPem, localAddress?: string): Promise<ClientHttp2Session> {
    const tls = await rawTls(targetIp, serverProxy.ports().inbound, { pair, localAddress });
    const session = http2Connect(`https://${targetIp}`, { createConnection: () => tls });
    session.on('error', () => undefined);
    return session;
  }

  function request(session: ClientHttp2Session, headers: OutgoingHttpHeaders): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const stream = session.request(headers, { endStream: false });
      const chunks: Buffer[] = [];
      stream.on('response', (response) => {
        const status = Number(response[':status']);
        if (status === 200) {
          stream.close();
          resolve({ status, body: '' });
          return;
        }
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString() }));
      });
      stream.on('error', reject);
      stream.on('close', () => reject(new Error(`stream closed (code ${stream.rstCode})`)));
    });
  }

  let curlPair: KeyPairPem;

  before(async () => {
    ca = await createRootCa('ambit test root');
    otherCa = await createRootCa('someone else');
    certificates = new FakeCertificates(ca);
    const curlCertificate = await certificates.certificateFor(CURL_IDENTITY);
    curlPair = { certPem: curlCertificate.certChainPem, keyPem: curlCertificate.keyPem };

    echoServer = createNetServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    portMap.set(ECHO_PORT, await listenOn(echoServer));
    sinkServer = createNetServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      let total = 0;
      socket.on('data', (chunk: Buffer) => {
        total += chunk.length;
      });
      socket.on('end', () => socket.end(`${total}`));
    });
    portMap.set(SINK_PORT, await listenOn(sinkServer));
    const closed = createNetServer();
    portMap.set(CLOSED_PORT, await listenOn(closed, '127.0.0.1'));
    await new Promise((resolve) => closed.close(resolve));

    // A bare HBONE server (echo's identity) that records the SNI and the CONNECT headers it gets.
    const echoCertificate = await certificates.certificateFor(ECHO_IDENTITY);
    probeServer = createTlsServer({ cert: echoCertificate.certChainPem, key: echoCertificate.keyPem, ca: ca.certPem, requestCert: true, ALPNProtocols: ['h2'] });
    probeServer.on('secureConnection', (socket: TLSSocket) => {
      const servername = socket.servername;
      const session = performServerHandshake(socket);
      session.on('error', () => undefined);
      session.on('stream', (stream, headers) => {
        stream.on('error', () => undefined);
        probeSeen.push({ servername, headers });
        stream.respond({ ':status': 200 });
        stream.pipe(stream);
        if (probeSendsGoaway) session.goaway();
      });
    });
    await listenOn(probeServer as unknown as Server, '127.0.0.1');

    clientState = new FakeState('node-a');
    serverState = new FakeState('node-b');
    clientMetrics = createProxyMetrics();
    serverMetrics = createProxyMetrics();
    clientLog = captureLog('client-ztunnel');
    serverLog = captureLog('server-ztunnel');
    const listen = { outbound: 0, inbound: 0, inboundPlaintext: 0, host: '0.0.0.0' };
    serverProxy = new Proxy({
      state: serverState,
      certificates,
      log: serverLog.log,
      metrics: serverMetrics,
      clusterId: CLUSTER,
      listen,
      originalDestination: originalDestination(() => serverProxy),
      dialAddress,
    });
    await serverProxy.start();
    portMap.set(HBONE, serverProxy.ports().inbound);
    clientProxy = new Proxy({
      state: clientState,
      certificates,
      log: clientLog.log,
      metrics: clientMetrics,
      clusterId: CLUSTER,
      listen,
      originalDestination: originalDestination(() => clientProxy),
      hbonePort: HBONE,
      dialAddress,
    });
    await clientProxy.start();
  });

  after(async () => {
    for (const socket of openSockets) socket.destroy();
    await clientProxy?.stop({ drainTimeoutMs: 0 });
    await serverProxy?.stop({ drainTimeoutMs: 0 });
    clientMetrics?.close();
    serverMetrics?.close();
    echoServer?.close();
    sinkServer?.close();
    probeServer?.close();
  });

  test('echo through outbound → HBONE → inbound, with both identities and Istio metrics', async () => {
    const before = serverState.authorizations.length;
    const socket = await connectOutbound(CURL_IP, ECHO_IP);
    assert.equal(await roundTrip(socket, 'hello through the mesh'), 'hello through the mesh');
    socket.end();
    const ended = await readToEnd(socket);
    assert.equal(ended.reset, false);

    const facts = serverState.authorizations.slice(before);
    assert.equal(facts.length, 1);
    assert.equal(facts[0]?.sourceIdentity, CURL_IDENTITY, 'the server authorizes on the client certificate identity');
    assert.equal(facts[0]?.sourceIp, CURL_IP, 'the source address travels in the forwarded header');
    assert.equal(facts[0]?.destinationIp, ECHO_IP);
    assert.equal(facts[0]?.destinationPort, ECHO_PORT);

    const serverLabels = { reporter: 'destination', source_principal: CURL_IDENTITY, destination_principal: ECHO_IDENTITY, destination_workload: 'echo', source_workload: 'curl', connection_security_policy: 'mutual_tls', source_cluster: CLUSTER };
    await waitFor('the server to count the closed connection', async () => (await metricValue(serverMetrics, 'istio_tcp_connections_closed_total', serverLabels)) === 1);
    assert.equal(await metricValue(serverMetrics, 'istio_tcp_connections_opened_total', serverLabels), 1);
    assert.equal(await metricValue(serverMetrics, 'istio_tcp_received_bytes_total', serverLabels), 'hello through the mesh'.length);
    assert.equal(await metricValue(serverMetrics, 'istio_tcp_sent_bytes_total', serverLabels), 'hello through the mesh'.length);

    const clientLabels = { reporter: 'source', source_principal: CURL_IDENTITY, destination_principal: ECHO_IDENTITY, destination_workload: 'echo', connection_security_policy: 'mutual_tls' };
    await waitFor('the client to count the closed connection', async () => (await metricValue(clientMetrics, 'istio_tcp_connections_closed_total', clientLabels)) === 1);
    assert.equal(await metricValue(clientMetrics, 'istio_tcp_received_bytes_total', clientLabels), 'hello through the mesh'.length);
    const exposition = await serverMetrics.registry.metrics();
    assert.match(exposition, /istio_tcp_connections_opened_total\{reporter="destination",[^}]*source_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/curl"/);
  });

  test('the client sends no SNI and the HBONE headers (baggage, forwarded, traceparent)', async () => {
    const socket = await connectOutbound(CURL_IP, PROBE_IP);
    assert.equal(await roundTrip(socket, 'probe'), 'probe');
    socket.destroy();
    const seen = probeSeen.at(-1);
    assert.ok(seen, 'the probe server got a CONNECT');
    assert.equal(seen.servername, false, 'no SNI in the ClientHello');
    assert.equal(seen.headers[':method'], 'CONNECT');
    assert.equal(seen.headers[':authority'], `${PROBE_IP}:${ECHO_PORT}`);
    assert.equal(seen.headers.forwarded, `for="${CURL_IP}"`);
    assert.match(String(seen.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    const baggage = String(seen.headers.baggage);
    for (const member of [`k8s.cluster.name=${CLUSTER}`, 'k8s.namespace.name=default', 'k8s.deployment.name=curl', 'service.name=curl', 'service.version=v1']) {
      assert.ok(baggage.split(',').includes(member), `baggage ${baggage} has ${member}`);
    }
  });

  test('half-close travels both ways: the upstream answers after the client finished sending', async () => {
    const socket = await connectOutbound(CURL_IP, SINK_IP);
    socket.end(Buffer.alloc(100_000, 7));
    const { data, reset } = await readToEnd(socket);
    assert.equal(reset, false);
    assert.equal(data.toString(), '100000');
  });

  test('a non-CONNECT request is answered 400', async () => {
    const session = await rawHboneSession(ECHO_IP, curlPair);
    try {
      const response = await request(session, { ':method': 'GET', ':path': '/' });
      assert.equal(response.status, 400);
      assert.match(response.body, /only CONNECT/);
      assert.equal(await metricValue(serverMetrics, 'ambit_hbone_rejected_streams_total', { code: '400', reason: 'method_not_connect' }), 1);
    } finally {
      session.destroy();
    }
  });

  test('a CONNECT to an address other than the one dialled, or a malformed authority, is refused with 400', async () => {
    const session = await rawHboneSession(ECHO_IP, curlPair);
    try {
      const elsewhere = await request(session, { ':method': 'CONNECT', ':authority': `${ECHO2_IP}:${ECHO_PORT}` });
      assert.equal(elsewhere.status, 400);
      assert.match(elsewhere.body, /not the address this connection was sent to/);
      assert.ok(!elsewhere.body.includes(ECHO_IP), `a wrong guess is not told the real address (issue 11, finding 7): ${elsewhere.body}`);
      const malformed = await request(session, { ':method': 'CONNECT', ':authority': 'echo.default:http' });
      assert.equal(malformed.status, 400);
      assert.match(malformed.body, /neither ip:port nor hostname:port/);
      const unbacked = await request(session, { ':method': 'CONNECT', ':authority': `echo.default.svc.cluster.local:${ECHO_PORT}` });
      assert.equal(unbacked.status, 400, 'a hostname authority for a service this workload does not back');
      assert.match(unbacked.body, /echo\.default\.svc\.cluster\.local:8080 is not a service of this destination/);
      assert.doesNotMatch(unbacked.body, /127\.0\.|echo2?\b(?!\.default)/, 'no internal address or workload name in the answer');
      const allowed = await request(session, { ':method': 'CONNECT', ':authority': `${ECHO_IP}:${ECHO_PORT}` });
      assert.equal(allowed.status, 200, 'the same session still serves a valid CONNECT');
    } finally {
      session.destroy();
    }
    assert.ok(serverLog.lines.some((line) => line.msg === 'HBONE CONNECT rejected' && String(line.reason).includes('not the address')));
  });

  test('a pod that dials from its own address cannot borrow another address with forwarded (issue 11, finding 1)', async () => {
    // curl holds its own certificate and dials the destination directly from its pod address.
    const session = await rawHboneSession(ECHO_IP, curlPair, CURL_IP);
    try {
      const before = serverState.authorizations.length;
      const forged = await request(session, { ':method': 'CONNECT', ':authority': `${ECHO_IP}:${ECHO_PORT}`, forwarded: `for="${ECHO2_IP}"` });
      assert.equal(forged.status, 200);
      assert.deepEqual(
        serverState.authorizations.slice(before).map((facts) => facts.sourceIp),
        [CURL_IP],
        'authorization sees the TCP peer, not the claimed address',
      );
    } finally {
      session.destroy();
    }
  });

  test('denied CONNECTs with random baggage and networks add no metric series (issue 11, finding 3)', async () => {
    const series = async () => (await serverMetrics.registry.metrics()).split('\n').filter((line) => line !== '' && !line.startsWith('#')).length;
    const random = () => randomBytes(8).toString('hex');
    const session = await rawHboneSession(FLOODED_IP, curlPair);
    try {
      const connectDenied = async (claimNetwork: boolean) => {
        const headers = {
          ':method': 'CONNECT',
          ':authority': `${FLOODED_IP}:${ECHO_PORT}`,
          baggage: `k8s.cluster.name=${random()},k8s.namespace.name=${random()},k8s.deployment.name=${random()},service.name=${random()},service.version=${random()}`,
          ...(claimNetwork ? { 'x-forwarded-network': random() } : {}),
        };
        const { status } = await request(session, headers);
        // Claiming another network makes an address target a probe through a gateway (400); else the policy denies (401).
        assert.equal(status, claimNetwork ? 400 : 401);
      };
      await connectDenied(false);
      await connectDenied(true);
      const first = await series();
      for (let i = 0; i < 300; i++) await connectDenied(i % 2 === 0);
      assert.equal(await series(), first, 'the same series, only their counts grew');
    } finally {
      session.destroy();
    }
  });

  test("a CONNECT to one of ztunnel's own ports on a pod address is refused with 400 (issue 11, finding 7)", async () => {
    const session = await rawHboneSession(ECHO_IP, curlPair);
    try {
      for (const port of [15000, 15001, 15006, 15008, 15020, 15021, 15053]) {
        const answer = await request(session, { ':method': 'CONNECT', ':authority': `${ECHO_IP}:${port}` });
        assert.equal(answer.status, 400, `port ${port}`);
        assert.match(answer.body, /port of the node proxy/);
      }
    } finally {
      session.destroy();
    }
  });

  test('a client certificate from another CA is refused and counted as untrusted', async () => {
    const stranger = await issueLeaf(otherCa, { commonName: 'curl', uris: [CURL_IDENTITY], client: true });
    const before = await metricValue(serverMetrics, 'ambit_hbone_handshake_failures_total', { direction: 'inbound', reason: 'untrusted_peer_certificate' });
    const session = await rawHboneSession(ECHO_IP, stranger).catch(() => undefined);
    if (session) {
      await assert.rejects(request(session, { ':method': 'CONNECT', ':authority': `${ECHO_IP}:${ECHO_PORT}` }));
      session.destroy();
    }
    await waitFor('the refusal to be counted', async () => (await metricValue(serverMetrics, 'ambit_hbone_handshake_failures_total', { direction: 'inbound', reason: 'untrusted_peer_certificate' })) === before + 1);
    assert.ok(serverLog.lines.some((line) => line.msg === 'untrusted peer certificate' && /chain/.test(String(line.reason))));
  });

  test('a client certificate without a SPIFFE identity is refused', async () => {
    const anonymous = await issueLeaf(ca, { commonName: 'nobody', dnsNames: ['nobody.example'], client: true });
    const session = await rawHboneSession(ECHO_IP, anonymous).catch(() => undefined);
    if (session) {
      await assert.rejects(request(session, { ':method': 'CONNECT', ':authority': `${ECHO_IP}:${ECHO_PORT}` }));
      session.destroy();
    }
    await waitFor('the refusal to be logged', () => serverLog.lines.some((line) => line.msg === 'untrusted peer certificate' && /SPIFFE/.test(String(line.reason))));
  });

  test('the client refuses a server that presents an unexpected identity', async () => {
    const { data } = await refusedOutbound(CURL_IP, IMPOSTOR_IP);
    assert.equal(data.length, 0);
    assert.equal(await metricValue(clientMetrics, 'ambit_hbone_handshake_failures_total', { direction: 'outbound', reason: 'unexpected_peer_identity' }), 1);
    assert.ok(clientLog.lines.some((line) => line.msg === 'HBONE server presented an unexpected identity'));
  });

  test('50 sequential connections share one pooled HBONE session', async () => {
    const outboundBefore = await metricValue(clientMetrics, 'ambit_hbone_sessions_opened_total', { direction: 'outbound' });
    const inboundBefore = await metricValue(serverMetrics, 'ambit_hbone_sessions_opened_total', { direction: 'inbound' });
    for (let i = 0; i < 50; i++) {
      const socket = await connectOutbound(CURL_IP, POOL_IP);
      assert.equal(await roundTrip(socket, `ping ${i}`), `ping ${i}`);
      socket.end();
      await readToEnd(socket);
    }
    assert.equal((await metricValue(clientMetrics, 'ambit_hbone_sessions_opened_total', { direction: 'outbound' })) - outboundBefore, 1);
    assert.equal((await metricValue(serverMetrics, 'ambit_hbone_sessions_opened_total', { direction: 'inbound' })) - inboundBefore, 1);
  });

  test('more than 100 concurrent connections to one destination open a second session', async () => {
    const opened = () => metricValue(clientMetrics, 'ambit_hbone_sessions_opened_total', { direction: 'outbound' });
    const before = await opened();
    const sockets = await Promise.all(Array.from({ length: 120 }, () => connectOutbound(CURL_IP, BUSY_IP)));
    const replies = await Promise.all(sockets.map((socket, i) => roundTrip(socket, `concurrent ${i}`)));
    replies.forEach((reply, i) => assert.equal(reply, `concurrent ${i}`));
    assert.equal((await opened()) - before, 2);
    for (const socket of sockets) socket.end();
    await Promise.all(sockets.map((socket) => readToEnd(socket)));
  });

  test('an idle pooled session is released', async () => {
    const idleMetrics = createProxyMetrics();
    const idleProxy: Proxy = new Proxy({
      state: clientState,
      certificates,
      log: captureLog('idle-client').log,
      metrics: idleMetrics,
      clusterId: CLUSTER,
      listen: { outbound: 0, inbound: 0, inboundPlaintext: 0 },
      originalDestination: originalDestination(() => idleProxy),
      hbonePort: HBONE,
      dialAddress,
      pool: { idleTimeoutMs: 100 },
    });
    await idleProxy.start();
    try {
      const socket = netConnect({ host: IDLE_IP, port: idleProxy.ports().outbound, localAddress: CURL_IP, allowHalfOpen: true });
      openSockets.add(socket);
      await connected(socket);
      assert.equal(await roundTrip(socket, 'idle soon'), 'idle soon');
      assert.equal(await metricValue(idleMetrics, 'ambit_hbone_pooled_sessions'), 1);
      socket.end();
      await readToEnd(socket);
      await waitFor('the idle session to be released', async () => (await metricValue(idleMetrics, 'ambit_hbone_pooled_sessions')) === 0);
    } finally {
      await idleProxy.stop({ drainTimeoutMs: 0 });
      idleMetrics.close();
    }
  });

  test('a session that received GOAWAY takes no new streams', async () => {
    const opened = () => metricValue(clientMetrics, 'ambit_hbone_sessions_opened_total', { direction: 'outbound' });
    probeSendsGoaway = true;
    try {
      const first = await connectOutbound(CURL_IP, PROBE_IP);
      // The probe answers the CONNECT, then sends GOAWAY before echoing, so the echo proves it arrived.
      assert.equal(await roundTrip(first, 'first'), 'first');
      const afterFirst = await opened();
      const second = await connectOutbound(CURL_IP, PROBE_IP);
      assert.equal(await roundTrip(second, 'second'), 'second');
      assert.equal((await opened()) - afterFirst, 1);
      first.destroy();
      second.destroy();
    } finally {
      probeSendsGoaway = false;
    }
  });

  test('a long-lived connection survives a certificate renewal; new connections use the new certificate', async () => {
    const opened = () => metricValue(clientMetrics, 'ambit_hbone_sessions_opened_total', { direction: 'outbound' });
    const acceptedSerials = () =>
      new Set(serverLog.lines.filter((line) => line.msg === 'inbound HBONE connection accepted' && line.destination === RENEW_IP && line.peerIdentity === CURL_IDENTITY).map((line) => line.serial));
    const openedBefore = await opened();
    const longLived = await connectOutbound(CURL_IP, RENEW_IP);
    assert.equal(await roundTrip(longLived, 'before renewal'), 'before renewal');

    await certificates.renew(CURL_IDENTITY);
    const fresh = await connectOutbound(CURL_IP, RENEW_IP);
    assert.equal(await roundTrip(fresh, 'after renewal'), 'after renewal');
    assert.equal((await opened()) - openedBefore, 2, 'the renewed certificate gets a session of its own');
    assert.equal(acceptedSerials().size, 2, 'the server saw two different client certificates');

    assert.equal(await roundTrip(longLived, 'still flowing'), 'still flowing');
    assert.ok(
      (await metricValue(clientMetrics, 'istio_tcp_received_bytes_total', { reporter: 'source', destination_workload: 'renewed' })) >= 'before renewal'.length,
      'bytes of an open connection reach the counters before it closes',
    );
    const pooledWithBoth = await metricValue(clientMetrics, 'ambit_hbone_pooled_sessions');
    longLived.end();
    await readToEnd(longLived);
    await waitFor('the stale session to be retired', async () => (await metricValue(clientMetrics, 'ambit_hbone_pooled_sessions')) === pooledWithBoth - 1);
    fresh.end();
    await readToEnd(fresh);
  });

  test('passthrough: a destination outside the mesh is reached directly', async () => {
    const sessionsBefore = await metricValue(serverMetrics, 'ambit_hbone_sessions_opened_total');
    const authorizationsBefore = serverState.authorizations.length;
    const socket = await connectOutbound(CURL_IP, EXTERNAL_IP);
    assert.equal(await roundTrip(socket, 'outside'), 'outside');
    socket.end();
    await readToEnd(socket);
    assert.equal(serverState.authorizations.length, authorizationsBefore, 'no HBONE hop');
    assert.equal(await metricValue(serverMetrics, 'ambit_hbone_sessions_opened_total'), sessionsBefore);
    await waitFor('the passthrough connection to be counted', async () =>
      (await metricValue(clientMetrics, 'istio_tcp_connections_closed_total', { reporter: 'source', destination_workload: 'unknown', connection_security_policy: 'unknown' })) === 1);
  });

  test('plaintext: a workload that is not enrolled is reached in plain TCP', async () => {
    const authorizationsBefore = serverState.authorizations.length;
    const socket = await connectOutbound(CURL_IP, PLAIN_IP);
    assert.equal(await roundTrip(socket, 'plain'), 'plain');
    socket.end();
    await readToEnd(socket);
    assert.equal(serverState.authorizations.length, authorizationsBefore);
    await waitFor('the plaintext connection to be counted', async () =>
      (await metricValue(clientMetrics, 'istio_tcp_connections_closed_total', { reporter: 'source', destination_workload: 'plain', connection_security_policy: 'unknown' })) === 1);
  });

  test('a connection denied by policy gets 401 and the client connection is reset', async () => {
    const rejectedBefore = await metricValue(serverMetrics, 'ambit_hbone_rejected_streams_total', { direction: 'inbound', code: '401' });
    const { data, reset } = await refusedOutbound(CURL_IP, LOCKED_IP);
    assert.equal(data.length, 0);
    assert.equal(reset, true);
    assert.equal(await metricValue(serverMetrics, 'ambit_hbone_rejected_streams_total', { direction: 'inbound', code: '401' }), rejectedBefore + 1);
    assert.equal(await metricValue(clientMetrics, 'ambit_hbone_rejected_streams_total', { direction: 'outbound', code: '401' }), 1);
    assert.equal(await metricValue(serverMetrics, 'istio_tcp_connections_opened_total', { reporter: 'destination', destination_workload: 'locked', response_flags: 'DENY' }), 1);
  });

  test('an upstream that refuses the connection gets 503', async () => {
    const { data, reset } = await refusedOutbound(CURL_IP, DOWN_IP);
    assert.equal(data.length, 0);
    assert.equal(reset, true);
    assert.equal(await metricValue(serverMetrics, 'ambit_hbone_rejected_streams_total', { direction: 'inbound', code: '503' }), 1);
    assert.equal(await metricValue(clientMetrics, 'ambit_hbone_rejected_streams_total', { direction: 'outbound', code: '503' }), 1);
  });

  test('a service without endpoints and an unknown source are refused', async () => {
    const ghost = await refusedOutbound(CURL_IP, GHOST_VIP);
    assert.equal(ghost.data.length, 0);
    assert.equal(await metricValue(clientMetrics, 'ambit_proxy_refused_connections_total', { listener: 'outbound', reason: 'service_unavailable' }), 1);
    const stranger = await refusedOutbound(STRANGER_IP, ECHO_IP);
    assert.equal(stranger.data.length, 0);
    assert.equal(await metricValue(clientMetrics, 'ambit_proxy_refused_connections_total', { listener: 'outbound', reason: 'unknown_source_workload' }), 1);
  });

  test('inbound plaintext: authorized without identity, then forwarded', async () => {
    const before = serverState.authorizations.length;
    const socket = netConnect({ host: ECHO_IP, port: serverProxy.ports().inboundPlaintext, localAddress: OUTSIDER_IP, allowHalfOpen: true });
    openSockets.add(socket);
    await connected(socket);
    assert.equal(await roundTrip(socket, 'from outside the mesh'), 'from outside the mesh');
    socket.end();
    await readToEnd(socket);
    const facts = serverState.authorizations.slice(before);
    assert.equal(facts.length, 1);
    assert.equal(facts[0]?.sourceIdentity, undefined);
    assert.equal(facts[0]?.sourceIp, OUTSIDER_IP);
    await waitFor('the plaintext inbound connection to be counted', async () =>
      (await metricValue(serverMetrics, 'istio_tcp_connections_closed_total', { reporter: 'destination', destination_workload: 'echo', connection_security_policy: 'unknown' })) === 1);

    const denied = netConnect({ host: LOCKED_IP, port: serverProxy.ports().inboundPlaintext, localAddress: OUTSIDER_IP });
    openSockets.add(denied);
    const outcome = await readToEnd(denied);
    assert.equal(outcome.data.length, 0);
    assert.equal(await metricValue(serverMetrics, 'ambit_proxy_refused_connections_total', { listener: 'inbound_plaintext', reason: 'policy_denied' }), 1);
  });

  test('garbage and broken clients on every listener leave the proxies serving', async () => {
    const garbage = randomBytes(4096);
    const sendGarbage = async (host: string, port: number, localAddress?: string) => {
      const socket = netConnect({ host, port, localAddress });
      socket.on('error', () => undefined);
      await connected(socket);
      socket.end(garbage);
      await readToEnd(socket);
    };
    await sendGarbage(ECHO_IP, serverProxy.ports().inbound);
    await sendGarbage(ECHO_IP, serverProxy.ports().inboundPlaintext, OUTSIDER_IP);
    await sendGarbage(EXTERNAL_IP, serverProxy.ports().inboundPlaintext);
    await sendGarbage(ECHO_IP, clientProxy.ports().outbound, STRANGER_IP);
    await sendGarbage(ECHO_IP, clientProxy.ports().outbound, CURL_IP);
    await sendGarbage(ECHO_IP, serverProxy.ports().outbound);
    assert.ok(serverLog.lines.some((line) => line.msg === 'inbound HBONE TLS handshake failed'));

    // TLS without a client certificate.
    const noCertificate = await rawTls(ECHO_IP, serverProxy.ports().inbound).catch(() => undefined);
    if (noCertificate) await readToEnd(noCertificate);
    await waitFor('the missing certificate to be counted', async () =>
      (await metricValue(serverMetrics, 'ambit_hbone_handshake_failures_total', { direction: 'inbound', reason: 'missing_peer_certificate' })) >= 1);

    // HTTP/1.1 over TLS with a valid certificate: offering only http/1.1 in ALPN, then offering no ALPN at all.
    for (const alpn of [['http/1.1'], []]) {
      const before = await metricValue(serverMetrics, 'ambit_hbone_handshake_failures_total', { reason: 'not_h2' });
      const http1 = await rawTls(ECHO_IP, serverProxy.ports().inbound, { pair: curlPair, alpn }).catch(() => undefined);
      if (http1) {
        http1.write(`CONNECT ${ECHO_IP}:${ECHO_PORT} HTTP/1.1\r\nHost: ${ECHO_IP}\r\n\r\n`);
        await readToEnd(http1);
      }
      await waitFor(`the HTTP/1 client (ALPN ${alpn.join(',') || 'none'}) to be counted`, async () =>
        (await metricValue(serverMetrics, 'ambit_hbone_handshake_failures_total', { reason: 'not_h2' })) === before + 1);
    }

    // HTTP/2 preface then garbage over a valid mTLS connection.
    const broken = await rawTls(ECHO_IP, serverProxy.ports().inbound, { pair: curlPair });
    broken.end(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), garbage]));
    await readToEnd(broken);

    // A client that resets in the middle of a transfer.
    const resetter = await connectOutbound(CURL_IP, ECHO_IP);
    assert.equal(await roundTrip(resetter, 'before reset'), 'before reset');
    resetter.write(Buffer.alloc(1 << 20));
    resetter.resetAndDestroy();

    // A raw HBONE client that resets its stream mid-transfer.
    const session = await rawHboneSession(ECHO_IP, curlPair);
    const stream = session.request({ ':method': 'CONNECT', ':authority': `${ECHO_IP}:${ECHO_PORT}` }, { endStream: false });
    stream.on('error', () => undefined);
    await new Promise((resolve) => stream.once('response', resolve));
    stream.write(Buffer.alloc(1 << 20));
    stream.close(8);
    session.destroy();

    const socket = await connectOutbound(CURL_IP, ECHO_IP);
    assert.equal(await roundTrip(socket, 'still serving'), 'still serving');
    socket.end();
    await readToEnd(socket);
    const plain = netConnect({ host: ECHO_IP, port: serverProxy.ports().inboundPlaintext, localAddress: OUTSIDER_IP });
    openSockets.add(plain);
    await connected(plain);
    assert.equal(await roundTrip(plain, 'plaintext still serving'), 'plaintext still serving');
    plain.destroy();
  });

  test('a port already in use fails start() with a message naming it', async () => {
    const clash = new Proxy({
      state: clientState,
      certificates,
      log: captureLog('clash').log,
      metrics: createProxyMetrics(),
      clusterId: CLUSTER,
      listen: { outbound: 0, inbound: serverProxy.ports().inbound, inboundPlaintext: 0 },
    });
    await assert.rejects(clash.start(), new RegExp(`cannot listen on 0\\.0\\.0\\.0:${serverProxy.ports().inbound} \\(inbound HBONE\\)`));
    assert.equal(clash.ports().outbound, 0, 'the listener opened before the failure is closed again');
  });

  test('throughput of 256 MiB: outbound → HBONE → inbound vs a direct loopback socket (printed, not asserted)', async () => {
    const total = 256 * 1024 * 1024;
    const chunk = Buffer.alloc(256 * 1024, 1);
    const transfer = async (socket: Socket): Promise<number> => {
      const started = process.hrtime.bigint();
      const done = readToEnd(socket);
      for (let sent = 0; sent < total; sent += chunk.length) {
        if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
      }
      socket.end();
      const { data } = await done;
      assert.equal(data.toString(), String(total));
      return Number(process.hrtime.bigint() - started) / 1e9;
    };
    const direct = netConnect({ host: SINK_IP, port: portMap.get(SINK_PORT) ?? 0, allowHalfOpen: true });
    openSockets.add(direct);
    await connected(direct);
    const directSeconds = await transfer(direct);
    const tunnelled = await connectOutbound(CURL_IP, SINK_IP);
    const tunnelSeconds = await transfer(tunnelled);
    const rate = (seconds: number) => `${(total / 1024 / 1024 / seconds).toFixed(0)} MiB/s`;
    console.log(`# throughput 256 MiB: direct loopback ${rate(directSeconds)} (${directSeconds.toFixed(2)} s); outbound→HBONE→inbound ${rate(tunnelSeconds)} (${tunnelSeconds.toFixed(2)} s)`);
  });
});
