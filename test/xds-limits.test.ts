// xDS server bounds on a real gRPC server: who may subscribe, unknown types, names, streams per peer, backpressure, cancelled authentication.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { credentials, makeGenericClientConstructor, Metadata, Server, ServerCredentials, status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { aggregatedDiscoveryService } from '../src/api/grpc.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../src/api/resources.js';
import { CertificateAuthorizer, cachedPodDirectory, type TokenReviewer } from '../src/controlplane/ca/authorize.js';
import { XdsAccessPolicy, xdsAuthenticator } from '../src/controlplane/xds/access.js';
import { createXdsMetrics } from '../src/controlplane/xds/metrics.js';
import { ResourceCache } from '../src/controlplane/xds/resource-cache.js';
import { DeltaXdsServer, type DeltaXdsServerOptions } from '../src/controlplane/xds/server.js';
import { DeltaDiscoveryRequestSchema, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse } from '../src/gen/envoy/discovery/discovery_pb.js';
import { createRootCa, issueLeaf } from '../src/util/pki.js';

const SERVER_NAME = 'ambit-controlplane.istio-system.svc';
const silent = pino({ level: 'silent' });
const AdsClient = makeGenericClientConstructor(aggregatedDiscoveryService, 'AggregatedDiscoveryService');
type Stream = ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

let rootPem = '';
let serverCert = { certPem: '', keyPem: '' };
const cleanups: Array<() => void> = [];

before(async () => {
  const ca = await createRootCa('test root');
  rootPem = ca.certPem;
  serverCert = await issueLeaf(ca, { commonName: SERVER_NAME, dnsNames: [SERVER_NAME], server: true });
});
after(() => cleanups.forEach((c) => c()));

interface Harness {
  port: number;
  registry: Registry;
  xds: DeltaXdsServer;
  open(metadata?: Record<string, string>): Stream;
}

async function start(cache: ResourceCache, options: Partial<DeltaXdsServerOptions> = {}): Promise<Harness> {
  const registry = new Registry();
  const server = new Server();
  const xds = new DeltaXdsServer({ cache, log: silent, metrics: createXdsMetrics(registry), ...options });
  server.addService(aggregatedDiscoveryService, xds.handlers());
  const tls = ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serverCert.keyPem), cert_chain: Buffer.from(serverCert.certPem) }], false);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', tls, (err, p) => (err ? reject(err) : resolve(p))));
  const client = new AdsClient(`127.0.0.1:${port}`, credentials.createSsl(Buffer.from(rootPem)), { 'grpc.ssl_target_name_override': SERVER_NAME });
  cleanups.push(() => (client.close(), server.forceShutdown()));
  return {
    port,
    registry,
    xds,
    open: (fields = {}) => {
      const metadata = new Metadata();
      for (const [k, v] of Object.entries(fields)) metadata.set(k, v);
      const stream = (client as unknown as { deltaAggregatedResources(m: Metadata): Stream }).deltaAggregatedResources(metadata);
      stream.on('error', () => undefined);
      return stream;
    },
  };
}

const request = (typeUrl: string, extra: MessageInitShape<typeof DeltaDiscoveryRequestSchema> = {}) => create(DeltaDiscoveryRequestSchema, { typeUrl, ...extra });

function nextResponse(stream: Stream, timeoutMs = 5000): Promise<DeltaDiscoveryResponse> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no response')), timeoutMs);
    stream.once('data', (r: DeltaDiscoveryResponse) => (clearTimeout(timer), resolve(r)));
  });
}

function statusOf(stream: Stream, timeoutMs = 5000): Promise<{ code: number; details: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('stream did not end')), timeoutMs);
    stream.on('error', (err: ServiceError) => (clearTimeout(timer), resolve({ code: err.code, details: err.details })));
  });
}

