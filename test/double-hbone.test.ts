import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performServerHandshake, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';

import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { pino } from 'pino';

import { Action, AuthorizationSchema, Scope } from '../src/gen/istio/security/authorization_pb.js';
import { ServiceSchema, TunnelProtocol, WorkloadSchema, WorkloadType, type Service, type Workload } from '../src/gen/istio/workload/workload_pb.js';
import { ipToBytes, normalizeIp } from '../src/api/ip.js';
import { buildGatewayWorkload, buildNetworkGatewayService, buildSyntheticWorkload } from '../src/controlplane/multicluster/mesh-resources.js';
import { createRootCa, type CertificateAuthority } from '../src/util/pki.js';
import type { CertificateSource, WorkloadCertificate } from '../src/ztunnel/identity/types.js';
import { createProxyMetrics, type ProxyMetrics } from '../src/ztunnel/metrics.js';
import { spiffeIdentities } from '../src/hbone/peer-identity.js';
import { Proxy } from '../src/ztunnel/proxy/proxy.js';
import { ZtunnelState } from '../src/ztunnel/state/store.js';
import { captureLog, FakeCertificates, metricValue, readExactly, readToEnd, unusedPort, waitFor, within, type CapturedLog } from './helpers/proxy-fakes.js';

// ---------------------------------------------------------------------------------------------
// Two networks on loopback. network1: a client ztunnel (node-a). network2: an east-west gateway
// and two destination ztunnels (node-b trusts the mesh CA; node-c got its certificates from
// another CA). network3: a gateway whose own certificate comes from that other CA.
// Several gateways per network: a second working gateway of network2 (its own identity) and two
// gateway addresses where nothing listens; client ztunnels of their own then see network2 as the
// control plane serves it with several gateways (the synthetic workload names them by hostname).
// Addresses are loopback IPs, so the address a connection was sent to is the accepted socket's
// local address, as after nftables REDIRECT.
// ---------------------------------------------------------------------------------------------

const TRUST_DOMAIN = 'cluster.local';
const spiffe = (namespace: string, sa: string) => `spiffe://${TRUST_DOMAIN}/ns/${namespace}/sa/${sa}`;

const NETWORK1 = 'network1';
const NETWORK2 = 'network2';
const NETWORK3 = 'network3';
const CLUSTER1 = 'cluster1';
const CLUSTER2 = 'cluster2';
const HBONE = 15008;
const SERVICE_PORT = 5000;
const TARGET_PORT = 8080;

const CURL_IP = '127.1.10.1';
const POOLED_IP = '127.1.10.2'; // its own identity, so the pooling counts start from nothing
const BENCH_IP = '127.1.10.3';
const INTRUDER_IP = '127.1.10.4'; // an identity the destination's policy does not allow
const HELLO_VIP = '127.1.50.1';
const OTHER_VIP = '127.1.50.2';
const ROGUE_VIP = '127.1.50.3';
const LOST_VIP = '127.1.50.4';
const HELLO_POD_IP = '127.1.20.1'; // node-b, network2
const ROGUE_POD_IP = '127.1.20.2'; // node-c, network2, certificate from another CA
const GATEWAY2_IP = '127.1.70.1';
const GATEWAY3_IP = '127.1.70.2';
// Several gateways per network: network2's synthetic workloads then name `network2.east-west.ambit.internal`.
const GATEWAY2B_IP = '127.1.70.3'; // a second working gateway of network2, with its own identity
const DEAD_GATEWAY_IPS = ['127.1.70.4', '127.1.70.5'] as const; // gateway addresses where nothing listens
const SYSTEM_NAMESPACE = 'istio-system';

const host = (name: string) => `${name}.default.svc.cluster.local`;
const HELLO = host('helloworld');
const OTHER = host('other');
const ROGUE = host('rogue');
const LOST = host('lost');

type WorkloadInit = Exclude<MessageInitShape<typeof WorkloadSchema>, Workload>;

function pod(cluster: string, network: string, node: string, name: string, ip: string, init: WorkloadInit = {}): Workload {
  return create(WorkloadSchema, {
    uid: `${cluster}//Pod/default/${name}`,
    name,
    namespace: 'default',
    addresses: [ipToBytes(ip)],
    network,
    node,
    clusterId: cluster,
    serviceAccount: name,
    trustDomain: TRUST_DOMAIN,
    canonicalName: name,
    canonicalRevision: 'v1',
    workloadName: name,
    workloadType: WorkloadType.DEPLOYMENT,
    tunnelProtocol: TunnelProtocol.HBONE,
    ...init,
  });
}

function backs(hostname: string): WorkloadInit['services'] {
  return { [`default/${hostname}`]: { ports: [{ servicePort: SERVICE_PORT, targetPort: TARGET_PORT }] } };
}

function service(hostname: string, vip: string, network: string): Service {
  return create(ServiceSchema, {
    name: hostname.split('.')[0],
    namespace: 'default',
    hostname,
    addresses: [{ network, address: ipToBytes(vip) }],
    ports: [{ servicePort: SERVICE_PORT, targetPort: TARGET_PORT }],
  });
}

/** The control plane's view of an east-west gateway (its identity is looked up by its address). */
function eastWestGateway(network: string, ip: string): Workload {
  return create(WorkloadSchema, {
    uid: `${network}-cluster/Gateway/istio-system/eastwest`,
    name: 'eastwest',
    namespace: 'istio-system',
    serviceAccount: 'eastwest',
    addresses: [ipToBytes(ip)],
    network,
    tunnelProtocol: TunnelProtocol.HBONE,
    workloadType: WorkloadType.POD,
  });
}

/** One synthetic workload per (remote network, service), pointing at that network's gateway. */
function synthetic(network: string, hostname: string, gatewayIp: string, serviceAccount: string): Workload {
  return create(WorkloadSchema, {
    uid: `${network}/SyntheticGateway/default/${hostname}`,
    name: hostname.split('.')[0],
    namespace: 'default',
    network,
    serviceAccount,
    trustDomain: TRUST_DOMAIN,
    tunnelProtocol: TunnelProtocol.HBONE,
    networkGateway: { hboneMtlsPort: HBONE, destination: { case: 'address', value: { network, address: ipToBytes(gatewayIp) } } },
    capacity: 1,
    services: backs(hostname),
  });
}

