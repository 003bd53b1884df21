// Per-name xDS access on a real gRPC server, fed by the real waypoint and route controllers over a fake API server: waypoints and ingresses read only their own resources.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { credentials, makeGenericClientConstructor, Metadata, Server, ServerCredentials, type ClientDuplexStream } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { aggregatedDiscoveryService } from '../src/api/grpc.js';
import { ADDRESS_TYPE_URL, ROUTE_TYPE_URL, WAYPOINT_TYPE_URL } from '../src/api/resources.js';
import { CertificateAuthorizer, cachedPodDirectory, type TokenReviewer } from '../src/controlplane/ca/authorize.js';
import { RouteController } from '../src/controlplane/routes/controller.js';
import { WaypointController } from '../src/controlplane/waypoints/controller.js';
import { XdsAccessPolicy, xdsAuthenticator } from '../src/controlplane/xds/access.js';
import { createXdsMetrics } from '../src/controlplane/xds/metrics.js';
import { ResourceCache } from '../src/controlplane/xds/resource-cache.js';
import { DeltaXdsServer, type XdsAuthenticator } from '../src/controlplane/xds/server.js';
import { DeltaDiscoveryRequestSchema, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse } from '../src/gen/envoy/discovery/discovery_pb.js';
import { createRootCa, issueLeaf } from '../src/util/pki.js';
import { WaypointConfig } from '../src/waypoint/config.js';
import { XdsClient } from '../src/ztunnel/xds/client.js';
import type { StateUpdates } from '../src/ztunnel/state/types.js';
import { fakeApiServer, kubeConfigFor, type FakeApiServer } from './helpers/fake-api-server.js';

const SERVER_NAME = 'ambit-controlplane.istio-system.svc';
const GATEWAYS = '/apis/gateway.networking.k8s.io/v1/gateways';
const silent = pino({ level: 'silent' });
const AdsClient = makeGenericClientConstructor(aggregatedDiscoveryService, 'AggregatedDiscoveryService');
type Stream = ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;
type Json = Record<string, unknown>;

const waypointGateway = (namespace: string, name: string): Json => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name, namespace, uid: `uid-${namespace}-${name}`, generation: 1 },
  spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
});
const meshGateway = (namespace: string, name: string, serviceAccount: string): Json => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name, namespace, uid: `uid-${namespace}-${name}`, generation: 1, annotations: { 'istio.io/service-account': serviceAccount } },
  spec: { gatewayClassName: 'istio-mesh' },
});
const ingressGateway = (namespace: string, name: string): Json => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name, namespace, uid: `uid-${namespace}-${name}`, generation: 1 },
  spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
});

/** Callers by token subject: the ServiceAccount each authenticates as. */
const ACCOUNTS: Record<string, string> = {
  'waypoint-a': 'system:serviceaccount:tenant-a:waypoint',
  'waypoint-b': 'system:serviceaccount:tenant-b:waypoint',
  productpage: 'system:serviceaccount:tenant-b:bookinfo-productpage',
  ingress: 'system:serviceaccount:istio-system:istio-ingressgateway-service-account',
  'web-ingress': 'system:serviceaccount:shop:web-istio',
  ztunnel: 'system:serviceaccount:istio-system:ztunnel',
};

