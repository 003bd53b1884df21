import assert from 'node:assert/strict';
import { randomBytes, X509Certificate } from 'node:crypto';
import { connect as http2Connect, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

import { create } from '@bufbuild/protobuf';
import { pino } from 'pino';

import { ipToBytes } from '../src/api/ip.js';
import { HboneGateway, type HboneGatewayOptions } from '../src/gateway/hbone-gateway.js';
import { gatewayIdentity, serviceAccountOfToken } from '../src/gateway/identity.js';
import { GatewayMetrics } from '../src/gateway/metrics.js';
import { findServiceTarget, parseServiceAuthority, pickEndpoint, type GatewayStateView, type ServiceTarget } from '../src/gateway/routing.js';
import { parseEndpointSlot } from '../src/hbone/headers.js';
import { gatewaySettingsFromEnv } from '../src/gateway/settings.js';
import {
  GatewayAddressSchema,
  NetworkAddressSchema,
  PortListSchema,
  PortSchema,
  ServiceSchema,
  TunnelProtocol,
  WorkloadSchema,
  WorkloadStatus,
  WorkloadType,
  type Service,
  type Workload,
} from '../src/gen/istio/workload/workload_pb.js';
import { createRootCa, issueLeaf, type CertificateAuthority, type KeyPairPem } from '../src/util/pki.js';
import { ZtunnelState } from '../src/ztunnel/state/store.js';
import { captureLog, FakeCertificates, issueCertificate, listenOn, metricValue, readExactly, waitFor, type CapturedLog } from './helpers/proxy-fakes.js';

// ---------------------------------------------------------------------------------------------
// The mesh as the gateway of cluster2 (network2) sees it. Pod IPs are never dialled: the injected
// dial function maps them to loopback servers standing in for `<pod IP>:15008`.
// ---------------------------------------------------------------------------------------------

const TRUST_DOMAIN = 'cluster.local';
const NETWORK = 'network2';
const CLUSTER = 'cluster2';
const GATEWAY_IDENTITY = `spiffe://${TRUST_DOMAIN}/ns/istio-system/sa/eastwest`;
const CLIENT_IDENTITY = `spiffe://${TRUST_DOMAIN}/ns/sample/sa/curl`;

const BLOB_HOST = 'blob.sample.svc.cluster.local'; // endpoint exchanges random data
const MIRROR_HOST = 'mirror.sample.svc.cluster.local'; // endpoint echoes
const GHOST_HOST = 'ghost.sample.svc.cluster.local'; // no usable endpoint here
const DOWN_HOST = 'down.sample.svc.cluster.local'; // endpoint's node does not answer

const BLOB_IP = '10.20.0.5';
const MIRROR_IP = '10.20.0.6';
const DOWN_IP = '10.20.0.9';
const HBONE = 15008;

function service(name: string, ports: Array<[number, number]>): Service {
  return create(ServiceSchema, {
    name,
    namespace: 'sample',
    hostname: `${name}.sample.svc.cluster.local`,
    ports: ports.map(([servicePort, targetPort]) => create(PortSchema, { servicePort, targetPort })),
  });
}

function endpoint(
  name: string,
  ip: string,
  serviceName: string,
  options: { network?: string; status?: WorkloadStatus; tunnel?: TunnelProtocol; capacity?: number; gateway?: string; uid?: string } = {},
): Workload {
  return create(WorkloadSchema, {
    uid: options.uid ?? `${CLUSTER}//Pod/sample/${name}`,
    name,
    namespace: 'sample',
    addresses: [ipToBytes(ip)],
    network: options.network ?? NETWORK,
    serviceAccount: serviceName.split('.')[0] ?? name,
    trustDomain: TRUST_DOMAIN,
    node: 'node-1',
    canonicalName: serviceName.split('.')[0] ?? name,
    canonicalRevision: 'v1',
    workloadName: name,
    workloadType: WorkloadType.DEPLOYMENT,
    tunnelProtocol: options.tunnel ?? TunnelProtocol.HBONE,
    status: options.status ?? WorkloadStatus.HEALTHY,
    clusterId: options.network && options.network !== NETWORK ? '' : CLUSTER,
    capacity: options.capacity,
    networkGateway: options.gateway
      ? create(GatewayAddressSchema, {
          destination: { case: 'address', value: create(NetworkAddressSchema, { network: options.network ?? NETWORK, address: ipToBytes(options.gateway) }) },
          hboneMtlsPort: HBONE,
        })
      : undefined,
    services: { [`sample/${serviceName}`]: create(PortListSchema, { ports: [create(PortSchema, { servicePort: 80, targetPort: 8080 })] }) },
  });
}

function meshState(): ZtunnelState {
  const state = new ZtunnelState({ network: NETWORK, nodeName: '', clusterId: CLUSTER, systemNamespace: 'istio-system', logger: pino({ level: 'silent' }) });
  const services = [service('blob', [[80, 8080]]), service('mirror', [[80, 8080]]), service('ghost', [[80, 8080]]), service('down', [[80, 8080]])];
  const workloads = [
    endpoint('blob-1', BLOB_IP, BLOB_HOST),
    endpoint('mirror-1', MIRROR_IP, MIRROR_HOST),
    endpoint('ghost-sick', '10.20.0.7', GHOST_HOST, { status: WorkloadStatus.UNHEALTHY }),
    // Another network's endpoints of the same global service: never forwarded to from here.
    endpoint('ghost', '0.0.0.0', GHOST_HOST, { network: 'network1', gateway: '198.18.0.10', capacity: 3, uid: 'network1/SyntheticGateway/sample/ghost.sample.svc.cluster.local' }),
    endpoint('down-1', DOWN_IP, DOWN_HOST),
  ];
  state.applyAddresses(
    [...services.map((s) => ({ name: `sample/${s.hostname}`, service: s })), ...workloads.map((w) => ({ name: w.uid, workload: w }))],
    [],
  );
  return state;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** Everything a readable delivers until it ends. */
function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

/** Resolves once the socket is closed; reads and drops whatever arrives, so that a clean end is seen. */
function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.resume();
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

// ---------------------------------------------------------------------------------------------
// Routing (pure logic)
// ---------------------------------------------------------------------------------------------

describe('gateway routing', () => {
  test('the outer :authority must be <hostname>:<port>', () => {
    assert.deepEqual(parseServiceAuthority('Blob.Sample.svc.cluster.local:80'), { ok: true, hostname: BLOB_HOST, port: 80 });
    for (const bad of [undefined, '', BLOB_HOST, `${BLOB_HOST}:`, `${BLOB_HOST}:0`, `${BLOB_HOST}:70000`, '10.20.0.5:80', '[fd00::1]:80', 'bad_host!:80', ':80']) {
      const parsed = parseServiceAuthority(bad);
      assert.equal(parsed.ok, false, `${String(bad)} is refused`);
      if (!parsed.ok) assert.match(parsed.reason, /:authority/);
    }
  });

  test('a service is found by hostname and service port, with a reason otherwise', () => {
    const state = meshState();
    const found = findServiceTarget(state, BLOB_HOST, 80);
    assert.ok(found.ok);
    assert.equal(found.target.serviceName, `sample/${BLOB_HOST}`);
    assert.equal(found.target.port.targetPort, 8080);
    const unknown = findServiceTarget(state, 'nope.sample.svc.cluster.local', 80);
    assert.deepEqual(unknown, { ok: false, reason: 'unknown service nope.sample.svc.cluster.local' });
    const wrongPort = findServiceTarget(state, BLOB_HOST, 81);
    assert.equal(wrongPort.ok, false);
    if (!wrongPort.ok) assert.match(wrongPort.reason, /unknown service port .*:81 \(the service has ports 80\)/);
  });

  test('an endpoint slot (x-ambit-endpoint-slot) picks a stable share of the endpoints, so sessions over all slots cover every endpoint', () => {
    const target: ServiceTarget = { serviceName: 'sample/svc', service: service('svc', [[80, 8080]]), port: create(PortSchema, { servicePort: 80, targetPort: 8080 }) };
    const workloads = ['c', 'a', 'd', 'b'].map((name, i) => endpoint(name, `10.0.1.${i + 1}`, 'svc.sample.svc.cluster.local'));
    const state: GatewayStateView = { network: NETWORK, servicesByHostname: () => [], endpointsOf: () => workloads, workloadsByDnsName: () => [] };
    const picked = (slot: number, slots: number, point: number) => {
      const choice = pickEndpoint(state, target, () => point, { slot, slots });
      return choice.kind === 'selected' ? choice.workload.name : '';
    };
    assert.deepEqual([0, 1, 2, 3].map((slot) => picked(slot, 4, 0.5)), ['a', 'b', 'c', 'd'], 'one endpoint per slot, in uid order');
    assert.deepEqual([picked(0, 2, 0), picked(0, 2, 0.99), picked(1, 2, 0), picked(1, 2, 0.99)], ['a', 'c', 'b', 'd'], 'two slots share the four');
    assert.equal(picked(5, 8, 0.3), 'b', 'a slot beyond the endpoints known here still gets one');
    assert.deepEqual(parseEndpointSlot('2/8'), { slot: 2, slots: 8 });
    for (const bad of [undefined, '', '8/8', '1/0', 'x/2', '1/2/3', '-1/2']) assert.equal(parseEndpointSlot(bad), undefined, String(bad));
  });

  test('a StatefulSet pod named by its own DNS name: the headless service pinned to that pod, on its own port', () => {
    const state = meshState();
    const web = create(ServiceSchema, { name: 'web', namespace: 'sample', hostname: 'web.sample.svc.cluster.local', ports: [create(PortSchema, { servicePort: 80, targetPort: 8080 })] });
    const pods = ['web-0', 'web-1'].map((name, i) => {
      const pod = endpoint(name, `10.20.1.${i + 1}`, 'web.sample.svc.cluster.local');
      pod.hostname = `${name}.web.sample.svc.cluster.local`;
      return pod;
    });
    state.applyAddresses([{ name: 'sample/web.sample.svc.cluster.local', service: web }, ...pods.map((w) => ({ name: w.uid, workload: w }))], []);
    const found = findServiceTarget(state, 'web-1.web.sample.svc.cluster.local', 8080);
    assert.ok(found.ok);
    assert.equal(found.target.serviceName, 'sample/web.sample.svc.cluster.local');
    assert.equal(found.target.pinned?.name, 'web-1');
    for (const point of [0, 0.5, 0.99]) {
      const choice = pickEndpoint(state, found.target, () => point);
      assert.equal(choice.kind === 'selected' && choice.address, '10.20.1.2', 'always the named pod');
    }
    assert.deepEqual(findServiceTarget(state, 'web-7.web.sample.svc.cluster.local', 8080), { ok: false, reason: 'unknown service web-7.web.sample.svc.cluster.local' });
  });

  test('only healthy HBONE endpoints on our network are picked, weighted by capacity', () => {
    const target: ServiceTarget = { serviceName: 'sample/svc', service: service('svc', [[80, 8080]]), port: create(PortSchema, { servicePort: 80, targetPort: 8080 }) };
    const workloads = [
      endpoint('light', '10.0.0.1', 'svc.sample.svc.cluster.local', { capacity: 1 }),
      endpoint('heavy', '10.0.0.2', 'svc.sample.svc.cluster.local', { capacity: 3 }),
      endpoint('zero', '10.0.0.3', 'svc.sample.svc.cluster.local', { capacity: 0 }),
      endpoint('sick', '10.0.0.4', 'svc.sample.svc.cluster.local', { status: WorkloadStatus.UNHEALTHY }),
      endpoint('plain', '10.0.0.5', 'svc.sample.svc.cluster.local', { tunnel: TunnelProtocol.NONE }),
      endpoint('remote', '10.0.0.6', 'svc.sample.svc.cluster.local', { network: 'network1', gateway: '198.18.0.10', capacity: 100 }),
    ];
    const state: GatewayStateView = { network: NETWORK, servicesByHostname: () => [], endpointsOf: () => workloads, workloadsByDnsName: () => [] };
    const pickAt = (point: number) => {
      const choice = pickEndpoint(state, target, () => point);
      assert.equal(choice.kind, 'selected');
      return choice.kind === 'selected' ? `${choice.workload.name}@${choice.address}` : '';
    };
    // Capacities 1 and 3: the first quarter of the range is `light`, the rest `heavy`.
    assert.equal(pickAt(0), 'light@10.0.0.1');
    assert.equal(pickAt(0.24), 'light@10.0.0.1');
    assert.equal(pickAt(0.26), 'heavy@10.0.0.2');
    assert.equal(pickAt(0.999), 'heavy@10.0.0.2');

    const onlyUnusable: GatewayStateView = { ...state, endpointsOf: () => workloads.slice(2) };
    const none = pickEndpoint(onlyUnusable, target, () => 0.5);
    assert.equal(none.kind, 'unavailable');
    if (none.kind === 'unavailable') {
      assert.match(none.reason, /no healthy endpoint on network network2 for service sample\/svc port 80/);
      for (const why of ['1 with capacity 0', '1 unhealthy', '1 not in the mesh', '1 on network network1']) assert.ok(none.reason.includes(why), `${none.reason} mentions ${why}`);
    }
    const empty = pickEndpoint({ ...state, endpointsOf: () => [] }, target);
    assert.deepEqual(empty, { kind: 'unavailable', reason: 'no healthy endpoint: service sample/svc has no endpoints' });
  });
});

describe('gateway settings and identity', () => {
  const base = { GATEWAY_NAME: 'eastwest', CLUSTER_ID: 'cluster2', NETWORK: 'network2' };

  test('settings come from the environment with the ztunnel defaults', () => {
    const settings = gatewaySettingsFromEnv({ ...base, POD_NAMESPACE: 'istio-system', INSTANCE_IP: '10.20.0.2' });
    assert.equal(settings.gatewayName, 'eastwest');
    assert.equal(settings.network, 'network2');
    assert.equal(settings.xdsAddress, 'ambit-controlplane.istio-system.svc:15012');
    assert.equal(settings.caAddress, settings.xdsAddress);
    assert.equal(settings.tokenPath, '/var/run/secrets/tokens/istio-token');
    assert.equal(settings.rootCertPath, '/var/run/secrets/istio/root-cert.pem');
    assert.equal(settings.trustDomain, 'cluster.local');
    assert.equal(settings.hbonePort, 15008);
    assert.equal(settings.enforceTrustDomain, false);
    assert.equal(gatewaySettingsFromEnv({ ...base, GATEWAY_ENFORCE_TRUST_DOMAIN: 'true' }).enforceTrustDomain, true);
  });

  test('bad settings name every variable at fault', () => {
    assert.throws(() => gatewaySettingsFromEnv({ NETWORK: 'n' }), (error: Error) => /GATEWAY_NAME/.test(error.message) && /CLUSTER_ID/.test(error.message));
    assert.throws(() => gatewaySettingsFromEnv({ ...base, GATEWAY_NAME: 'East_West' }), /GATEWAY_NAME must be a DNS-1123 label/);
    assert.throws(() => gatewaySettingsFromEnv({ ...base, INSTANCE_IP: 'not-an-ip' }), /INSTANCE_IP must be an IP address/);
    assert.throws(() => gatewaySettingsFromEnv({ ...base, GATEWAY_HBONE_PORT: '99999' }), /GATEWAY_HBONE_PORT must be 1-65535/);
    assert.throws(() => gatewaySettingsFromEnv({ ...base, GATEWAY_ENFORCE_TRUST_DOMAIN: 'maybe' }), /GATEWAY_ENFORCE_TRUST_DOMAIN must be true or false/);
  });

  test('the service account comes from the token payload, else the Gateway name', async () => {
    const jwt = (claims: unknown) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.c2ln`;
    assert.equal(serviceAccountOfToken(jwt({ 'kubernetes.io': { namespace: 'istio-system', serviceaccount: { name: 'eastwest', uid: 'x' } } })), 'eastwest');
    assert.equal(serviceAccountOfToken(jwt({ 'kubernetes.io/serviceaccount/service-account.name': 'legacy' })), 'legacy');
    for (const bad of ['', 'garbage', 'a.!!!.c', jwt(null), jwt({ 'kubernetes.io': { serviceaccount: 'eastwest' } })]) assert.equal(serviceAccountOfToken(bad), undefined);
    const quiet = pino({ level: 'silent' });
    const identity = await gatewayIdentity({ trustDomain: 'cluster.local', namespace: 'istio-system', gatewayName: 'eastwest', tokenPath: '/nonexistent/token' }, quiet);
    assert.equal(identity, GATEWAY_IDENTITY);
  });
});

// ---------------------------------------------------------------------------------------------
// The HBONE front end on loopback
// ---------------------------------------------------------------------------------------------

describe('gateway HBONE front end', () => {
  let ca: CertificateAuthority;
  let otherCa: CertificateAuthority;
  let certificates: FakeCertificates;
  let clientPair: KeyPairPem;
  let blobServer: Server;
  let mirrorServer: Server;
  let closedPort: number;
  const endpointPorts = new Map<string, number>();
  const blobReceived: Buffer[] = [];
  const BLOB_REPLY = randomBytes(300 * 1024);
  const openSockets = new Set<Socket>();
  const sessions = new Set<ClientHttp2Session>();
  const gateways: HboneGateway[] = [];

  let gateway: HboneGateway;
  let metrics: GatewayMetrics;
  let captured: CapturedLog;

  const dialAddress = (ip: string, port: number) => {
    assert.equal(port, HBONE, 'the gateway dials the endpoint HBONE port');
    return { host: '127.0.0.1', port: endpointPorts.get(ip) ?? closedPort };
  };

  async function startGateway(overrides: Partial<HboneGatewayOptions> = {}): Promise<{ gateway: HboneGateway; metrics: GatewayMetrics; captured: CapturedLog }> {
    const logs = captureLog('gateway');
    const gatewayMetrics = new GatewayMetrics({ flushIntervalMs: 60_000 });
    const started = new HboneGateway({ identity: GATEWAY_IDENTITY, certificates, state: meshState(), metrics: gatewayMetrics, log: logs.log, dialAddress, ...overrides });
    gateways.push(started);
    await started.start(0, '127.0.0.1');
    return { gateway: started, metrics: gatewayMetrics, captured: logs };
  }

  async function tlsTo(port: number, options: { pair?: KeyPairPem; alpn?: string[] } = {}): Promise<TLSSocket> {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca: ca.certPem,
      cert: options.pair?.certPem,
      key: options.pair?.keyPem,
      ALPNProtocols: options.alpn ?? ['h2'],
      // The gateway's identity is checked by the test itself (SPIFFE URI, no DNS name).
      checkServerIdentity: () => undefined,
    });
    openSockets.add(socket);
    socket.once('close', () => openSockets.delete(socket));
    socket.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    return socket;
  }

  async function outerSession(port = gateway.port(), pair = clientPair): Promise<{ session: ClientHttp2Session; tls: TLSSocket }> {
    const tls = await tlsTo(port, { pair });
    const session = http2Connect('https://gateway', { createConnection: () => tls });
    session.on('error', () => undefined);
    sessions.add(session);
    return { session, tls };
  }

  /** Opens a CONNECT stream; resolves with the status and, for errors, the body. */
  function connectStream(session: ClientHttp2Session, headers: OutgoingHttpHeaders): Promise<{ status: number; stream: ClientHttp2Stream; body: string }> {
    return new Promise((resolve, reject) => {
      const stream = session.request(headers, { endStream: false });
      stream.on('error', reject);
      stream.once('response', (response) => {
        const status = Number(response[':status']);
        if (status === 200) {
          resolve({ status, stream, body: '' });
          return;
        }
        readAll(stream).then((body) => resolve({ status, stream, body: body.toString() }), reject);
      });
      stream.once('close', () => reject(new Error(`stream closed before a response (code ${stream.rstCode})`)));
    });
  }

  const connectHeaders = (authority: string, extra: OutgoingHttpHeaders = {}): OutgoingHttpHeaders => ({ ':method': 'CONNECT', ':authority': authority, ...extra });

  async function roundTrip(stream: ClientHttp2Stream, message: Buffer): Promise<Buffer> {
    const reply = readExactly(stream, message.length, 'stream');
    stream.write(message);
    return reply;
  }

  before(async () => {
    ca = await createRootCa('ambit test root');
    otherCa = await createRootCa('someone else');
    certificates = new FakeCertificates(ca);
    const client = await issueCertificate(ca, CLIENT_IDENTITY);
    clientPair = { certPem: client.certChainPem, keyPem: client.keyPem };

    // Stands in for the destination node's captured `<blob pod IP>:15008`: answers with its own
    // random bytes while recording everything it receives, and ends once the client has ended.
    blobServer = createNetServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      const chunks: Buffer[] = [];
      socket.write(BLOB_REPLY);
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('end', () => {
        blobReceived.push(Buffer.concat(chunks));
        socket.end();
      });
    });
    endpointPorts.set(BLOB_IP, await listenOn(blobServer, '127.0.0.1'));
    mirrorServer = createNetServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    endpointPorts.set(MIRROR_IP, await listenOn(mirrorServer, '127.0.0.1'));
    const unused = createNetServer();
    closedPort = await listenOn(unused, '127.0.0.1');
    await new Promise<void>((resolve) => unused.close(() => resolve()));

    ({ gateway, metrics, captured } = await startGateway());
  });

  after(async () => {
    for (const session of sessions) session.destroy();
    for (const socket of openSockets) socket.destroy();
    for (const started of gateways) await started.stop({ drainTimeoutMs: 0 });
    blobServer.close();
    mirrorServer.close();
  });

  test('a CONNECT to a known service reaches its endpoint; random bytes flow both ways unchanged', async () => {
    const { session, tls } = await outerSession();
    const presented = tls.getPeerCertificate();
    assert.match(presented.subjectaltname ?? '', new RegExp(`URI:${GATEWAY_IDENTITY}`), 'the gateway presents its own identity');

    const before = blobReceived.length;
    const sent = randomBytes(1024 * 1024 + 17);
    const { status, stream } = await connectStream(
      session,
      connectHeaders(`${BLOB_HOST}:80`, { baggage: 'k8s.cluster.name=cluster1,k8s.namespace.name=sample,k8s.deployment.name=curl,service.name=curl,service.version=v1', 'x-forwarded-network': 'network1' }),
    );
    assert.equal(status, 200);
    const reply = readAll(stream);
    stream.end(sent);
    // The endpoint only ends after the client's end reached it: the half-close crossed the gateway.
    assert.ok((await reply).equals(BLOB_REPLY), 'the client got exactly the bytes the endpoint sent');
    await waitFor('the endpoint to record the upload', () => blobReceived.length > before);
    assert.ok(blobReceived[before]?.equals(sent), 'the endpoint got exactly the bytes the client sent');

    // Baggage is the client's word: the labels come from its certificate (and the network, which the mesh knows).
    const labels = { reporter: 'destination', destination_service: BLOB_HOST, source_principal: CLIENT_IDENTITY, source_workload_namespace: 'sample', source_cluster: 'network:network1', source_workload: 'unknown', destination_workload: 'blob-1' };
    await waitFor('the connection to be closed in the metrics', async () => (await metricValue(metrics.proxy, 'istio_tcp_connections_closed_total', labels)) === 1);
    assert.equal(await metricValue(metrics.proxy, 'istio_tcp_connections_opened_total', labels), 1);
    assert.equal(await metricValue(metrics.proxy, 'istio_tcp_received_bytes_total', labels), sent.length);
    assert.equal(await metricValue(metrics.proxy, 'istio_tcp_sent_bytes_total', labels), BLOB_REPLY.length);
    assert.equal(await metricValue(metrics.proxy, 'ambit_gateway_cross_network_connections_total', { source_network: 'network1', source_cluster: 'unknown', destination_service: BLOB_HOST }), 1);
    assert.ok(captured.lines.some((line) => line.msg === 'outer HBONE connection accepted' && line.peerIdentity === CLIENT_IDENTITY), 'the client identity is logged');
  });

  test('the cross-network metric says unknown when the client does not tell its network', async () => {
    const { session } = await outerSession();
    const { status, stream } = await connectStream(session, connectHeaders(`${MIRROR_HOST}:80`, { 'x-forwarded-network': 'not a label value!' }));
    assert.equal(status, 200);
    assert.deepEqual(await roundTrip(stream, Buffer.from('ping')), Buffer.from('ping'));
    stream.end();
    assert.equal(await metricValue(metrics.proxy, 'ambit_gateway_cross_network_connections_total', { source_network: 'unknown', source_cluster: 'unknown', destination_service: MIRROR_HOST }), 1);
  });

  test('an unknown host, an unknown port or an address is answered 400', async () => {
    const { session } = await outerSession();
    const unknownHost = await connectStream(session, connectHeaders('nope.sample.svc.cluster.local:80'));
    assert.equal(unknownHost.status, 400);
    assert.match(unknownHost.body, /unknown service nope\.sample\.svc\.cluster\.local/);
    const unknownPort = await connectStream(session, connectHeaders(`${BLOB_HOST}:9090`));
    assert.equal(unknownPort.status, 400);
    assert.match(unknownPort.body, /unknown service port/);
    const address = await connectStream(session, connectHeaders(`${BLOB_IP}:80`));
    assert.equal(address.status, 400);
    assert.match(address.body, /only forwards to <service hostname>:<port>/);
    assert.equal(await metricValue(metrics.proxy, 'ambit_hbone_rejected_streams_total', { code: '400', reason: 'unknown_service' }), 2);
  });

  test('a service without a healthy endpoint on this network is answered 503', async () => {
    const { session } = await outerSession();
    const ghost = await connectStream(session, connectHeaders(`${GHOST_HOST}:80`));
    assert.equal(ghost.status, 503);
    assert.match(ghost.body, /no healthy endpoint on network network2 for service sample\/ghost\.sample\.svc\.cluster\.local port 80: 1 unhealthy, 1 on network network1/);
    assert.equal(await metricValue(metrics.proxy, 'ambit_hbone_rejected_streams_total', { code: '503', reason: 'no_healthy_endpoint' }), 1);
  });

  test('an endpoint that cannot be reached is answered 503', async () => {
    const { session } = await outerSession();
    const down = await connectStream(session, connectHeaders(`${DOWN_HOST}:80`));
    assert.equal(down.status, 503);
    assert.equal(down.body.trim(), `an endpoint of service sample/${DOWN_HOST} is unreachable`);
    assert.ok(!down.body.includes(DOWN_IP), 'the answer does not name the endpoint address');
    assert.equal(await metricValue(metrics.proxy, 'istio_tcp_connections_opened_total', { destination_service: DOWN_HOST, response_flags: 'CONNECT' }), 1);
  });

  test('anything but CONNECT is answered 400', async () => {
    const { session } = await outerSession();
    const get = await connectStream(session, { ':method': 'GET', ':path': '/', ':authority': `${BLOB_HOST}:80` });
    assert.equal(get.status, 400);
    assert.match(get.body, /only CONNECT requests, got "GET"/);
  });

  test('a client certificate from another CA is refused as an untrusted peer certificate', async () => {
    const stranger = await issueCertificate(otherCa, CLIENT_IDENTITY);
    const failuresBefore = await metricValue(metrics.proxy, 'ambit_hbone_handshake_failures_total', { reason: 'untrusted_peer_certificate' });
    const tls = await tlsTo(gateway.port(), { pair: { certPem: stranger.certChainPem, keyPem: stranger.keyPem } });
    await closed(tls);
    await waitFor('the refusal to be logged', () => captured.lines.some((line) => line.msg === 'untrusted peer certificate' && /does not chain to the mesh roots/.test(String(line.reason))));
    assert.equal(await metricValue(metrics.proxy, 'ambit_hbone_handshake_failures_total', { reason: 'untrusted_peer_certificate' }), failuresBefore + 1);

    const noSpiffe = await issueLeaf(ca, { commonName: 'not-a-workload', dnsNames: ['example.com'], client: true });
    await closed(await tlsTo(gateway.port(), { pair: noSpiffe }));
    await waitFor('the SAN refusal to be logged', () => captured.lines.some((line) => line.msg === 'untrusted peer certificate' && /no SPIFFE URI SAN/.test(String(line.reason))));

    await closed(await tlsTo(gateway.port()));
    await waitFor('the missing certificate to be counted', async () => (await metricValue(metrics.proxy, 'ambit_hbone_handshake_failures_total', { reason: 'missing_peer_certificate' })) === 1);
  });

  test('garbage and HTTP/1 on the port do not disturb the gateway', async () => {
    const tlsErrorsBefore = await metricValue(metrics.proxy, 'ambit_hbone_handshake_failures_total', { reason: 'tls_error' });
    for (const payload of [randomBytes(4096), Buffer.from('GET / HTTP/1.1\r\nHost: gateway\r\n\r\n'), Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01])]) {
      const socket = netConnect({ host: '127.0.0.1', port: gateway.port() });
      openSockets.add(socket);
      socket.on('error', () => undefined);
      socket.end(payload);
      await closed(socket);
    }
    // A TLS client that does not speak h2.
    const http1 = tlsConnect({ host: '127.0.0.1', port: gateway.port(), ca: ca.certPem, cert: clientPair.certPem, key: clientPair.keyPem, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined });
    http1.on('error', () => undefined);
    await closed(http1);
    await waitFor('the bad handshakes to be counted', async () => (await metricValue(metrics.proxy, 'ambit_hbone_handshake_failures_total', { reason: 'tls_error' })) >= tlsErrorsBefore + 2);
    await waitFor('the h2 refusal to be counted', async () => (await metricValue(metrics.proxy, 'ambit_hbone_handshake_failures_total', { reason: 'not_h2' })) === 1);

    const { session } = await outerSession();
    const { status, stream } = await connectStream(session, connectHeaders(`${MIRROR_HOST}:80`));
    assert.equal(status, 200, 'still serving');
    assert.deepEqual(await roundTrip(stream, Buffer.from('still here')), Buffer.from('still here'));
    stream.end();
  });

  test('a renewed certificate is served to new connections while existing streams run on', async () => {
    const first = await outerSession();
    const oldFingerprint = first.tls.getPeerCertificate().fingerprint256;
    const { stream } = await connectStream(first.session, connectHeaders(`${MIRROR_HOST}:80`));
    const before = randomBytes(64 * 1024);
    assert.ok((await roundTrip(stream, before)).equals(before));

    const renewed = await certificates.renew(GATEWAY_IDENTITY);
    assert.equal(gateway.currentCertificate()?.certChainPem, renewed.certChainPem);
    const afterSwap = randomBytes(64 * 1024);
    assert.ok((await roundTrip(stream, afterSwap)).equals(afterSwap), 'the stream opened before the swap still carries data');

    const second = await outerSession();
    const newFingerprint = second.tls.getPeerCertificate().fingerprint256;
    assert.notEqual(newFingerprint, oldFingerprint);
    assert.equal(newFingerprint, new X509Certificate(renewed.certChainPem).fingerprint256, 'a new connection gets the renewed certificate');
    const fresh = await connectStream(second.session, connectHeaders(`${MIRROR_HOST}:80`));
    assert.equal(fresh.status, 200);
    fresh.stream.end();
    stream.end();
  });

  test('with a required trust domain, identities from other trust domains are refused', async () => {
    const strict = await startGateway({ requiredTrustDomain: TRUST_DOMAIN });
    const foreign = await issueCertificate(ca, 'spiffe://elsewhere.example/ns/sample/sa/curl');
    await closed(await tlsTo(strict.gateway.port(), { pair: { certPem: foreign.certChainPem, keyPem: foreign.keyPem } }));
    await waitFor('the refusal to be logged', () =>
      strict.captured.lines.some((line) => line.msg === 'untrusted peer certificate' && /is not in trust domain cluster\.local/.test(String(line.reason))),
    );
    const { session } = await outerSession(strict.gateway.port());
    const { status, stream } = await connectStream(session, connectHeaders(`${MIRROR_HOST}:80`));
    assert.equal(status, 200, 'our own trust domain is served');
    stream.end();
  });

  test('stopping sends GOAWAY and lets open streams finish', async () => {
    const draining = await startGateway();
    const { session } = await outerSession(draining.gateway.port());
    const { stream } = await connectStream(session, connectHeaders(`${MIRROR_HOST}:80`));
    assert.ok(draining.gateway.ready);
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
    let stopped = false;
    const stopping = draining.gateway.stop({ drainTimeoutMs: 60_000 }).then(() => {
      stopped = true;
    });
    await goaway;
    assert.equal(draining.gateway.ready, false, 'not ready while draining');
    assert.deepEqual(await roundTrip(stream, Buffer.from('draining')), Buffer.from('draining'), 'the open stream still works');
    assert.equal(stopped, false, 'stop waits for the open stream');
    stream.end();
    await stopping;
    assert.equal(draining.captured.lines.find((line) => line.msg === 'gateway HBONE listener stopped')?.cutSessions, 0, 'nothing had to be cut');
  });
});