function newState(network: string, node: string, cluster: string, random?: () => number): ZtunnelState {
  return new ZtunnelState({ network, nodeName: node, clusterId: cluster, systemNamespace: SYSTEM_NAMESPACE, random, logger: pino({ level: 'silent' }) });
}

function apply(state: ZtunnelState, workloads: Workload[], services: Service[]): void {
  state.applyAddresses(
    [...workloads.map((workload) => ({ name: workload.uid, workload })), ...services.map((svc) => ({ name: `${svc.namespace}/${svc.hostname}`, service: svc }))],
    [],
  );
}

function clientState(): ZtunnelState {
  const state = newState(NETWORK1, 'node-a', CLUSTER1);
  apply(
    state,
    [
      pod(CLUSTER1, NETWORK1, 'node-a', 'curl', CURL_IP),
      pod(CLUSTER1, NETWORK1, 'node-a', 'pooled', POOLED_IP),
      pod(CLUSTER1, NETWORK1, 'node-a', 'bench', BENCH_IP),
      pod(CLUSTER1, NETWORK1, 'node-a', 'intruder', INTRUDER_IP),
      eastWestGateway(NETWORK2, GATEWAY2_IP),
      eastWestGateway(NETWORK3, GATEWAY3_IP),
      synthetic(NETWORK2, HELLO, GATEWAY2_IP, 'helloworld'),
      // The gateway (wrongly) sends `other` to the helloworld pod, which presents helloworld's identity.
      synthetic(NETWORK2, OTHER, GATEWAY2_IP, 'helloworld'),
      synthetic(NETWORK2, ROGUE, GATEWAY2_IP, 'rogue'),
      synthetic(NETWORK3, LOST, GATEWAY3_IP, 'lost'),
    ],
    [service(HELLO, HELLO_VIP, NETWORK1), service(OTHER, OTHER_VIP, NETWORK1), service(ROGUE, ROGUE_VIP, NETWORK1), service(LOST, LOST_VIP, NETWORK1)],
  );
  return state;
}

/**
 * network1 as the control plane serves it once network2 has several east-west gateways: built with
 * the control plane's own builders, so helloworld's synthetic workload names its gateway by hostname
 * and the gateway workloads are the endpoints of `istio-system/network2.east-west.ambit.internal`.
 */
function severalGatewaysClientState(gateways: Array<{ name: string; ip: string }>, random?: () => number): ZtunnelState {
  const state = newState(NETWORK1, 'node-a', CLUSTER1, random);
  const helloPod = pod(CLUSTER2, NETWORK2, 'node-b', 'helloworld', HELLO_POD_IP, { services: backs(HELLO) });
  apply(
    state,
    [
      pod(CLUSTER1, NETWORK1, 'node-a', 'curl', CURL_IP),
      pod(CLUSTER1, NETWORK1, 'node-a', 'pooled', POOLED_IP),
      pod(CLUSTER1, NETWORK1, 'node-a', 'bench', BENCH_IP),
      ...gateways.map(({ name, ip }) =>
        buildGatewayWorkload({ clusterId: CLUSTER2, namespace: SYSTEM_NAMESPACE, name, network: NETWORK2, address: ip, programmed: true }, TRUST_DOMAIN, SYSTEM_NAMESPACE),
      ),
      buildSyntheticWorkload({ network: NETWORK2, serviceKey: `default/${HELLO}`, systemNamespace: SYSTEM_NAMESPACE, endpoints: [helloPod], services: [] }),
    ],
    [service(HELLO, HELLO_VIP, NETWORK1), buildNetworkGatewayService(NETWORK2, SYSTEM_NAMESPACE)],
  );
  return state;
}

/** network2 as its ztunnels see it; helloworld admits only the client identities of network1. */
function destinationState(node: string): ZtunnelState {
  const state = newState(NETWORK2, node, CLUSTER2);
  apply(
    state,
    [
      pod(CLUSTER2, NETWORK2, 'node-b', 'helloworld', HELLO_POD_IP, { services: backs(HELLO), authorizationPolicies: ['default/hello-clients'] }),
      pod(CLUSTER2, NETWORK2, 'node-c', 'rogue', ROGUE_POD_IP, { services: backs(ROGUE) }),
      eastWestGateway(NETWORK2, GATEWAY2_IP),
    ],
    [service(HELLO, '127.2.50.1', NETWORK2), service(OTHER, '127.2.50.2', NETWORK2), service(ROGUE, '127.2.50.3', NETWORK2)],
  );
  const principals = ['curl', 'pooled', 'bench'].map((sa) => ({ matchType: { case: 'exact' as const, value: `${TRUST_DOMAIN}/ns/default/sa/${sa}` } }));
  state.applyAuthorizations(
    [
      {
        name: 'default/hello-clients',
        authorization: create(AuthorizationSchema, {
          name: 'hello-clients',
          namespace: 'default',
          scope: Scope.WORKLOAD_SELECTOR,
          action: Action.ALLOW,
          rules: [{ clauses: [{ matches: [{ principals }] }] }],
        }),
      },
    ],
    [],
  );
  return state;
}

// ---------------------------------------------------------------------------------------------
// A stand-in for `ambit gateway`: terminates the outer tunnel with its own identity, accepts
// CONNECT `<hostname>:<port>`, opens plain TCP to the chosen pod's port 15008 and splices the raw
// bytes, recording them so the test can check it never saw plaintext.
// ---------------------------------------------------------------------------------------------

interface OuterConnect {
  clientIdentities: string[];
  headers: IncomingHttpHeaders;
}

class FakeGateway {
  readonly server: TlsServer;
  sessionsAccepted = 0;
  readonly connects: OuterConnect[] = [];
  private readonly forwarded: Buffer[] = [];
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly streams = new Set<ServerHttp2Stream>();