function fakeJwt(subject: string): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'RS256' })}.${encode({ sub: subject, secret: 'token-body-never-logged' })}.c2ln`;
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw delta stream that records what it was sent: per type, the names it holds and every removal. */
class Recorder {
  readonly responses: DeltaDiscoveryResponse[] = [];
  readonly held = new Map<string, Set<string>>();
  readonly removals: string[] = [];
  constructor(readonly stream: Stream) {
    stream.on('data', (r: DeltaDiscoveryResponse) => {
      this.responses.push(r);
      let held = this.held.get(r.typeUrl);
      if (!held) this.held.set(r.typeUrl, (held = new Set()));
      for (const resource of r.resources) held.add(resource.name);
      for (const name of r.removedResources) {
        held.delete(name);
        this.removals.push(name);
      }
      stream.write(create(DeltaDiscoveryRequestSchema, { typeUrl: r.typeUrl, responseNonce: r.nonce }));
    });
  }
  names(typeUrl: string): string[] {
    return [...(this.held.get(typeUrl) ?? [])].sort();
  }
  subscribe(typeUrl: string, extra: MessageInitShape<typeof DeltaDiscoveryRequestSchema> = {}): Promise<void> {
    const answered = this.responses.length;
    this.stream.write(create(DeltaDiscoveryRequestSchema, { typeUrl, ...extra }));
    return until(`the first response to ${typeUrl}`, () => this.responses.slice(answered).some((r) => r.typeUrl === typeUrl));
  }
}

interface Plane {
  api: FakeApiServer;
  cache: ResourceCache;
  registry: Registry;
  lines: Json[];
  port: number;
  /** A stream authenticated as `subject`; with `unscoped`, one on a server whose peers have no name scope (the negative control). */
  open(subject: string, unscoped?: boolean): Recorder;
}

let rootPem = '';
let serverCert = { certPem: '', keyPem: '' };
const cleanups: Array<() => void | Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

before(async () => {
  const ca = await createRootCa('test root');
  rootPem = ca.certPem;
  serverCert = await issueLeaf(ca, { commonName: SERVER_NAME, dnsNames: [SERVER_NAME], server: true });
});

async function startPlane(gateways: Json[]): Promise<Plane> {
  const api = await fakeApiServer(
    {
      [GATEWAYS]: gateways,
      '/apis/gateway.networking.k8s.io/v1/httproutes': [],
      '/apis/gateway.networking.k8s.io/v1/gatewayclasses': [],
      '/apis/networking.istio.io/v1/gateways': [],
      '/apis/networking.istio.io/v1/virtualservices': [],
      '/apis/security.istio.io/v1/authorizationpolicies': [],
    },
    new Set(['test-token']),
  );
  const kube = kubeConfigFor(api.url, api.caPem);
  const cache = new ResourceCache({ debounceMs: 5, maxDelayMs: 20 });
  const registry = new Registry();
  const workload = { clusterId: 'cluster1', trustDomain: 'cluster.local', systemNamespace: 'istio-system', image: 'ambit/ambit:test', imagePullPolicy: 'IfNotPresent' };
  // The grant reads the controllers declared below; it is only asked once streams open.
  const access: XdsAccessPolicy = new XdsAccessPolicy({
    systemNamespace: 'istio-system',
    isGatewayServiceAccount: () => false,
    ingressRoutes: (ns, sa) => routes.ingressRoutesOf(ns, sa),
    waypointResources: (ns, sa) => waypoints.waypointResourcesOf(ns, sa),
  });
  const waypoints = new WaypointController({ kube, cache, network: '', domainSuffix: 'cluster.local', workload, addresses: () => new Map(), registry, log: silent, onAccessChanged: () => access.changed() });
  const routes = new RouteController({ kube, cache, systemNamespace: 'istio-system', network: '', workload, serviceExists: () => false, log: silent, registry, onAccessChanged: () => access.changed() });
  const reviewer: TokenReviewer = {
    review: async (token, audiences) => {
      const subject = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub as string;
      return ACCOUNTS[subject] ? { authenticated: true, username: ACCOUNTS[subject], audiences } : { authenticated: false, error: 'invalid' };
    },
  };
  const authorizer = new CertificateAuthorizer({ trustDomain: 'cluster.local', clusterName: 'cluster1', systemNamespace: 'istio-system', tokenReviewer: reviewer, pods: cachedPodDirectory(() => []) });
  const authenticate = xdsAuthenticator({ authenticate: (m) => authorizer.authenticate(m), access });
  const lines: Json[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Json) });
  const unscoped: XdsAuthenticator = async (metadata) => {
    const peer = await authenticate(metadata);
    return { name: peer.name, ...(peer.types ? { types: peer.types } : {}) };
  };
  const serve = async (auth: XdsAuthenticator) => {
    const server = new Server();
    const xds = new DeltaXdsServer({ cache, log, metrics: createXdsMetrics(auth === authenticate ? registry : new Registry()), authenticate: auth });
    server.addService(aggregatedDiscoveryService, xds.handlers());
    const tls = ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serverCert.keyPem), cert_chain: Buffer.from(serverCert.certPem) }], false);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', tls, (err, p) => (err ? reject(err) : resolve(p))));
    const client = new AdsClient(`127.0.0.1:${port}`, credentials.createSsl(Buffer.from(rootPem)), { 'grpc.ssl_target_name_override': SERVER_NAME });
    cleanups.push(() => (client.close(), server.forceShutdown()));
    return { port, client };
  };
  const scoped = await serve(authenticate);
  const control = await serve(unscoped);
  waypoints.start();
  routes.start();
  cleanups.push(async () => {
    await waypoints.stop();
    await routes.stop();
    await api.close();
  });
  const open = (subject: string, withoutScope = false): Recorder => {
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${fakeJwt(subject)}`);
    const client = (withoutScope ? control : scoped).client as unknown as { deltaAggregatedResources(m: Metadata): Stream };
    const stream = client.deltaAggregatedResources(metadata);
    stream.on('error', () => undefined);
    cleanups.push(() => stream.cancel());
    return new Recorder(stream);
  };
  // The controllers have listed the Gateways and published their resources.
  await until('the informers to watch', () => api.watching(GATEWAYS));
  await until('the resources of the listed Gateways', () => cache.all(WAYPOINT_TYPE_URL).size >= gateways.filter((g) => (g.spec as Json).gatewayClassName !== 'istio').length);
  return { api, cache, registry, lines, port: scoped.port, open };
}