async function metricValue(registry: Registry, name: string): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? []).reduce((sum, v) => sum + Number(v.value), 0);
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function fakeJwt(name: string): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'RS256' })}.${encode({ sub: name })}.c2ln`;
}

describe('who may subscribe', () => {
  const accounts: Record<string, string> = { ztunnel: 'system:serviceaccount:istio-system:ztunnel', cart: 'system:serviceaccount:shop:cart', gw: 'system:serviceaccount:net:eastwest' };
  const reviewer: TokenReviewer = {
    review: async (token, audiences) => {
      const name = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub as string;
      return accounts[name] ? { authenticated: true, username: accounts[name], audiences } : { authenticated: false, error: 'invalid' };
    },
  };
  const authorizer = new CertificateAuthorizer({ trustDomain: 'cluster.local', clusterName: 'c1', systemNamespace: 'istio-system', tokenReviewer: reviewer, pods: cachedPodDirectory(() => []) });
  const access = new XdsAccessPolicy({ systemNamespace: 'istio-system', isGatewayServiceAccount: (ns, name) => ns === 'net' && name === 'eastwest' });
  const authenticate = xdsAuthenticator({ authenticate: (m) => authorizer.authenticate(m), access });

  test('a workload service account is refused with PERMISSION_DENIED; node proxies and gateways get the mesh', async () => {
    const cache = new ResourceCache({ debounceMs: 1 });
    cache.set(ADDRESS_TYPE_URL, 'w', Uint8Array.of(1));
    cache.flush();
    const h = await start(cache, { authenticate });
    const workload = h.open({ authorization: `Bearer ${fakeJwt('cart')}` });
    workload.write(request(ADDRESS_TYPE_URL));
    const refused = await statusOf(workload);
    assert.equal(refused.code, status.PERMISSION_DENIED);
    assert.match(refused.details, /service account shop\/cart may not subscribe to xDS: only node proxies \(istio-system\/ztunnel\), the east-west, ingress and waypoint gateways/);

    for (const who of ['ztunnel', 'gw']) {
      const stream = h.open({ authorization: `Bearer ${fakeJwt(who)}` });
      const first = nextResponse(stream);
      stream.write(request(ADDRESS_TYPE_URL));
      assert.deepEqual((await first).resources.map((r) => r.name), ['w'], `${who} gets the state`);
      stream.cancel();
    }
  });

  test('a peer may only subscribe to the types of its role', async () => {
    const h = await start(new ResourceCache(), { authenticate: async () => ({ name: 'p', types: new Set([ADDRESS_TYPE_URL]) }) });
    const stream = h.open();
    stream.write(request(AUTHORIZATION_TYPE_URL));
    const ended = await statusOf(stream);
    assert.equal(ended.code, status.PERMISSION_DENIED);
    assert.match(ended.details, /may not subscribe to type\.googleapis\.com\/istio\.security\.Authorization/);
  });
});

describe('bounds', () => {
  test('unknown type URLs get nothing and create no state and no metric series', async () => {
    const cache = new ResourceCache({ debounceMs: 1 });
    cache.set(ADDRESS_TYPE_URL, 'w', Uint8Array.of(1));
    cache.flush();
    const h = await start(cache);
    const stream = h.open();
    let responses = 0;
    stream.on('data', () => responses++);
    const seriesBefore = (await h.registry.metrics()).split('\n').filter((l) => l.startsWith('ambit_xds')).length;
    for (let i = 0; i < 20_000; i++) stream.write(request(`type.googleapis.com/junk.T${i}`, { responseNonce: `n${i}` }));
    stream.write(request(ADDRESS_TYPE_URL));
    await until('the known type answered', () => responses > 0, 20_000);
    assert.equal(responses, 1, 'only the known type got a response');
    assert.equal(await metricValue(h.registry, 'ambit_xds_ignored_requests_total'), 20_000);
    const lines = (await h.registry.metrics()).split('\n').filter((l) => l.startsWith('ambit_xds'));
    assert.ok(lines.length <= seriesBefore + 4, `metric series grew from ${seriesBefore} to ${lines.length}`);
    assert.equal(cache.all('type.googleapis.com/junk.T1').size, 0);
    stream.cancel();
  });

  test('a subscription naming too many resources ends the stream with RESOURCE_EXHAUSTED', async () => {
    const h = await start(new ResourceCache(), { limits: { maxNamesPerSubscription: 100 } });
    const names = h.open();
    names.write(request(ADDRESS_TYPE_URL, { resourceNamesSubscribe: Array.from({ length: 101 }, (_, i) => `n${i}`) }));
    const ended = await statusOf(names);
    assert.equal(ended.code, status.RESOURCE_EXHAUSTED);
    assert.match(ended.details, /names more than 100 resources/);

    const versions = h.open();
    versions.write(request(ADDRESS_TYPE_URL, { initialResourceVersions: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`n${i}`, 'v'])) }));
    assert.equal((await statusOf(versions)).code, status.RESOURCE_EXHAUSTED);
  });

  test('streams per peer are bounded; a closed stream frees its place', async () => {
    const h = await start(new ResourceCache(), { authenticate: async () => ({ name: 'istio-system/ztunnel-x' }), limits: { maxStreamsPerPeer: 3 } });
    const streams = Array.from({ length: 3 }, () => h.open());
    for (const s of streams) {
      const first = nextResponse(s);
      s.write(request(ADDRESS_TYPE_URL));
      await first;
    }
    const fourth = h.open();
    fourth.write(request(ADDRESS_TYPE_URL));
    const refused = await statusOf(fourth);
    assert.equal(refused.code, status.RESOURCE_EXHAUSTED);
    assert.match(refused.details, /istio-system\/ztunnel-x already has 3 open xDS streams/);
    streams[0]!.cancel();
    await until('the stream to be forgotten', () => (h.xds.openStreams().get('istio-system/ztunnel-x') ?? 0) === 2);
    const again = h.open();
    const response = nextResponse(again);
    again.write(request(ADDRESS_TYPE_URL));
    await response;
    for (const s of [...streams, again]) s.cancel();
  });

  test('calls cancelled during authentication leave no stream, listener or gauge behind', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const authenticated: string[] = [];
    const cache = new ResourceCache({ debounceMs: 1 });
    const h = await start(cache, {
      authenticate: async () => {
        await gate;
        authenticated.push('x');
        return { name: `peer-${authenticated.length}` };
      },
    });
    const calls = Array.from({ length: 200 }, () => h.open());
    for (const c of calls) c.write(request(ADDRESS_TYPE_URL));
    await new Promise((r) => setTimeout(r, 200));
    for (const c of calls) c.cancel();
    await new Promise((r) => setTimeout(r, 200));
    release();
    await until('every authentication to finish', () => authenticated.length === 200);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await metricValue(h.registry, 'ambit_xds_connected_clients'), 0);
    assert.equal(h.xds.openStreams().size, 0);
    // A change reaches no listener: nothing was subscribed.
    cache.set(ADDRESS_TYPE_URL, 'w', Uint8Array.of(1));
    cache.flush();
    assert.equal(await metricValue(h.registry, 'ambit_xds_pushes_total'), 0);
  });

  test('a client that does not read gets no more pushes until it drains, then the latest versions', async () => {
    const cache = new ResourceCache({ debounceMs: 1, maxDelayMs: 2 });
    const big = (round: number, i: number) => Buffer.alloc(20_000, (round * 31 + i) % 251);
    for (let i = 0; i < 200; i++) cache.set(ADDRESS_TYPE_URL, `w${i}`, big(0, i));
    cache.flush();
    const h = await start(cache, { limits: { maxQueuedBytes: 1024 * 1024 } });
    const stream = h.open();
    const received = new Map<string, string>();
    let responses = 0;
    stream.on('data', (r: DeltaDiscoveryResponse) => {
      responses++;
      for (const resource of r.resources) received.set(resource.name, resource.version);
    });
    const first = new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.write(request(ADDRESS_TYPE_URL));
    await first;
    stream.pause(); // stop reading: HTTP/2 flow control fills up, the server's writes back up
    const pushesBefore = await metricValue(h.registry, 'ambit_xds_pushes_total');
    for (let round = 1; round <= 50; round++) {
      for (let i = 0; i < 200; i++) cache.set(ADDRESS_TYPE_URL, `w${i}`, big(round, i));
      cache.flush();
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 300));
    const pushedWhilePaused = (await metricValue(h.registry, 'ambit_xds_pushes_total')) - pushesBefore;
    // 50 rounds of 200 × 20 KB = 200 MB of pushes if the writes were queued; the transport takes a few MB.
    assert.ok(pushedWhilePaused < 50, `${pushedWhilePaused} pushes queued to a client that does not read`);
    stream.resume();
    await until('the client to hold the latest version of everything', () =>
      [...Array(200).keys()].every((i) => received.get(`w${i}`) === cache.get(ADDRESS_TYPE_URL, `w${i}`)!.version),
    20_000);
    assert.ok(responses < 60, `${responses} responses: the changes held back were coalesced`);
    stream.cancel();
  });

  test('before the first sync a stream is held open and answered only once the state is complete', async () => {
    let synced!: () => void;
    const ready = new Promise<void>((resolve) => (synced = resolve));
    const cache = new ResourceCache({ debounceMs: 1 });
    const h = await start(cache, { ready });
    const stream = h.open();
    let first: DeltaDiscoveryResponse | undefined;
    stream.once('data', (r: DeltaDiscoveryResponse) => (first = r));
    stream.write(request(ADDRESS_TYPE_URL));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(first, undefined, 'nothing is sent before the sync: an empty answer would tell the proxy the mesh is empty');
    cache.set(ADDRESS_TYPE_URL, 'w', Uint8Array.of(1));
    cache.flush();
    synced();
    await until('the first response', () => first !== undefined);
    assert.deepEqual(first!.resources.map((r) => r.name), ['w']);
    stream.cancel();
  });
});