  constructor(
    certificate: WorkloadCertificate,
    rootsPem: string,
    /** hostname → where the destination ztunnel's HBONE port answers for the pod it picked. */
    private readonly routes: Map<string, { ip: string; port: () => number }>,
  ) {
    this.server = createTlsServer({ cert: certificate.certChainPem, key: certificate.keyPem, ca: rootsPem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] });
    this.server.on('tlsClientError', () => undefined);
    this.server.on('secureConnection', (socket: TLSSocket) => {
      socket.on('error', () => undefined);
      this.sessionsAccepted++;
      const clientIdentities = spiffeIdentities(socket.getPeerCertificate().subjectaltname);
      const session = performServerHandshake(socket);
      this.sessions.add(session);
      session.on('close', () => this.sessions.delete(session));
      session.on('error', () => undefined);
      session.on('stream', (stream, headers) => this.onStream(stream, headers, clientIdentities));
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '0.0.0.0', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  /** Every byte the gateway passed in either direction. */
  bytesSeen(): Buffer {
    return Buffer.concat(this.forwarded);
  }

  /** Resets every outer stream (as a gateway restart would). */
  resetStreams(): void {
    for (const stream of this.streams) stream.close(0x8 /* CANCEL */);
  }

  close(): void {
    for (const session of this.sessions) session.destroy();
    this.server.close();
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, clientIdentities: string[]): void {
    stream.on('error', () => undefined);
    this.connects.push({ clientIdentities, headers });
    const authority = String(headers[':authority'] ?? '');
    const route = this.routes.get(authority.replace(/:\d+$/, ''));
    if (headers[':method'] !== 'CONNECT' || !route) {
      stream.respond({ ':status': 400 });
      stream.end();
      return;
    }
    this.streams.add(stream);
    stream.on('close', () => this.streams.delete(stream));
    const upstream = netConnect({ host: route.ip, port: route.port(), allowHalfOpen: true, noDelay: true });
    upstream.on('error', () => stream.close(0x8));
    upstream.once('connect', () => {
      stream.respond({ ':status': 200 });
      const record = (chunk: Buffer) => this.forwarded.push(Buffer.from(chunk));
      stream.on('data', record);
      upstream.on('data', record);
      stream.pipe(upstream);
      upstream.pipe(stream);
      stream.on('close', () => upstream.destroy());
      upstream.on('close', () => {
        if (!stream.closed) stream.close();
      });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// The test bed
// ---------------------------------------------------------------------------------------------

describe('double HBONE across networks', { timeout: 120_000 }, () => {
  let ca: CertificateAuthority;
  let otherCa: CertificateAuthority;
  let certificates: FakeCertificates;
  let client: { proxy: Proxy; state: ZtunnelState; metrics: ProxyMetrics; log: CapturedLog };
  let hello: { proxy: Proxy; metrics: ProxyMetrics; log: CapturedLog };
  let rogue: { proxy: Proxy; metrics: ProxyMetrics; log: CapturedLog };
  let gateway2: FakeGateway;
  let gateway3: FakeGateway;
  let gateway2b: FakeGateway;
  let echoServer: Server;
  const ports = { gateway2: 0, gateway3: 0, gateway2b: 0, dead: 0, echo: 0 };
  /** Outer dials (TCP connects to port 15008 of a gateway address), by gateway IP. */
  const gatewayDials = new Map<string, number>();
  const dialsTo = (ip: string) => gatewayDials.get(ip) ?? 0;
  const openSockets = new Set<Socket>();
  const proxies: Proxy[] = [];
  const metricsToClose: ProxyMetrics[] = [];

  const dialAddress = (ip: string, port: number) => {
    if (port === HBONE) gatewayDials.set(ip, dialsTo(ip) + 1);
    if (ip === GATEWAY2_IP && port === HBONE) return { host: GATEWAY2_IP, port: ports.gateway2 };
    if (ip === GATEWAY3_IP && port === HBONE) return { host: GATEWAY3_IP, port: ports.gateway3 };
    if (ip === GATEWAY2B_IP && port === HBONE) return { host: GATEWAY2B_IP, port: ports.gateway2b };
    if ((DEAD_GATEWAY_IPS as readonly string[]).includes(ip) && port === HBONE) return { host: ip, port: ports.dead };
    if (port === TARGET_PORT) return { host: ip, port: ports.echo };
    return { host: ip, port };
  };

  /** Captured outbound: the client dialled `<vip>:5000`; captured inbound HBONE: `<pod ip>:15008`. */
  const originalDestination = (proxy: () => Proxy) => (socket: Socket) => {
    const ip = normalizeIp(socket.localAddress ?? '');
    return socket.localPort === proxy().ports().inbound ? { ip, port: HBONE } : { ip, port: SERVICE_PORT };
  };

  async function startProxy(state: ZtunnelState, source: CertificateSource, component: string, options: { innerPooling?: boolean } = {}) {
    const metrics = createProxyMetrics();
    const log = captureLog(component);
    const proxy: Proxy = new Proxy({
      state,
      certificates: source,
      log: log.log,
      metrics,
      clusterId: state.clusterId,
      listen: { outbound: 0, inbound: 0, inboundPlaintext: 0, host: '0.0.0.0' },
      originalDestination: originalDestination(() => proxy),
      dialAddress,
      innerPooling: options.innerPooling,
    });
    await proxy.start();
    proxies.push(proxy);
    metricsToClose.push(metrics);
    return { proxy, metrics, log };
  }

  async function connectVia(proxy: Proxy, sourceIp: string, vip: string): Promise<Socket> {
    const socket = netConnect({ host: vip, port: proxy.ports().outbound, localAddress: sourceIp, allowHalfOpen: true });
    openSockets.add(socket);
    socket.once('close', () => openSockets.delete(socket));
    socket.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return socket;
  }

  /** One complete connection: send, read the echo, close both ways. */
  async function echoOnce(proxy: Proxy, sourceIp: string, vip: string, message: string): Promise<string> {
    const socket = await connectVia(proxy, sourceIp, vip);
    const reply = readExactly(socket, Buffer.byteLength(message));
    socket.write(message);
    const text = (await reply).toString();
    const ended = readToEnd(socket);
    socket.end();
    await ended;
    return text;
  }

  /** A connection the client ztunnel is expected to refuse. */
  async function refused(sourceIp: string, vip: string, proxy: Proxy = client.proxy): Promise<{ data: Buffer; reset: boolean }> {
    const socket = await connectVia(proxy, sourceIp, vip);
    const ended = readToEnd(socket);
    socket.write('anyone there?');
    return ended;
  }

  before(async () => {
    ca = await createRootCa('ambit test root');
    otherCa = await createRootCa('another mesh');
    certificates = new FakeCertificates(ca);
    const strangers = new FakeCertificates(otherCa);

    echoServer = createNetServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    await new Promise<void>((resolve) => echoServer.listen(0, '0.0.0.0', resolve));
    ports.echo = (echoServer.address() as AddressInfo).port;

    const state = clientState();
    client = { ...(await startProxy(state, certificates, 'client-ztunnel')), state };
    hello = await startProxy(destinationState('node-b'), certificates, 'hello-ztunnel');
    rogue = await startProxy(destinationState('node-c'), strangers, 'rogue-ztunnel');

    const routes = new Map([
      [HELLO, { ip: HELLO_POD_IP, port: () => hello.proxy.ports().inbound }],
      [OTHER, { ip: HELLO_POD_IP, port: () => hello.proxy.ports().inbound }],
      [ROGUE, { ip: ROGUE_POD_IP, port: () => rogue.proxy.ports().inbound }],
      [LOST, { ip: HELLO_POD_IP, port: () => hello.proxy.ports().inbound }],
    ]);
    gateway2 = new FakeGateway(await certificates.certificateFor(spiffe('istio-system', 'eastwest')), ca.certPem, routes);
    ports.gateway2 = await gateway2.listen();
    gateway3 = new FakeGateway(await strangers.certificateFor(spiffe('istio-system', 'eastwest')), ca.certPem, routes);
    ports.gateway3 = await gateway3.listen();
    gateway2b = new FakeGateway(await certificates.certificateFor(spiffe('istio-system', 'eastwest-b')), ca.certPem, routes);
    ports.gateway2b = await gateway2b.listen();
    ports.dead = await unusedPort(DEAD_GATEWAY_IPS[0]);
  });

  after(async () => {
    for (const socket of openSockets) socket.destroy();
    for (const proxy of proxies) await proxy.stop({ drainTimeoutMs: 0 });
    for (const metrics of metricsToClose) metrics.close();
    gateway2?.close();
    gateway3?.close();
    gateway2b?.close();
    echoServer?.close();
  });

  test('a connection crosses networks: echo answers, the client identity arrives end to end, the gateway sees only ciphertext', async () => {
    const payload = `secret payload ${randomBytes(8).toString('hex')}`;
    assert.equal(await echoOnce(client.proxy, CURL_IP, HELLO_VIP, payload), payload);

    // The gateway terminated the outer tunnel only: it saw the client's identity and the service name...
    const outer = gateway2.connects.at(-1);
    assert.ok(outer);
    assert.equal(outer.headers[':authority'], `${HELLO}:${SERVICE_PORT}`);
    assert.deepEqual(outer.clientIdentities, [spiffe('default', 'curl')]);
    assert.equal(outer.headers['x-forwarded-network'], NETWORK1);
    // ...and passed an inner TLS stream it cannot read.
    const seen = gateway2.bytesSeen();
    assert.ok(seen.length > payload.length);
    assert.equal(seen[0], 0x16, 'the first byte forwarded opens a TLS handshake record');
    assert.equal(seen.includes(Buffer.from(payload)), false, 'the payload never crosses the gateway in the clear');
    assert.equal(seen.includes(Buffer.from('x-forwarded-network')), false, 'nor do the inner CONNECT headers');

    // The destination authorized on the client's own identity (its policy admits only network1's clients).
    const destinationLabels = {
      reporter: 'destination',
      source_principal: spiffe('default', 'curl'),
      // The destination knows neither the client pod nor network1: only what the certificate says.
      source_workload_namespace: 'default',
      source_workload: 'unknown',
      source_cluster: 'unknown',
      destination_principal: spiffe('default', 'helloworld'),
      destination_workload: 'helloworld',
      destination_cluster: CLUSTER2,
      destination_service: HELLO,
      connection_security_policy: 'mutual_tls',
      response_flags: '-',
    };
    await waitFor('the destination to count the connection', async () => (await metricValue(hello.metrics, 'istio_tcp_connections_closed_total', destinationLabels)) === 1);
    assert.equal(await metricValue(hello.metrics, 'istio_tcp_received_bytes_total', destinationLabels), Buffer.byteLength(payload));
    const arrival = hello.log.lines.find((line) => line.msg === 'inbound HBONE connection through an east-west gateway');
    assert.ok(arrival, 'the destination logs the cross-network arrival');
    assert.equal(arrival.sourceNetwork, NETWORK1);
    assert.equal(arrival.claimedSourceCluster, CLUSTER1, 'the log shows what the client claims (its baggage); labels use only what is known');
    assert.equal(arrival.peerIdentity, spiffe('default', 'curl'));
    assert.equal(arrival.sourceIp, CURL_IP);
    assert.equal(arrival.destination, `${HELLO_POD_IP}:${TARGET_PORT}`);

    const sourceLabels = {
      reporter: 'source',
      source_principal: spiffe('default', 'curl'),
      source_cluster: CLUSTER1,
      destination_principal: spiffe('default', 'helloworld'),
      destination_cluster: `network:${NETWORK2}`,
      destination_service: HELLO,
    };
    await waitFor('the client to count the connection', async () => (await metricValue(client.metrics, 'istio_tcp_connections_closed_total', sourceLabels)) === 1);
    assert.equal(await metricValue(client.metrics, 'istio_tcp_sent_bytes_total', sourceLabels), Buffer.byteLength(payload));
  });

  test('the destination authorizes the inner identity, not the gateway: an identity its policy does not admit gets 401', async () => {
    const { data, reset } = await refused(INTRUDER_IP, HELLO_VIP);
    assert.equal(data.length, 0);
    assert.equal(reset, true);
    await waitFor('the destination to count the denial', async () => (await metricValue(hello.metrics, 'ambit_hbone_rejected_streams_total', { direction: 'inbound', code: '401' })) === 1);
    assert.equal(await metricValue(client.metrics, 'istio_tcp_connections_opened_total', { reporter: 'source', source_workload: 'intruder', response_flags: 'DENY' }), 1);
  });

  test('50 sequential connections open ONE inner session over ONE outer session', async () => {
    const innerBefore = await metricValue(client.metrics, 'ambit_hbone_inner_sessions_opened_total');
    const outerBefore = await metricValue(client.metrics, 'ambit_hbone_sessions_opened_total', { direction: 'outbound' });
    const gatewaySessionsBefore = gateway2.sessionsAccepted;
    const gatewayStreamsBefore = gateway2.connects.length;
    const destinationSessionsBefore = await metricValue(hello.metrics, 'ambit_hbone_sessions_opened_total', { direction: 'inbound' });
    for (let i = 0; i < 50; i++) assert.equal(await echoOnce(client.proxy, POOLED_IP, HELLO_VIP, `ping ${i}`), `ping ${i}`);
    assert.equal((await metricValue(client.metrics, 'ambit_hbone_inner_sessions_opened_total')) - innerBefore, 1, 'inner TLS + HTTP/2 handshakes');
    assert.equal((await metricValue(client.metrics, 'ambit_hbone_sessions_opened_total', { direction: 'outbound' })) - outerBefore, 1, 'outer handshakes');
    assert.equal(gateway2.sessionsAccepted - gatewaySessionsBefore, 1, 'TLS sessions the gateway accepted');
    assert.equal(gateway2.connects.length - gatewayStreamsBefore, 1, 'outer CONNECT streams through the gateway');
    assert.equal((await metricValue(hello.metrics, 'ambit_hbone_sessions_opened_total', { direction: 'inbound' })) - destinationSessionsBefore, 1, 'sessions at the destination');
    assert.ok((await metricValue(client.metrics, 'ambit_hbone_pooled_inner_sessions')) >= 1);
  });

  test('an inner session is not reused after the source certificate was renewed', async () => {
    assert.equal(await echoOnce(client.proxy, POOLED_IP, HELLO_VIP, 'before renewal'), 'before renewal');
    const innerBefore = await metricValue(client.metrics, 'ambit_hbone_inner_sessions_opened_total');
    await certificates.renew(spiffe('default', 'pooled'));
    assert.equal(await echoOnce(client.proxy, POOLED_IP, HELLO_VIP, 'after renewal'), 'after renewal');
    assert.equal((await metricValue(client.metrics, 'ambit_hbone_inner_sessions_opened_total')) - innerBefore, 1);
  });

  test('an inner session is dropped when its outer stream closes; the next connection opens a new one', async () => {
    assert.equal(await echoOnce(client.proxy, CURL_IP, HELLO_VIP, 'warm up'), 'warm up');
    assert.ok(client.proxy.pooledSessions().inner >= 1);
    gateway2.resetStreams();
    await waitFor('the inner sessions to be dropped', () => client.proxy.pooledSessions().inner === 0);
    assert.equal(await metricValue(client.metrics, 'ambit_hbone_pooled_inner_sessions'), 0);
    const innerBefore = await metricValue(client.metrics, 'ambit_hbone_inner_sessions_opened_total');
    assert.equal(await echoOnce(client.proxy, CURL_IP, HELLO_VIP, 'again'), 'again');
    assert.equal((await metricValue(client.metrics, 'ambit_hbone_inner_sessions_opened_total')) - innerBefore, 1);
  });

  test('a destination whose certificate comes from another CA is refused: untrusted peer certificate (inner tunnel)', async () => {
    const { data, reset } = await refused(CURL_IP, ROGUE_VIP);
    assert.equal(data.length, 0);
    assert.equal(reset, true);
    assert.equal(await metricValue(client.metrics, 'ambit_hbone_handshake_failures_total', { direction: 'outbound', tunnel: 'inner', reason: 'untrusted_peer_certificate' }), 1);
    const line = client.log.lines.find((entry) => entry.msg === 'untrusted peer certificate' && entry.tunnel === 'inner');
    assert.ok(line, 'the client logs the untrusted destination');
    assert.match(String(line.peer), new RegExp(`${ROGUE}:${SERVICE_PORT} through gateway ${GATEWAY2_IP}:${HBONE}`));
    // The rogue ztunnel sees the client hang up on its certificate (a Node TLS client sends no alert).
    await waitFor('the destination to log the refusal', () => rogue.log.lines.some((entry) => String(entry.msg).startsWith('HBONE client closed the connection during the TLS handshake')));
    assert.equal(await metricValue(rogue.metrics, 'ambit_hbone_handshake_failures_total', { direction: 'inbound', reason: 'peer_hung_up' }), 1);
    assert.equal(await metricValue(hello.metrics, 'ambit_hbone_handshake_failures_total'), 0, 'nothing reached the trusted destination');
  });

  test('a destination that does not trust the client\'s CA refuses it: untrusted peer certificate at the destination', async () => {
    // This client trusts both CAs, so it completes the inner handshake; the rogue destination trusts only its own.
    const trusting = await startProxy(client.state, new FakeCertificates(ca, otherCa.certPem), 'trusting-client');
    const socket = await connectVia(trusting.proxy, CURL_IP, ROGUE_VIP);
    const { data, reset } = await readToEnd(socket);
    assert.equal(data.length, 0);
    assert.equal(reset, true);
    await waitFor('the destination to refuse the client', async () => (await metricValue(rogue.metrics, 'ambit_hbone_handshake_failures_total', { direction: 'inbound', reason: 'untrusted_peer_certificate' })) === 1);
    const line = rogue.log.lines.find((entry) => entry.msg === 'untrusted peer certificate');
    assert.match(String(line?.reason), /does not chain to the mesh roots/);
    assert.equal(line?.destination, ROGUE_POD_IP);
    await trusting.proxy.stop({ drainTimeoutMs: 0 });
  });

  test('a gateway whose certificate comes from another CA is refused: untrusted peer certificate (outer tunnel)', async () => {
    const { data, reset } = await refused(CURL_IP, LOST_VIP);
    assert.equal(data.length, 0);
    assert.equal(reset, true);
    assert.equal(await metricValue(client.metrics, 'ambit_hbone_handshake_failures_total', { direction: 'outbound', tunnel: 'outer', reason: 'untrusted_peer_certificate' }), 1);
    assert.ok(client.log.lines.some((entry) => entry.msg === 'untrusted peer certificate' && entry.tunnel === 'outer' && entry.peer === `${GATEWAY3_IP}:${HBONE}`));
    assert.equal(gateway3.connects.length, 0);
  });

  test('a hostname authority for a service the destination pod does not back is answered 400', async () => {
    const { data, reset } = await refused(CURL_IP, OTHER_VIP);
    assert.equal(data.length, 0);
    assert.equal(reset, true);
    assert.equal(await metricValue(hello.metrics, 'ambit_hbone_rejected_streams_total', { direction: 'inbound', code: '400', reason: 'unknown_service' }), 1);
    assert.ok(client.log.lines.some((entry) => entry.msg === 'outbound HBONE connection failed; resetting' && entry.status === 400 && entry.authority === `${OTHER}:${SERVICE_PORT}`));
    const rejection = hello.log.lines.find((entry) => entry.msg === 'HBONE CONNECT rejected' && entry.status === 400);
    assert.match(String(rejection?.why), /does not back a service with hostname other\.default\.svc\.cluster\.local/, 'the log says why');
    assert.equal(String(rejection?.reason), ':authority other.default.svc.cluster.local:5000 is not a service of this destination', 'the client is told less');
  });

  // ---- several east-west gateways per network ---------------------------------------------------

  const GATEWAY_B = { name: 'eastwest-b', ip: GATEWAY2B_IP };
  const GATEWAY_A = { name: 'eastwest', ip: GATEWAY2_IP };
  const DEAD_A = { name: 'eastwest-dead-a', ip: DEAD_GATEWAY_IPS[0] };
  const DEAD_B = { name: 'eastwest-dead-b', ip: DEAD_GATEWAY_IPS[1] };
  const gatewayKeyOf = (ip: string) => `${ip}:${HBONE}`;

  /**
   * A client ztunnel of its own (its own gateway ejections) whose state names network2's gateways by
   * hostname. `choice`, when given, is the state's only source of randomness: a constant that makes
   * the first pick land where the test wants it.
   */
  async function startSeveralGatewaysClient(component: string, gateways: Array<{ name: string; ip: string }>, options: { choice?: { value: number }; innerPooling?: boolean } = {}) {
    const { choice } = options;
    const state = severalGatewaysClientState(gateways, choice ? () => choice.value : undefined);
    return { ...(await startProxy(state, certificates, component, { innerPooling: options.innerPooling })), state };
  }

  /** The constant random value for which `state` sends a connection from curl to helloworld through `ip`. */
  function choiceFor(state: ZtunnelState, choice: { value: number }, ip: string): number {
    const source = state.workloadByIp(CURL_IP);
    assert.ok(source);
    for (const value of [0, 0.25, 0.5, 0.75, 0.99]) {
      choice.value = value;
      const resolution = state.resolve(source, HELLO_VIP, SERVICE_PORT);
      assert.equal(resolution.kind, 'gateway');
      if (resolution.kind === 'gateway' && resolution.gateway.address === ip) return value;
    }
    throw new Error(`no choice sends the connection through ${ip}`);
  }

  const failovers = (metrics: ProxyMetrics) => metricValue(metrics, 'ambit_gateway_failovers_total');
  const helloArrivals = (sourceServiceAccount: string) =>
    metricValue(hello.metrics, 'istio_tcp_connections_closed_total', { reporter: 'destination', source_principal: spiffe('default', sourceServiceAccount), destination_workload: 'helloworld', response_flags: '-' });

  test('a gateway hostname resolves to a healthy gateway with its own identity; both gateways of network2 are candidates', async () => {
    const choice = { value: 0 };
    const state = severalGatewaysClientState([GATEWAY_A, GATEWAY_B], () => choice.value);
    const source = state.workloadByIp(CURL_IP);
    assert.ok(source);
    const picked = new Map<string, string[]>();
    for (const value of [0, 0.99]) {
      choice.value = value;
      const resolution = state.resolve(source, HELLO_VIP, SERVICE_PORT);
      assert.equal(resolution.kind, 'gateway');
      if (resolution.kind !== 'gateway') return;
      assert.equal(resolution.authority, `${HELLO}:${SERVICE_PORT}`);
      assert.equal(resolution.gateway.port, HBONE);
      assert.equal(resolution.gateway.network, NETWORK2);
      assert.deepEqual(resolution.upstream.expectedIdentities, [spiffe('default', 'helloworld')]);
      picked.set(resolution.gateway.address, resolution.gateway.identities);
    }
    assert.deepEqual(
      new Map([...picked].sort()),
      new Map([
        [GATEWAY2_IP, [spiffe('istio-system', 'eastwest')]],
        [GATEWAY2B_IP, [spiffe('istio-system', 'eastwest-b')]],
      ]),
    );
  });

  test('connections spread over the network\'s gateways: without inner pooling each connection is one outer CONNECT, and both gateways carry them', async () => {
    const spreading = await startSeveralGatewaysClient('spreading-client', [GATEWAY_A, GATEWAY_B], { innerPooling: false });
    const rounds = 40;
    const before = { a: gateway2.connects.length, b: gateway2b.connects.length, sessionsA: gateway2.sessionsAccepted, sessionsB: gateway2b.sessionsAccepted, arrivals: await helloArrivals('curl') };
    for (let i = 0; i < rounds; i++) assert.equal(await echoOnce(spreading.proxy, CURL_IP, HELLO_VIP, `spread ${i}`), `spread ${i}`);
    const throughA = gateway2.connects.slice(before.a);
    const throughB = gateway2b.connects.slice(before.b);
    console.log(`# ${rounds} connections over two gateways (random choice): ${throughA.length} through ${GATEWAY2_IP}, ${throughB.length} through ${GATEWAY2B_IP}`);
    assert.equal(throughA.length + throughB.length, rounds, 'one outer CONNECT per connection, on one gateway or the other');
    // Binomial(40, 1/2): fewer than 5 on one side happens about once in ten million runs.
    assert.ok(throughA.length >= 5, `gateway ${GATEWAY2_IP} carried ${throughA.length} of ${rounds}`);
    assert.ok(throughB.length >= 5, `gateway ${GATEWAY2B_IP} carried ${throughB.length} of ${rounds}`);
    for (const outer of [...throughA, ...throughB]) {
      assert.equal(outer.headers[':authority'], `${HELLO}:${SERVICE_PORT}`);
      assert.deepEqual(outer.clientIdentities, [spiffe('default', 'curl')]);
    }
    // The outer tunnels are pooled per gateway: one TLS session to each, whatever the number of connections.
    assert.equal(gateway2.sessionsAccepted - before.sessionsA, 1);
    assert.equal(gateway2b.sessionsAccepted - before.sessionsB, 1);
    assert.equal(await metricValue(spreading.metrics, 'ambit_hbone_sessions_opened_total', { direction: 'outbound' }), 2);
    assert.equal(await metricValue(spreading.metrics, 'ambit_hbone_inner_sessions_opened_total'), rounds);
    assert.equal(await failovers(spreading.metrics), 0);
    // Every connection reached the helloworld pod, whichever gateway carried it.
    await waitFor('the destination to count every connection', async () => (await helloArrivals('curl')) - before.arrivals === rounds);
    await spreading.proxy.stop({ drainTimeoutMs: 0 });
  });

  test('with inner pooling, each source identity opens one inner session per gateway it was sent through, and both gateways carry traffic', async () => {
    const pooled = await startSeveralGatewaysClient('spreading-pooled-client', [GATEWAY_A, GATEWAY_B]);
    const sources = [
      { ip: CURL_IP, identity: spiffe('default', 'curl') },
      { ip: POOLED_IP, identity: spiffe('default', 'pooled') },
      { ip: BENCH_IP, identity: spiffe('default', 'bench') },
    ];
    const perSource = 12;
    const before = { a: gateway2.connects.length, b: gateway2b.connects.length };
    for (let i = 0; i < perSource; i++) {
      for (const source of sources) assert.equal(await echoOnce(pooled.proxy, source.ip, HELLO_VIP, `pooled ${i}`), `pooled ${i}`);
    }
    const throughA = gateway2.connects.slice(before.a);
    const throughB = gateway2b.connects.slice(before.b);
    // An outer CONNECT per inner session: at most one per (identity, gateway).
    const innerSessions = await metricValue(pooled.metrics, 'ambit_hbone_inner_sessions_opened_total');
    assert.equal(throughA.length + throughB.length, innerSessions);
    assert.ok(innerSessions >= sources.length && innerSessions <= 2 * sources.length, `${innerSessions} inner sessions`);
    const identitiesThrough = (connects: OuterConnect[]) => connects.map((outer) => outer.clientIdentities.join(','));
    for (const [gateway, connects] of [
      [GATEWAY2_IP, throughA],
      [GATEWAY2B_IP, throughB],
    ] as const) {
      const identities = identitiesThrough(connects);
      assert.equal(new Set(identities).size, identities.length, `gateway ${gateway}: one outer stream per source identity (${identities.join(' ')})`);
      // Each identity's 12 connections use both gateways but for a 1 in 2048 chance; two identities missing one is negligible.
      assert.ok(identities.length >= 2, `gateway ${gateway} carried inner sessions of ${identities.length} source identities`);
    }
    assert.equal(await failovers(pooled.metrics), 0);
    await pooled.proxy.stop({ drainTimeoutMs: 0 });
  });

  test('failover: the first connection is sent to a gateway where nothing listens; it is retried through the working one, and the dead one is then avoided', async () => {
    const choice = { value: 0 };
    const failing = await startSeveralGatewaysClient('failover-client', [GATEWAY_A, DEAD_A], { choice });
    // A constant choice that picks the dead gateway among both: without ejection every connection would go there.
    choice.value = choiceFor(failing.state, choice, DEAD_A.ip);
    const rounds = 20;
    const before = { dead: dialsTo(DEAD_A.ip), a: gateway2.connects.length, arrivals: await helloArrivals('curl') };
    for (let i = 0; i < rounds; i++) assert.equal(await echoOnce(failing.proxy, CURL_IP, HELLO_VIP, `failover ${i}`), `failover ${i}`);
    assert.equal(dialsTo(DEAD_A.ip) - before.dead, 1, 'the dead gateway was dialled once, then avoided while ejected');
    assert.equal(await failovers(failing.metrics), 1);
    assert.equal(await metricValue(failing.metrics, 'ambit_proxy_refused_connections_total'), 0);
    assert.equal(gateway2.connects.length - before.a, 1, 'one inner session through the working gateway carried every connection');
    await waitFor('the destination to count every connection', async () => (await helloArrivals('curl')) - before.arrivals === rounds);
    const warning = failing.log.lines.filter((line) => line.msg === 'east-west gateway unreachable; failing over to another gateway of the network');
    assert.equal(warning.length, 1);
    assert.equal(warning[0]?.failed, gatewayKeyOf(DEAD_A.ip));
    assert.equal(warning[0]?.next, gatewayKeyOf(GATEWAY2_IP));
    assert.match(String(warning[0]?.err), new RegExp(`outer HBONE tunnel to gateway ${DEAD_A.ip.replaceAll('.', '\\.')}:${HBONE} failed`));
    await failing.proxy.stop({ drainTimeoutMs: 0 });
  });

  test('failover with the random choice: every connection succeeds, and the dead gateway fails once before it is avoided', async () => {
    const failing = await startSeveralGatewaysClient('failover-random-client', [GATEWAY_A, DEAD_A]);
    const rounds = 30;
    const before = dialsTo(DEAD_A.ip);
    for (let i = 0; i < rounds; i++) assert.equal(await echoOnce(failing.proxy, POOLED_IP, HELLO_VIP, `random ${i}`), `random ${i}`);
    // Each connection picks the dead gateway with probability 1/2 until it fails once: never picking it in 30 is a 1 in 10^9 chance.
    assert.equal(await failovers(failing.metrics), 1);
    assert.equal(dialsTo(DEAD_A.ip) - before, 1);
    assert.equal(await metricValue(failing.metrics, 'ambit_proxy_refused_connections_total'), 0);
    await failing.proxy.stop({ drainTimeoutMs: 0 });
  });

  test('failover: concurrent connections that all picked the dead gateway share its one failed dial and all go through the working one', async () => {
    const choice = { value: 0 };
    const failing = await startSeveralGatewaysClient('failover-concurrent-client', [GATEWAY_A, DEAD_A], { choice });
    choice.value = choiceFor(failing.state, choice, DEAD_A.ip);
    const before = dialsTo(DEAD_A.ip);
    const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => echoOnce(failing.proxy, CURL_IP, HELLO_VIP, `concurrent ${i}`)));
    assert.deepEqual(replies, Array.from({ length: 8 }, (_, i) => `concurrent ${i}`));
    assert.equal(dialsTo(DEAD_A.ip) - before, 1);
    const count = await failovers(failing.metrics);
    assert.ok(count >= 1 && count <= 8, `${count} failovers`);
    assert.equal(await metricValue(failing.metrics, 'ambit_proxy_refused_connections_total'), 0);
    await failing.proxy.stop({ drainTimeoutMs: 0 });
  });

  test('every gateway of the network dead: the connection is reset promptly and counted as refused', async () => {
    const stranded = await startSeveralGatewaysClient('stranded-client', [DEAD_A, DEAD_B]);
    const before = { a: dialsTo(DEAD_A.ip), b: dialsTo(DEAD_B.ip) };
    const started = Date.now();
    const { data, reset } = await within(5000, 'the client connection to be reset', refused(CURL_IP, HELLO_VIP, stranded.proxy));
    assert.equal(data.length, 0);
    assert.equal(reset, true);
    assert.ok(Date.now() - started < 5000);
    // The first pick failed, then the other gateway (the only one not ejected); a third attempt only if the
    // random pick among the two (both ejected) differs from the last one tried.
    const dialsA = dialsTo(DEAD_A.ip) - before.a;
    const dialsB = dialsTo(DEAD_B.ip) - before.b;
    assert.ok(dialsA >= 1 && dialsB >= 1 && dialsA + dialsB <= 3, `dials: ${dialsA} + ${dialsB}`);
    const count = await failovers(stranded.metrics);
    assert.equal(count, dialsA + dialsB - 1, 'one failover before each attempt but the first');
    assert.equal(await metricValue(stranded.metrics, 'ambit_proxy_refused_connections_total', { listener: 'outbound', reason: 'hbone_refused' }), 1);
    assert.equal(await metricValue(stranded.metrics, 'istio_tcp_connections_opened_total', { reporter: 'source', source_workload: 'curl', destination_service: HELLO, response_flags: 'CONNECT' }), 1);
    const failure = stranded.log.lines.find((line) => line.msg === 'outbound HBONE connection failed; resetting');
    assert.match(String(failure?.err), /outer HBONE tunnel to gateway 127\.1\.70\.[45]:15008 failed/);
    assert.equal(failure?.authority, `${HELLO}:${SERVICE_PORT}`);

    // Both ejected: the avoid set is ignored rather than refusing outright, so the next connection tries again, and is refused too.
    const again = await within(5000, 'the second client connection to be reset', refused(CURL_IP, HELLO_VIP, stranded.proxy));
    assert.equal(again.reset, true);
    assert.ok(dialsTo(DEAD_A.ip) - before.a + (dialsTo(DEAD_B.ip) - before.b) > dialsA + dialsB);
    assert.equal(await metricValue(stranded.metrics, 'ambit_proxy_refused_connections_total', { listener: 'outbound', reason: 'hbone_refused' }), 2);
    await stranded.proxy.stop({ drainTimeoutMs: 0 });
  });

  test('new connections per second with and without inner pooling (printed, not asserted)', async () => {
    const unpooled = await startProxy(client.state, certificates, 'unpooled-client', { innerPooling: false });
    const rounds = 200;
    const measure = async (proxy: Proxy, metrics: ProxyMetrics) => {
      const innerBefore = await metricValue(metrics, 'ambit_hbone_inner_sessions_opened_total');
      const started = process.hrtime.bigint();
      for (let i = 0; i < rounds; i++) assert.equal(await echoOnce(proxy, BENCH_IP, HELLO_VIP, 'x'), 'x');
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      return { perSecond: rounds / seconds, handshakes: (await metricValue(metrics, 'ambit_hbone_inner_sessions_opened_total')) - innerBefore };
    };
    // One round each first, so neither side pays for certificate issuance or the outer session.
    await measure(unpooled.proxy, unpooled.metrics);
    await measure(client.proxy, client.metrics);
    const without = await measure(unpooled.proxy, unpooled.metrics);
    const withPooling = await measure(client.proxy, client.metrics);
    assert.equal(without.handshakes, rounds, 'without pooling every connection pays an inner handshake');
    console.log(
      `# double HBONE, ${rounds} sequential connections: inner pooling ${withPooling.perSecond.toFixed(0)} conn/s (${withPooling.handshakes} inner handshakes); ` +
        `without ${without.perSecond.toFixed(0)} conn/s (${without.handshakes} inner handshakes)`,
    );
  });
});