async function refusedNames(registry: Registry, labels: Record<string, string>): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'ambit_xds_refused_resource_names_total');
  return (metric?.values ?? []).filter((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value)).reduce((sum, v) => sum + Number(v.value), 0);
}

describe('waypoints read only their own Waypoint resource', () => {
  let plane: Plane;
  before(async () => {
    plane = await startPlane([waypointGateway('tenant-a', 'waypoint'), waypointGateway('tenant-b', 'waypoint'), meshGateway('tenant-b', 'productpage', 'bookinfo-productpage')]);
  });

  test("by name: A gets its own, not B's; B gets B's (the resource exists and is served by name)", async () => {
    const a = plane.open('waypoint-a');
    await a.subscribe(WAYPOINT_TYPE_URL, { resourceNamesSubscribe: ['tenant-b/waypoint'] });
    await a.subscribe(WAYPOINT_TYPE_URL, { resourceNamesSubscribe: ['tenant-a/waypoint'] });
    await until("A's own resource", () => a.names(WAYPOINT_TYPE_URL).includes('tenant-a/waypoint'));
    await pause(100);
    assert.deepEqual(a.names(WAYPOINT_TYPE_URL), ['tenant-a/waypoint']);
    assert.ok(a.responses.every((r) => r.resources.every((res) => res.name !== 'tenant-b/waypoint')), "B's resource was never sent to A");

    const b = plane.open('waypoint-b');
    await b.subscribe(WAYPOINT_TYPE_URL, { resourceNamesSubscribe: ['tenant-b/waypoint'] });
    assert.deepEqual(b.names(WAYPOINT_TYPE_URL), ['tenant-b/waypoint'], 'negative control: the name A asked for is served to its owner');
  });

  test('the refusal is counted by type and reason and logged with the caller identity and the name, never the token', async () => {
    assert.ok((await refusedNames(plane.registry, { type: 'Waypoint', reason: 'not_permitted' })) >= 1);
    const line = plane.lines.find((l) => l.msg === 'xds subscription to a resource the caller may not read: not sent');
    assert.ok(line, 'a log line for the refused name');
    assert.equal(line.identity, 'spiffe://cluster.local/ns/tenant-a/sa/waypoint');
    assert.equal(line.name, 'tenant-b/waypoint');
    assert.equal(line.typeUrl, WAYPOINT_TYPE_URL);
    const all = plane.lines.map((l) => JSON.stringify(l)).join('\n');
    assert.ok(!all.includes(fakeJwt('waypoint-a').split('.')[1]!) && !all.includes('token-body-never-logged'), 'no token contents in the logs');
  });

  test("by wildcard each waypoint gets only its own; seed 004's istio-mesh waypoint runs as the annotated account; an unscoped server would send all (control)", async () => {
    assert.deepEqual([...plane.cache.all(WAYPOINT_TYPE_URL).keys()].sort(), ['tenant-a/waypoint', 'tenant-b/productpage', 'tenant-b/waypoint']);
    const expected: Record<string, string[]> = { 'waypoint-a': ['tenant-a/waypoint'], 'waypoint-b': ['tenant-b/waypoint'], productpage: ['tenant-b/productpage'] };
    for (const [who, names] of Object.entries(expected)) {
      const stream = plane.open(who);
      await stream.subscribe(WAYPOINT_TYPE_URL);
      assert.deepEqual(stream.names(WAYPOINT_TYPE_URL), names, who);
    }
    const control = plane.open('waypoint-a', true);
    await control.subscribe(WAYPOINT_TYPE_URL);
    assert.deepEqual(control.names(WAYPOINT_TYPE_URL), ['tenant-a/waypoint', 'tenant-b/productpage', 'tenant-b/waypoint'], 'negative control: without a name scope the wildcard delivers every waypoint');
  });

  test("initial_resource_versions naming another tenant's waypoint gets it removed, not kept", async () => {
    const a = plane.open('waypoint-a');
    await a.subscribe(WAYPOINT_TYPE_URL, { initialResourceVersions: { 'tenant-b/waypoint': 'v-old' } });
    assert.deepEqual(a.removals, ['tenant-b/waypoint']);
    assert.deepEqual(a.names(WAYPOINT_TYPE_URL), ['tenant-a/waypoint']);
  });

  test('a waypoint Gateway created after the proxy connected is readable without reconnecting; deleted or moved to another account, it is removed', async () => {
    const wildcard = plane.open('waypoint-a');
    await wildcard.subscribe(WAYPOINT_TYPE_URL);
    const byName = plane.open('waypoint-a');
    await byName.subscribe(WAYPOINT_TYPE_URL, { resourceNamesSubscribe: ['tenant-a/waypoint', 'tenant-a/reviews'] });
    await pause(100);
    assert.deepEqual([wildcard.names(WAYPOINT_TYPE_URL), byName.names(WAYPOINT_TYPE_URL)], [['tenant-a/waypoint'], ['tenant-a/waypoint']]);

    // An istio-mesh Gateway whose Deployment runs as tenant-a's `waypoint` account.
    plane.api.emit(GATEWAYS, 'ADDED', meshGateway('tenant-a', 'reviews', 'waypoint'));
    for (const stream of [wildcard, byName]) await until('the new Gateway to be delivered', () => stream.names(WAYPOINT_TYPE_URL).includes('tenant-a/reviews'));
    assert.equal(wildcard.responses.length > 1 && byName.responses.length > 1, true);

    // The Gateway now names another account: the resource stays in the cache, tenant-a's proxy loses it.
    const removedBefore = await refusedNames(plane.registry, { type: 'Waypoint', reason: 'revoked' });
    plane.api.emit(GATEWAYS, 'MODIFIED', meshGateway('tenant-a', 'reviews', 'reviews'));
    for (const stream of [wildcard, byName]) await until('the removal of the moved Gateway', () => !stream.names(WAYPOINT_TYPE_URL).includes('tenant-a/reviews'));
    assert.ok(plane.cache.get(WAYPOINT_TYPE_URL, 'tenant-a/reviews'), 'the resource still exists: it was access that went');
    assert.ok(byName.removals.includes('tenant-a/reviews') && wildcard.removals.includes('tenant-a/reviews'));
    assert.ok((await refusedNames(plane.registry, { type: 'Waypoint', reason: 'revoked' })) >= removedBefore + 2);

    // Back to tenant-a's account, then deleted.
    plane.api.emit(GATEWAYS, 'MODIFIED', meshGateway('tenant-a', 'reviews', 'waypoint'));
    await until('the Gateway back', () => byName.names(WAYPOINT_TYPE_URL).includes('tenant-a/reviews'));
    plane.api.emit(GATEWAYS, 'DELETED', meshGateway('tenant-a', 'reviews', 'waypoint'));
    await until('the removal of the deleted Gateway', () => !byName.names(WAYPOINT_TYPE_URL).includes('tenant-a/reviews'));
    assert.deepEqual(byName.names(WAYPOINT_TYPE_URL), ['tenant-a/waypoint']);
  });

  test('the waypoint proxy\'s own client (WaypointConfig by name over XdsClient) still gets its configuration', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-xds-names-'));
    const tokenPath = join(dir, 'token');
    writeFileSync(tokenPath, fakeJwt('waypoint-b'));
    const config = new WaypointConfig('tenant-b/waypoint', silent);
    const state: StateUpdates = { applyAddresses: () => undefined, applyAuthorizations: () => undefined, onChange: () => undefined };
    const client = new XdsClient({ address: `127.0.0.1:${plane.port}`, rootsPem: () => rootPem, serverName: SERVER_NAME, tokenPath, clusterId: 'cluster1', nodeId: 'waypoint~test', state, log: silent, backoff: { initialMs: 100, maxMs: 500 }, extraTypes: [config.subscription()] });
    cleanups.push(() => client.stop());
    client.start();
    await until('the waypoint configuration', () => config.resource?.name === 'waypoint' && config.resource.namespace === 'tenant-b');
  });
});

describe('ingresses read only their own routes', () => {
  let plane: Plane;
  before(async () => {
    plane = await startPlane([ingressGateway('shop', 'web')]);
    await until('both RouteConfigs', () => plane.cache.all(ROUTE_TYPE_URL).size === 2);
  });

  test("the install's ingress and a class-istio Gateway's ingress each get only their own RouteConfig, by name and by wildcard", async () => {
    assert.deepEqual([...plane.cache.all(ROUTE_TYPE_URL).keys()].sort(), ['istio-system/istio-ingressgateway', 'shop/web-istio']);
    const ingress = plane.open('ingress');
    await ingress.subscribe(ROUTE_TYPE_URL, { resourceNamesSubscribe: ['istio-system/istio-ingressgateway', 'shop/web-istio'] });
    await pause(100);
    assert.deepEqual(ingress.names(ROUTE_TYPE_URL), ['istio-system/istio-ingressgateway']);
    assert.ok((await refusedNames(plane.registry, { type: 'RouteConfig', reason: 'not_permitted' })) >= 1);

    const web = plane.open('web-ingress');
    await web.subscribe(ROUTE_TYPE_URL);
    assert.deepEqual(web.names(ROUTE_TYPE_URL), ['shop/web-istio']);

    const control = plane.open('ingress', true);
    await control.subscribe(ROUTE_TYPE_URL);
    assert.deepEqual(control.names(ROUTE_TYPE_URL), ['istio-system/istio-ingressgateway', 'shop/web-istio'], 'negative control: without a name scope both are sent');
  });

  test('a ztunnel may still not subscribe to routes at all, and addresses are not filtered by name', async () => {
    const ztunnel = plane.open('ztunnel');
    const ended = new Promise<number>((resolve) => ztunnel.stream.on('error', (err: { code: number }) => resolve(err.code)));
    ztunnel.stream.write(create(DeltaDiscoveryRequestSchema, { typeUrl: ROUTE_TYPE_URL }));
    assert.equal(await ended, 7, 'PERMISSION_DENIED');

    plane.cache.set(ADDRESS_TYPE_URL, 'cluster1//Pod/other-tenant/p', Uint8Array.of(1));
    const ingress = plane.open('ingress');
    await ingress.subscribe(ADDRESS_TYPE_URL);
    assert.deepEqual(ingress.names(ADDRESS_TYPE_URL), ['cluster1//Pod/other-tenant/p']);
  });
});
