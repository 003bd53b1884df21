import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import {
  LoadBalancingSchema,
  LocalitySchema,
  LoadBalancing_HealthPolicy,
  LoadBalancing_Mode,
  LoadBalancing_Scope,
  NetworkMode,
  ServiceSchema,
  TunnelProtocol,
  WorkloadSchema,
  WorkloadStatus,
  type Service,
  type Workload,
} from '../src/gen/istio/workload/workload_pb.js';
import { Action, AuthorizationSchema, MatchSchema, Scope, type Authorization, type Match } from '../src/gen/istio/security/authorization_pb.js';
import { ipToBytes } from '../src/api/ip.js';
import { pino } from 'pino';
import { ZtunnelState } from '../src/ztunnel/state/store.js';
import { routingRank } from '../src/ztunnel/state/load-balancer.js';
import type { Endpoint } from '../src/ztunnel/state/endpoints.js';
import { StateUpdateError } from '../src/ztunnel/state/validation.js';
import type { Resolution, Upstream } from '../src/ztunnel/state/types.js';

const NETWORK = 'network1';
const NODE = 'node-a';
const SYSTEM_NAMESPACE = 'istio-system';

/** Deterministic PRNG (mulberry32) so load-balancing tests are repeatable. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function newState(random: () => number = seededRandom(42)): ZtunnelState {
  return new ZtunnelState({ network: NETWORK, nodeName: NODE, clusterId: 'cluster1', systemNamespace: SYSTEM_NAMESPACE, random, logger: pino({ level: 'silent' }) });
}

type WorkloadInit = Omit<Exclude<MessageInitShape<typeof WorkloadSchema>, Workload>, 'addresses'> & { ips?: string[] };

function pod(name: string, init: WorkloadInit = {}): Workload {
  const { ips = [], ...rest } = init;
  return create(WorkloadSchema, {
    uid: `cluster1//Pod/default/${name}`,
    name,
    namespace: 'default',
    node: NODE,
    clusterId: 'cluster1',
    serviceAccount: name,
    tunnelProtocol: TunnelProtocol.HBONE,
    addresses: ips.map(ipToBytes),
    ...rest,
  });
}

type ServiceInit = Omit<Exclude<MessageInitShape<typeof ServiceSchema>, Service>, 'addresses'> & { vips?: string[] };

function service(hostname: string, init: ServiceInit = {}): Service {
  const { vips = [], ...rest } = init;
  return create(ServiceSchema, {
    name: hostname.split('.')[0],
    namespace: 'default',
    hostname,
    addresses: vips.map((vip) => ({ network: NETWORK, address: ipToBytes(vip) })),
    ...rest,
  });
}

const HELLO = 'helloworld.default.svc.cluster.local';
const HELLO_KEY = `default/${HELLO}`;
const HELLO_VIP = '10.96.0.10';

function backs(port: number, targetPort: number, key = HELLO_KEY) {
  return { [key]: { ports: [{ servicePort: port, targetPort }] } };
}

function addWorkloads(state: ZtunnelState, ...workloads: Workload[]): void {
  state.applyAddresses(
    workloads.map((workload) => ({ name: workload.uid, workload })),
    [],
  );
}

function addService(state: ZtunnelState, svc: Service): void {
  state.applyAddresses([{ name: `${svc.namespace}/${svc.hostname}`, service: svc }], []);
}

function upstreamOf(resolution: Resolution): Upstream {
  assert.ok(
    resolution.kind === 'hbone' || resolution.kind === 'plaintext' || resolution.kind === 'gateway',
    `expected an upstream, got ${JSON.stringify(resolution.kind === 'unavailable' ? resolution.reason : resolution.kind)}`,
  );
  return resolution.upstream;
}

function gatewayOf(resolution: Resolution): Extract<Resolution, { kind: 'gateway' }> {
  assert.equal(resolution.kind, 'gateway', `expected a gateway resolution, got ${resolution.kind === 'unavailable' ? resolution.reason : resolution.kind}`);
  return resolution as Extract<Resolution, { kind: 'gateway' }>;
}

function unavailableReason(resolution: Resolution): string {
  assert.equal(resolution.kind, 'unavailable');
  return resolution.kind === 'unavailable' ? resolution.reason : '';
}

/** Resolves many times and counts picks per workload name. */
function pickCounts(state: ZtunnelState, source: Workload, ip: string, port: number, times = 400): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < times; i++) {
    const name = upstreamOf(state.resolve(source, ip, port)).workload.name;
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return counts;
}

const client = pod('client', { ips: ['10.0.0.1'], locality: { region: 'r1', zone: 'z1' } });

describe('ztunnel state: indexing', () => {
  it('indexes workloads by name, address and node, and removes them', () => {
    const state = newState();
    const a = pod('a', { ips: ['10.0.0.2', 'fd00::2'] });
    const b = pod('b', { ips: ['10.0.0.3'], node: 'node-b' });
    const host = pod('host', { ips: ['192.168.1.5'], networkMode: NetworkMode.HOST_NETWORK });
    const plain = pod('plain', { ips: ['10.0.0.4'], tunnelProtocol: TunnelProtocol.NONE });
    addWorkloads(state, a, b, host, plain);

    assert.equal(state.workload(a.uid)?.name, 'a');
    assert.equal(state.workloadByIp('10.0.0.2')?.name, 'a');
    assert.equal(state.workloadByIp('fd00:0:0::2')?.name, 'a', 'IPv6 in another spelling');
    assert.equal(state.workloadByIp('::ffff:10.0.0.3')?.name, 'b', 'IPv4-mapped IPv6');
    assert.equal(state.workloadByIp('10.0.0.2', 'network2'), undefined, 'other network');
    assert.equal(state.workloadByIp('192.168.1.5'), undefined, 'host-network workloads are not found by IP');
    assert.deepEqual(state.localWorkloads().map((w) => w.name).sort(), ['a', 'host', 'plain']);
    assert.deepEqual(state.localEnrolledWorkloads().map((w) => w.name), ['a']);

    state.applyAddresses([], [a.uid, 'no-such-name']);
    assert.equal(state.workload(a.uid), undefined);
    assert.equal(state.workloadByIp('10.0.0.2'), undefined);
    assert.equal(state.workloadByIp('fd00::2'), undefined);
    assert.deepEqual(state.localWorkloads().map((w) => w.name).sort(), ['host', 'plain']);
    assert.equal(state.workloads().length, 3);
  });

  it('an address a deleted pod gave back belongs to the pod that got it: found by IP, and captured only for its owner', () => {
    const state = newState();
    // productpage is being deleted: still listed (unhealthy) while its address went to a new
    // waypoint pod, which is outside the mesh (not captured) and not ready yet.
    const old = pod('productpage-old', { ips: ['10.0.0.6'], status: WorkloadStatus.UNHEALTHY });
    const other = pod('sleep', { ips: ['10.0.0.7'] });
    addWorkloads(state, old, other);
    assert.deepEqual(state.capturedAddresses().sort(), ['10.0.0.6', '10.0.0.7']);
    const waypoint = pod('waypoint', { ips: ['10.0.0.6'], tunnelProtocol: TunnelProtocol.NONE, status: WorkloadStatus.UNHEALTHY });
    addWorkloads(state, waypoint);
    // Not ready yet: the mesh pod that is going away still answers for the address.
    assert.equal(state.workloadByIp('10.0.0.6')?.name, 'productpage-old');
    // Ready: the new pod owns it; the old pod's updates (it is still terminating) change nothing.
    addWorkloads(state, pod('waypoint', { ips: ['10.0.0.6'], tunnelProtocol: TunnelProtocol.NONE }));
    addWorkloads(state, pod('productpage-old', { ips: ['10.0.0.6'], status: WorkloadStatus.UNHEALTHY, canonicalRevision: 'v1' }));
    assert.equal(state.workloadByIp('10.0.0.6')?.name, 'waypoint');
    assert.deepEqual(state.capturedAddresses(), ['10.0.0.7'], 'the waypoint\'s address is not captured');
    assert.deepEqual(state.localEnrolledWorkloads().map((w) => w.name).sort(), ['productpage-old', 'sleep']);
    state.applyAddresses([], [old.uid]);
    assert.equal(state.workloadByIp('10.0.0.6')?.name, 'waypoint');
    // Two mesh pods, both ready, one address: the one seen last owns it.
    const reused = pod('reused', { ips: ['10.0.0.7'] });
    addWorkloads(state, reused);
    assert.equal(state.workloadByIp('10.0.0.7')?.name, 'reused');
    addWorkloads(state, pod('sleep', { ips: ['10.0.0.7'], canonicalRevision: 'v2' }));
    assert.equal(state.workloadByIp('10.0.0.7')?.name, 'reused', 'an update keeps when a workload was first seen');
    assert.deepEqual(state.capturedAddresses(), ['10.0.0.7']);
  });

  it('a pod of another cluster on a node named like ours is not on this node (kind names nodes alike in every cluster)', () => {
    const state = newState();
    const mine = pod('mine', { ips: ['10.0.0.2'] });
    // Same network (multi-primary), same node name, another cluster.
    const twin = pod('twin', { uid: 'cluster2//Pod/default/twin', clusterId: 'cluster2', ips: ['10.1.0.2'] });
    const otherNetwork = pod('far', { uid: 'cluster3//Pod/default/far', clusterId: 'cluster3', network: 'network2', ips: ['10.0.0.2'] });
    addWorkloads(state, mine, twin, otherNetwork);
    assert.deepEqual(state.localWorkloads().map((w) => w.name), ['mine']);
    assert.deepEqual(state.localEnrolledWorkloads().map((w) => w.name), ['mine']);
    // Still known by address, as any remote workload is.
    assert.equal(state.workloadByIp('10.1.0.2')?.name, 'twin');
  });

  it('treats an empty workload network as the local network', () => {
    const state = newState();
    addWorkloads(state, pod('local', { ips: ['10.0.0.2'] }), pod('remote', { ips: ['10.0.0.2'], network: 'network2' }));
    assert.equal(state.workloadByIp('10.0.0.2')?.name, 'local');
    assert.equal(state.workloadByIp('10.0.0.2', NETWORK)?.name, 'local');
    assert.equal(state.workloadByIp('10.0.0.2', 'network2')?.name, 'remote');
  });

  it('re-indexes a workload whose addresses change', () => {
    const state = newState();
    addWorkloads(state, pod('a', { ips: ['10.0.0.2'] }));
    addWorkloads(state, pod('a', { ips: ['10.0.0.9'] }));
    assert.equal(state.workloadByIp('10.0.0.2'), undefined);
    assert.equal(state.workloadByIp('10.0.0.9')?.name, 'a');
  });

  it('prefers a pod over another kind of workload sharing an address', () => {
    const state = newState();
    const entry = create(WorkloadSchema, { uid: 'cluster1/networking.istio.io/WorkloadEntry/default/vm', name: 'vm', namespace: 'default', addresses: [ipToBytes('10.0.0.7')], tunnelProtocol: TunnelProtocol.HBONE });
    addWorkloads(state, entry, pod('p', { ips: ['10.0.0.7'], tunnelProtocol: TunnelProtocol.NONE }));
    assert.equal(state.workloadByIp('10.0.0.7')?.name, 'p');
    state.applyAddresses([], ['cluster1//Pod/default/p']);
    assert.equal(state.workloadByIp('10.0.0.7')?.name, 'vm');
  });

  it('indexes services by name, VIP and hostname, and lets a name change type', () => {
    const state = newState();
    const svc = service(HELLO, { vips: [HELLO_VIP], ports: [{ servicePort: 5000, targetPort: 5000 }] });
    addService(state, svc);
    assert.equal(state.service(HELLO_KEY)?.hostname, HELLO);
    assert.equal(state.serviceByVip(HELLO_VIP)?.hostname, HELLO);
    assert.equal(state.serviceByVip(HELLO_VIP, 'network2'), undefined);
    assert.deepEqual(state.servicesByHostname(HELLO).map((s) => s.name), ['helloworld']);

    // The same resource name becomes a workload, then a service again.
    state.applyAddresses([{ name: HELLO_KEY, workload: pod('odd', { uid: HELLO_KEY, ips: ['10.0.0.8'] }) }], []);
    assert.equal(state.service(HELLO_KEY), undefined);
    assert.equal(state.serviceByVip(HELLO_VIP), undefined);
    assert.deepEqual(state.servicesByHostname(HELLO), []);
    assert.equal(state.workloadByIp('10.0.0.8')?.name, 'odd');
    addService(state, svc);
    assert.equal(state.workload(HELLO_KEY), undefined);
    assert.equal(state.workloadByIp('10.0.0.8'), undefined);
    assert.equal(state.serviceByVip(HELLO_VIP)?.hostname, HELLO);

    state.applyAddresses([], [HELLO_KEY]);
    assert.equal(state.service(HELLO_KEY), undefined);
    assert.equal(state.serviceByVip(HELLO_VIP), undefined);
    assert.deepEqual(state.services(), []);
  });

  it('fills a missing workload uid from the resource name', () => {
    const state = newState();
    state.applyAddresses([{ name: 'c//Pod/ns/x', workload: create(WorkloadSchema, { name: 'x', namespace: 'ns' }) }], []);
    assert.equal(state.workload('c//Pod/ns/x')?.uid, 'c//Pod/ns/x');
  });

  it('tells listeners which names changed, and only when something did', () => {
    const state = newState();
    const seen: Array<{ addresses: string[]; authorizations: string[] }> = [];
    state.onChange((changed) => seen.push(changed));
    state.onChange(() => {
      throw new Error('a broken listener must not break the update');
    });
    const a = pod('a', { ips: ['10.0.0.2'] });
    addWorkloads(state, a);
    addWorkloads(state, pod('a', { ips: ['10.0.0.2'] }));
    state.applyAddresses([], ['unknown']);
    state.applyAuthorizations([{ name: 'default/p', authorization: allowPolicy('p', []) }], []);
    state.applyAddresses([], [a.uid]);
    assert.deepEqual(seen, [
      { addresses: [a.uid], authorizations: [] },
      { addresses: [], authorizations: ['default/p'] },
      { addresses: [a.uid], authorizations: [] },
    ]);
  });

  it('refuses invalid resources with the field named, applies the rest and keeps previous versions', () => {
    const state = newState();
    const good = pod('good', { ips: ['10.0.0.2'] });
    addWorkloads(state, pod('bad', { ips: ['10.0.0.3'] }));
    const broken = pod('bad', { ips: ['10.0.0.4'] });
    broken.addresses.push(new Uint8Array([1, 2, 3]));
    const brokenService = service(HELLO, { ports: [{ servicePort: 70000 }] });
    let error: unknown;
    try {
      state.applyAddresses(
        [
          { name: broken.uid, workload: broken },
          { name: HELLO_KEY, service: brokenService },
          { name: 'empty' },
          { name: good.uid, workload: good },
        ],
        [],
      );
    } catch (err) {
      error = err;
    }
    assert.ok(error instanceof StateUpdateError);
    assert.equal(error.rejected.length, 3);
    assert.match(error.message, /workload "cluster1\/\/Pod\/default\/bad": addresses\[1\]: must be 4 \(IPv4\) or 16 \(IPv6\) bytes, got 3/);
    assert.match(error.message, /ports\[0\]\.service_port: must be a port 1-65535, got 70000/);
    assert.match(error.message, /"empty": type: neither workload nor service set/);
    assert.equal(state.workloadByIp('10.0.0.2')?.name, 'good');
    assert.equal(state.workloadByIp('10.0.0.3')?.name, 'bad', 'previous version kept');
    assert.equal(state.workloadByIp('10.0.0.4'), undefined);

    assert.throws(
      () => state.applyAuthorizations([{ name: 'default/x', authorization: allowPolicy('x', [{ sourceIps: [{ address: ipToBytes('10.0.0.0'), length: 33 }] }]) }], []),
      /rules\[0\]\.clauses\[0\]\.matches\[0\]\.source_ips\[0\]\.length: prefix length 33 exceeds 32/,
    );
    assert.throws(
      () => state.applyAuthorizations([{ name: 'default/y', authorization: allowPolicy('y', [{ principals: [{}] }]) }], []),
      /authorization "default\/y": rules\[0\]\.clauses\[0\]\.matches\[0\]\.principals\[0\]: no exact, prefix, suffix or presence set/,
    );
    assert.equal(state.authorizations().length, 0);
  });
});

describe('ztunnel state: resolve', () => {
  function helloState(init: ServiceInit = {}, ...workloads: Workload[]): ZtunnelState {
    const state = newState();
    addService(state, service(HELLO, { vips: [HELLO_VIP], ports: [{ servicePort: 5000, targetPort: 5000 }], ...init }));
    addWorkloads(state, ...workloads);
    return state;
  }

  it('maps a VIP and service port to an endpoint and its target port', () => {
    const state = helloState({ subjectAltNames: ['spiffe://cluster.local/ns/default/sa/extra'] }, pod('v1', { ips: ['10.0.1.1'], services: backs(5000, 8080) }));
    const resolution = state.resolve(client, HELLO_VIP, 5000);
    assert.equal(resolution.kind, 'hbone');
    const upstream = upstreamOf(resolution);
    assert.equal(upstream.address, '10.0.1.1');
    assert.equal(upstream.port, 8080);
    assert.equal(upstream.service?.hostname, HELLO);
    assert.deepEqual(upstream.expectedIdentities, ['spiffe://cluster.local/ns/default/sa/v1', 'spiffe://cluster.local/ns/default/sa/extra']);
  });

  it('falls back from the workload mapping to the service target port, then to the port', () => {
    const entryWithoutTarget = helloState({ ports: [{ servicePort: 5000, targetPort: 9090 }] }, pod('v1', { ips: ['10.0.1.1'], services: backs(5000, 0) }));
    assert.equal(upstreamOf(entryWithoutTarget.resolve(client, HELLO_VIP, 5000)).port, 9090);
    const noTargets = helloState({ ports: [{ servicePort: 5000 }] }, pod('v1', { ips: ['10.0.1.1'], services: backs(5000, 0) }));
    assert.equal(upstreamOf(noTargets.resolve(client, HELLO_VIP, 5000)).port, 5000);
    const noEntry = helloState({ ports: [{ servicePort: 5000, targetPort: 9090 }] }, pod('v1', { ips: ['10.0.1.1'], services: { [HELLO_KEY]: { ports: [] } } }));
    assert.equal(upstreamOf(noEntry.resolve(client, HELLO_VIP, 5000)).port, 9090);
    const unmappable = helloState({ ports: [{ servicePort: 5000 }] }, pod('v1', { ips: ['10.0.1.1'], services: { [HELLO_KEY]: { ports: [] } } }));
    assert.match(unavailableReason(unmappable.resolve(client, HELLO_VIP, 5000)), /service default\/helloworld\.default\.svc\.cluster\.local has 1 endpoint, none serving port 5000/);
  });

  it('uses the default trust domain and service account in expected identities', () => {
    const state = helloState({}, pod('v1', { ips: ['10.0.1.1'], serviceAccount: '', trustDomain: '', services: backs(5000, 5000) }));
    assert.deepEqual(upstreamOf(state.resolve(client, HELLO_VIP, 5000)).expectedIdentities, ['spiffe://cluster.local/ns/default/sa/default']);
  });

  it('dials NONE endpoints in plaintext', () => {
    const state = helloState({}, pod('legacy', { ips: ['10.0.1.1'], tunnelProtocol: TunnelProtocol.NONE, services: backs(5000, 5000) }));
    const resolution = state.resolve(client, HELLO_VIP, 5000);
    assert.equal(resolution.kind, 'plaintext');
    assert.equal(upstreamOf(resolution).address, '10.0.1.1');
  });

  it('skips unhealthy endpoints unless the health policy is ALLOW_ALL', () => {
    const healthy = pod('healthy', { ips: ['10.0.1.1'], services: backs(5000, 5000) });
    const sick = pod('sick', { ips: ['10.0.1.2'], status: WorkloadStatus.UNHEALTHY, services: backs(5000, 5000) });
    const mixed = helloState({}, healthy, sick);
    assert.deepEqual([...pickCounts(mixed, client, HELLO_VIP, 5000, 100).keys()], ['healthy']);

    const onlySick = helloState({}, sick);
    assert.match(unavailableReason(onlySick.resolve(client, HELLO_VIP, 5000)), /helloworld.* has 1 endpoint for port 5000, none healthy/);

    const allowAll = helloState({ loadBalancing: { healthPolicy: LoadBalancing_HealthPolicy.ALLOW_ALL } }, sick);
    assert.equal(upstreamOf(allowAll.resolve(client, HELLO_VIP, 5000)).workload.name, 'sick');
  });

  it('leaves a service whose backends the mesh does not know to the network (passthrough)', () => {
    const state = helloState();
    assert.deepEqual(state.resolve(client, HELLO_VIP, 5000), { kind: 'passthrough' });
  });

  it('reports a service whose only endpoints are unhealthy as unavailable', () => {
    const state = helloState({}, pod('v1', { ips: ['10.0.1.1'], services: backs(5000, 5000), status: WorkloadStatus.UNHEALTHY }));
    const resolution = state.resolve(client, HELLO_VIP, 5000);
    assert.match(unavailableReason(resolution), /none healthy/);
    assert.equal(resolution.kind === 'unavailable' && resolution.service.hostname, HELLO);
  });

  it('passes through unknown IPs, unknown service ports and PASSTHROUGH services', () => {
    const state = helloState({}, pod('v1', { ips: ['10.0.1.1'], services: backs(5000, 5000) }));
    assert.deepEqual(state.resolve(client, '1.1.1.1', 443), { kind: 'passthrough' });
    assert.deepEqual(state.resolve(client, HELLO_VIP, 5001), { kind: 'passthrough' });
    assert.deepEqual(state.resolve(client, 'not-an-ip', 5000), { kind: 'passthrough' });
    const passthrough = helloState({ loadBalancing: { mode: LoadBalancing_Mode.PASSTHROUGH } }, pod('v1', { ips: ['10.0.1.1'], services: backs(5000, 5000) }));
    assert.deepEqual(passthrough.resolve(client, HELLO_VIP, 5000), { kind: 'passthrough' });
  });

  it('addresses pods directly by IP, in HBONE or plaintext', () => {
    const state = newState();
    addWorkloads(state, pod('mesh', { ips: ['10.0.1.1'] }), pod('legacy', { ips: ['10.0.1.2'], tunnelProtocol: TunnelProtocol.NONE }));
    const mesh = state.resolve(client, '10.0.1.1', 8080);
    assert.equal(mesh.kind, 'hbone');
    assert.deepEqual({ ...upstreamOf(mesh), workload: undefined }, { workload: undefined, address: '10.0.1.1', port: 8080, expectedIdentities: ['spiffe://cluster.local/ns/default/sa/mesh'] });
    const legacy = state.resolve(client, '10.0.1.2', 9000);
    assert.equal(legacy.kind, 'plaintext');
    assert.equal(upstreamOf(legacy).port, 9000);
    // A source on another network does not see this network's pod IPs.
    assert.deepEqual(state.resolve(pod('far', { network: 'network2' }), '10.0.1.1', 8080), { kind: 'passthrough' });
  });

  it('ranks PreferClose endpoints by locality and fails over when the close ones go unhealthy', () => {
    const preferClose = { routingPreference: [LoadBalancing_Scope.NETWORK, LoadBalancing_Scope.REGION, LoadBalancing_Scope.ZONE], mode: LoadBalancing_Mode.FAILOVER };
    const sameZone = (status: WorkloadStatus) => pod('same-zone', { ips: ['10.0.1.1'], status, locality: { region: 'r1', zone: 'z1' }, services: backs(5000, 5000) });
    const otherZone = pod('other-zone', { ips: ['10.0.1.2'], locality: { region: 'r1', zone: 'z2' }, services: backs(5000, 5000) });
    const otherRegion = pod('other-region', { ips: ['10.0.1.3'], locality: { region: 'r2', zone: 'z1' }, services: backs(5000, 5000) });
    const state = helloState({ loadBalancing: preferClose }, sameZone(WorkloadStatus.HEALTHY), otherZone, otherRegion);
    assert.deepEqual([...pickCounts(state, client, HELLO_VIP, 5000).keys()], ['same-zone']);

    addWorkloads(state, sameZone(WorkloadStatus.UNHEALTHY));
    assert.deepEqual([...pickCounts(state, client, HELLO_VIP, 5000).keys()], ['other-zone']);

    state.applyAddresses([], [otherZone.uid]);
    assert.deepEqual([...pickCounts(state, client, HELLO_VIP, 5000).keys()], ['other-region']);
  });

  it('ranks same-network endpoints above every other network, and remote ones by locality', () => {
    const preferClose = create(LoadBalancingSchema, { routingPreference: [LoadBalancing_Scope.NETWORK, LoadBalancing_Scope.REGION, LoadBalancing_Scope.ZONE], mode: LoadBalancing_Mode.FAILOVER });
    const endpoint = (network: string, region: string, zone: string) => ({ network, workload: pod('e', { network, locality: { region, zone } }) }) as Endpoint;
    const rank = (e: Endpoint) => routingRank(preferClose, client, NETWORK, e);
    const localClose = rank(endpoint(NETWORK, 'r1', 'z1'));
    const localFar = rank(endpoint(NETWORK, 'r2', 'z1'));
    const remoteClose = rank(endpoint('network2', 'r1', 'z1'));
    const remoteFar = rank(endpoint('network2', 'r2', 'z1'));
    assert.ok(localClose! > localFar! && localFar! > remoteClose! && remoteClose! > remoteFar!, `${localClose} > ${localFar} > ${remoteClose} > ${remoteFar}`);
    const strict = create(LoadBalancingSchema, { ...preferClose, mode: LoadBalancing_Mode.STRICT });
    assert.equal(routingRank(strict, client, NETWORK, endpoint('network2', 'r1', 'z1')), undefined);
    assert.equal(routingRank(strict, client, NETWORK, endpoint(NETWORK, 'r1', 'z1')), localClose);
  });

  it('requires broader locality levels to match too', () => {
    // Zone "z1" in another region is not the client's zone.
    const zoneOnly = { routingPreference: [LoadBalancing_Scope.ZONE], mode: LoadBalancing_Mode.STRICT };
    const state = helloState({ loadBalancing: zoneOnly }, pod('elsewhere', { ips: ['10.0.1.3'], locality: { region: 'r2', zone: 'z1' }, services: backs(5000, 5000) }));
    assert.match(unavailableReason(state.resolve(client, HELLO_VIP, 5000)), /matches every routing preference \[ZONE\] \(STRICT\)/);
  });

  it('keeps STRICT node-local traffic on the node', () => {
    const nodeLocal = { routingPreference: [LoadBalancing_Scope.NODE], mode: LoadBalancing_Mode.STRICT };
    const here = pod('here', { ips: ['10.0.1.1'], services: backs(5000, 5000) });
    const there = pod('there', { ips: ['10.0.2.1'], node: 'node-b', services: backs(5000, 5000) });
    const state = helloState({ loadBalancing: nodeLocal }, here, there);
    assert.deepEqual([...pickCounts(state, client, HELLO_VIP, 5000, 100).keys()], ['here']);
    state.applyAddresses([], [here.uid]);
    assert.match(
      unavailableReason(state.resolve(client, HELLO_VIP, 5000)),
      /service default\/helloworld\.default\.svc\.cluster\.local: none of 1 usable endpoint for port 5000 matches every routing preference \[NODE\] \(STRICT\)/,
    );
  });

  it('keeps node-local traffic in the cluster: a same-named node of another cluster is not the client\'s node', () => {
    const nodeLocal = { routingPreference: [LoadBalancing_Scope.NODE], mode: LoadBalancing_Mode.STRICT };
    const here = pod('here', { ips: ['10.0.1.1'], services: backs(5000, 5000) });
    const twin = pod('twin', { uid: 'cluster2//Pod/default/twin', clusterId: 'cluster2', ips: ['10.1.1.1'], services: backs(5000, 5000) });
    const state = helloState({ loadBalancing: nodeLocal }, here, twin);
    assert.deepEqual([...pickCounts(state, client, HELLO_VIP, 5000, 100).keys()], ['here']);
    state.applyAddresses([], [here.uid]);
    assert.match(unavailableReason(state.resolve(client, HELLO_VIP, 5000)), /matches every routing preference \[NODE\] \(STRICT\)/);
  });

  it('spreads picks by capacity and never picks capacity 0', () => {
    const state = helloState(
      {},
      pod('small', { ips: ['10.0.1.1'], capacity: 1, services: backs(5000, 5000) }),
      pod('big', { ips: ['10.0.1.2'], capacity: 3, services: backs(5000, 5000) }),
      pod('drained', { ips: ['10.0.1.3'], capacity: 0, services: backs(5000, 5000) }),
      pod('default', { ips: ['10.0.1.4'], services: backs(5000, 5000) }),
    );
    const picks = 5000;
    const counts = pickCounts(state, client, HELLO_VIP, 5000, picks);
    assert.equal(counts.get('drained'), undefined);
    // Expected shares 1/5, 3/5, 1/5.
    const share = (name: string) => (counts.get(name) ?? 0) / picks;
    assert.ok(share('big') > 0.5 && share('big') < 0.7, `big got ${share('big')}`);
    assert.ok(share('small') > 0.13 && share('small') < 0.27, `small got ${share('small')}`);
    assert.ok(share('default') > 0.13 && share('default') < 0.27, `default got ${share('default')}`);

    const drainedOnly = helloState({}, pod('drained', { ips: ['10.0.1.3'], capacity: 0, services: backs(5000, 5000) }));
    assert.match(unavailableReason(drainedOnly.resolve(client, HELLO_VIP, 5000)), /every usable endpoint for port 5000 has capacity 0/);
  });

  it('follows changes of a workload\'s services', () => {
    const state = helloState();
    const other = 'default/other.default.svc.cluster.local';
    addWorkloads(state, pod('v1', { ips: ['10.0.1.1'], services: backs(5000, 5000) }));
    assert.deepEqual(state.endpointsOf(HELLO_KEY).map((w) => w.name), ['v1']);
    assert.equal(upstreamOf(state.resolve(client, HELLO_VIP, 5000)).workload.name, 'v1');

    addWorkloads(state, pod('v1', { ips: ['10.0.1.1'], services: backs(5000, 5000, other) }));
    assert.deepEqual(state.endpointsOf(HELLO_KEY), []);
    assert.deepEqual(state.endpointsOf(other).map((w) => w.name), ['v1']);
    assert.deepEqual(state.resolve(client, HELLO_VIP, 5000), { kind: 'passthrough' });

    addWorkloads(state, pod('v1', { ips: ['10.0.1.1'], services: { ...backs(5000, 7000), ...backs(5000, 5000, other) } }));
    assert.equal(upstreamOf(state.resolve(client, HELLO_VIP, 5000)).port, 7000);

    state.applyAddresses([], ['cluster1//Pod/default/v1']);
    assert.deepEqual(state.endpointsOf(HELLO_KEY), []);
    assert.deepEqual(state.endpointsOf(other), []);
  });
});

// ---- multi-network ---------------------------------------------------------------------------------

const REMOTE_NETWORK = 'network2';
const GATEWAY_IP = '198.18.5.1';
const GATEWAY_IDENTITY = 'spiffe://cluster.local/ns/istio-system/sa/eastwest';

/** The east-west gateway of network2, as the control plane sends it (looked up by IP for its identity). */
function eastWestGateway(init: WorkloadInit = {}): Workload {
  return pod('eastwest', {
    uid: 'cluster2/Gateway/istio-system/eastwest',
    namespace: 'istio-system',
    serviceAccount: 'eastwest',
    network: REMOTE_NETWORK,
    node: '',
    clusterId: 'cluster2',
    ips: [GATEWAY_IP],
    ...init,
  });
}

type GatewayDestination = NonNullable<WorkloadInit['networkGateway']>;
const gatewayAt = (ip: string, port = 15008, network = REMOTE_NETWORK): GatewayDestination => ({
  hboneMtlsPort: port,
  destination: { case: 'address', value: { network, address: ipToBytes(ip) } },
});

/** The synthetic workload standing for helloworld's endpoints on network2, behind its gateway. */
function synthetic(init: WorkloadInit = {}): Workload {
  return pod('helloworld', {
    uid: `${REMOTE_NETWORK}/SyntheticGateway/default/${HELLO}`,
    serviceAccount: 'helloworld',
    network: REMOTE_NETWORK,
    node: '',
    clusterId: '',
    networkGateway: gatewayAt(GATEWAY_IP),
    capacity: 2,
    services: backs(5000, 9080),
    ...init,
  });
}

describe('ztunnel state: endpoints on other networks', () => {
  const preferClose = { routingPreference: [LoadBalancing_Scope.NETWORK, LoadBalancing_Scope.REGION, LoadBalancing_Scope.ZONE], mode: LoadBalancing_Mode.FAILOVER };

  function helloState(init: ServiceInit = {}, ...workloads: Workload[]): ZtunnelState {
    const state = newState();
    addService(state, service(HELLO, { vips: [HELLO_VIP], ports: [{ servicePort: 5000, targetPort: 5000 }], ...init }));
    addWorkloads(state, ...workloads);
    return state;
  }

  it('reaches them through their network gateway: outer tunnel to the gateway identity, inner to the synthetic workload', () => {
    const state = helloState({ subjectAltNames: ['spiffe://cluster.local/ns/default/sa/extra'] }, synthetic(), eastWestGateway());
    const resolution = gatewayOf(state.resolve(client, HELLO_VIP, 5000));
    assert.deepEqual(resolution.gateway, { address: GATEWAY_IP, port: 15008, network: REMOTE_NETWORK, identities: [GATEWAY_IDENTITY] });
    assert.equal(resolution.authority, `${HELLO}:5000`, 'the service port, not the target port');
    assert.equal(resolution.upstream.workload.uid, `${REMOTE_NETWORK}/SyntheticGateway/default/${HELLO}`);
    assert.equal(resolution.upstream.address, GATEWAY_IP);
    assert.equal(resolution.upstream.port, 9080);
    assert.equal(resolution.upstream.service.hostname, HELLO);
    assert.deepEqual(resolution.upstream.expectedIdentities, ['spiffe://cluster.local/ns/default/sa/helloworld', 'spiffe://cluster.local/ns/default/sa/extra']);

    const otherPort = helloState({}, synthetic({ networkGateway: gatewayAt(GATEWAY_IP, 15009) }), eastWestGateway());
    assert.equal(gatewayOf(otherPort.resolve(client, HELLO_VIP, 5000)).gateway.port, 15009);
    const defaultPort = helloState({}, synthetic({ networkGateway: gatewayAt(GATEWAY_IP, 0) }), eastWestGateway());
    assert.equal(gatewayOf(defaultPort.resolve(client, HELLO_VIP, 5000)).gateway.port, 15008);
  });

  it('refuses a gateway address that is no known workload, naming it, until the gateway workload arrives', () => {
    const state = helloState({}, synthetic(), eastWestGateway({ network: 'network3' }));
    assert.match(
      unavailableReason(state.resolve(client, HELLO_VIP, 5000)),
      /1 healthy endpoint for port 5000, none reachable from network network1: 1 on network network2 behind gateway 198\.18\.5\.1 \(network network2\) that is not a known workload/,
    );
    addWorkloads(state, eastWestGateway());
    assert.deepEqual(gatewayOf(state.resolve(client, HELLO_VIP, 5000)).gateway.identities, [GATEWAY_IDENTITY]);
    state.applyAddresses([], ['cluster2/Gateway/istio-system/eastwest']);
    assert.match(unavailableReason(state.resolve(client, HELLO_VIP, 5000)), /behind gateway 198\.18\.5\.1/);
  });

  it('gateways named by hostname: connections spread over every healthy gateway; an avoided one is skipped while another is left', () => {
    const GATEWAYS_KEY = 'istio-system/network2.east-west.ambit.internal';
    const byHostname = synthetic({ networkGateway: { hboneMtlsPort: 15008, destination: { case: 'hostname', value: { namespace: 'istio-system', hostname: 'network2.east-west.ambit.internal' } } } });
    const gatewayService = service('network2.east-west.ambit.internal', { namespace: 'istio-system', ports: [{ servicePort: 15008, targetPort: 15008 }] });
    const first = eastWestGateway({ services: backs(15008, 15008, GATEWAYS_KEY) });
    const second = eastWestGateway({ uid: 'cluster2/Gateway/istio-system/second', name: 'second', serviceAccount: 'second', ips: ['198.18.5.2'], services: backs(15008, 15008, GATEWAYS_KEY) });
    const down = eastWestGateway({ uid: 'cluster3/Gateway/istio-system/down', name: 'down', ips: ['198.18.5.3'], status: WorkloadStatus.UNHEALTHY, services: backs(15008, 15008, GATEWAYS_KEY) });
    const state = helloState({}, byHostname, first, second, down);
    addService(state, gatewayService);
    const used = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const gateway = gatewayOf(state.resolve(client, HELLO_VIP, 5000)).gateway;
      used.set(`${gateway.address}=${gateway.identities.join()}`, (used.get(`${gateway.address}=${gateway.identities.join()}`) ?? 0) + 1);
    }
    assert.deepEqual([...used.keys()].sort(), [`198.18.5.1=${GATEWAY_IDENTITY}`, '198.18.5.2=spiffe://cluster.local/ns/istio-system/sa/second']);
    for (const count of used.values()) assert.ok(count > 60, `spread: ${JSON.stringify([...used])}`);
    const avoided = new Set(['198.18.5.1:15008']);
    for (let i = 0; i < 20; i++) assert.equal(gatewayOf(state.resolve(client, HELLO_VIP, 5000, { avoidGateways: avoided })).gateway.address, '198.18.5.2');
    const both = new Set(['198.18.5.1:15008', '198.18.5.2:15008']);
    assert.equal(state.resolve(client, HELLO_VIP, 5000, { avoidGateways: both }).kind, 'gateway', 'every gateway avoided: one is still tried');
  });

  it('refuses endpoints on another network without a usable gateway, and says why', () => {
    const noGateway = pod('far', { ips: ['10.0.1.1'], network: REMOTE_NETWORK, clusterId: 'cluster2', services: backs(5000, 5000) });
    assert.match(unavailableReason(helloState({}, noGateway, eastWestGateway()).resolve(client, HELLO_VIP, 5000)), /1 on network network2 without a network gateway/);
    const plaintext = synthetic({ tunnelProtocol: TunnelProtocol.NONE });
    assert.match(unavailableReason(helloState({}, plaintext, eastWestGateway()).resolve(client, HELLO_VIP, 5000)), /without HBONE, so not reachable through its network gateway/);
    const byHostname = synthetic({ networkGateway: { hboneMtlsPort: 15008, destination: { case: 'hostname', value: { namespace: 'istio-system', hostname: 'eastwest.istio-system.svc.cluster.local' } } } });
    assert.match(
      unavailableReason(helloState({}, byHostname, eastWestGateway()).resolve(client, HELLO_VIP, 5000)),
      /network gateway istio-system\/eastwest\.istio-system\.svc\.cluster\.local has no healthy gateway/,
    );
    // A pod of network2 is not addressable by IP from network1, even when the IP exists there.
    const state = helloState({}, noGateway);
    assert.deepEqual(state.resolve(client, '10.0.1.1', 5000), { kind: 'passthrough' });
  });

  it('treats a remote cluster on the same network name as ordinary, directly addressed endpoints', () => {
    const sameNetwork = pod('remote', { uid: 'cluster2//Pod/default/remote', ips: ['10.1.0.7'], network: NETWORK, clusterId: 'cluster2', node: 'node-x', services: backs(5000, 8080) });
    const state = helloState({}, sameNetwork);
    const resolution = state.resolve(client, HELLO_VIP, 5000);
    assert.equal(resolution.kind, 'hbone');
    assert.equal(upstreamOf(resolution).address, '10.1.0.7');
    assert.equal(upstreamOf(resolution).port, 8080);
    assert.equal(upstreamOf(state.resolve(client, '10.1.0.7', 8080)).workload.uid, 'cluster2//Pod/default/remote');
  });

  it('prefers local endpoints under PreferClose, fails over to the gateway when they go unhealthy, and back', () => {
    const local = (status: WorkloadStatus) => pod('local', { ips: ['10.0.1.1'], status, locality: { region: 'r2', zone: 'z9' }, services: backs(5000, 5000) });
    const state = helloState({ loadBalancing: preferClose }, local(WorkloadStatus.HEALTHY), synthetic({ capacity: 10 }), eastWestGateway());
    assert.deepEqual([...pickCounts(state, client, HELLO_VIP, 5000, 200).keys()], ['local'], 'a local endpoint in another region still beats the remote network');

    addWorkloads(state, local(WorkloadStatus.UNHEALTHY));
    const failedOver = pickCounts(state, client, HELLO_VIP, 5000, 200);
    assert.deepEqual([...failedOver.keys()], ['helloworld']);
    assert.equal(gatewayOf(state.resolve(client, HELLO_VIP, 5000)).gateway.address, GATEWAY_IP);

    addWorkloads(state, local(WorkloadStatus.HEALTHY));
    assert.deepEqual([...pickCounts(state, client, HELLO_VIP, 5000, 200).keys()], ['local']);

    // The remote network has no healthy endpoint left: the control plane marks the synthetic workload UNHEALTHY.
    addWorkloads(state, local(WorkloadStatus.UNHEALTHY), synthetic({ capacity: 0, status: WorkloadStatus.UNHEALTHY }));
    assert.match(unavailableReason(state.resolve(client, HELLO_VIP, 5000)), /2 endpoints for port 5000, none healthy/);
  });

  it('keeps STRICT network-local traffic off the gateway', () => {
    const strict = { routingPreference: [LoadBalancing_Scope.NETWORK], mode: LoadBalancing_Mode.STRICT };
    const state = helloState({ loadBalancing: strict }, synthetic(), eastWestGateway());
    assert.match(unavailableReason(state.resolve(client, HELLO_VIP, 5000)), /matches every routing preference \[NETWORK\] \(STRICT\)/);
  });

  it('weighs a synthetic workload by its capacity, as that many pods, without load balancing', () => {
    const state = helloState(
      {},
      pod('local-a', { ips: ['10.0.1.1'], services: backs(5000, 5000) }),
      pod('local-b', { ips: ['10.0.1.2'], node: 'node-b', services: backs(5000, 5000) }),
      synthetic({ capacity: 3 }),
      eastWestGateway(),
    );
    const picks = 5000;
    const counts = pickCounts(state, client, HELLO_VIP, 5000, picks);
    // Expected shares: 1/5 each local pod, 3/5 the remote network.
    const share = (name: string) => (counts.get(name) ?? 0) / picks;
    assert.ok(share('helloworld') > 0.53 && share('helloworld') < 0.67, `the gateway got ${share('helloworld')}`);
    assert.ok(share('local-a') > 0.14 && share('local-a') < 0.26, `local-a got ${share('local-a')}`);
    assert.ok(share('local-b') > 0.14 && share('local-b') < 0.26, `local-b got ${share('local-b')}`);
  });

  it('refuses a workload whose network gateway address is malformed, naming the field', () => {
    const state = newState();
    const bad = synthetic({ networkGateway: { hboneMtlsPort: 15008, destination: { case: 'address', value: { network: REMOTE_NETWORK, address: new Uint8Array([1, 2, 3]) } } } });
    assert.throws(() => addWorkloads(state, bad), (error: unknown) => error instanceof StateUpdateError && /network_gateway\.address\.address: must be 4 \(IPv4\) or 16 \(IPv6\) bytes, got 3/.test(error.message));
    assert.equal(state.workload(bad.uid), undefined);
  });
});

describe('ztunnel state: avoiding failed network gateways', () => {
  const GATEWAY_2_IP = '198.18.5.2';
  const secondGateway = () => eastWestGateway({ uid: 'cluster3/Gateway/istio-system/eastwest', clusterId: 'cluster3', ips: [GATEWAY_2_IP] });
  // The same service on network2 behind two gateways (two clusters of that network, each with its own).
  const behindFirst = () => synthetic({ uid: `${REMOTE_NETWORK}/SyntheticGateway/default/${HELLO}/1`, name: 'behind-first' });
  const behindSecond = () => synthetic({ uid: `${REMOTE_NETWORK}/SyntheticGateway/default/${HELLO}/2`, name: 'behind-second', networkGateway: gatewayAt(GATEWAY_2_IP) });

  function twoGatewayState(): ZtunnelState {
    const state = newState();
    addService(state, service(HELLO, { vips: [HELLO_VIP], ports: [{ servicePort: 5000, targetPort: 5000 }] }));
    addWorkloads(state, behindFirst(), behindSecond(), eastWestGateway(), secondGateway());
    return state;
  }

  function gatewayPicks(state: ZtunnelState, avoidGateways?: ReadonlySet<string>, times = 200): Set<string> {
    const picks = new Set<string>();
    for (let i = 0; i < times; i++) picks.add(gatewayOf(state.resolve(client, HELLO_VIP, 5000, { avoidGateways })).gateway.address);
    return picks;
  }

  it('spreads over both gateways when none is avoided', () => {
    assert.deepEqual([...gatewayPicks(twoGatewayState())].sort(), [GATEWAY_IP, GATEWAY_2_IP]);
  });

  it('always picks the endpoint behind the other gateway when one is avoided', () => {
    const state = twoGatewayState();
    assert.deepEqual([...gatewayPicks(state, new Set([`${GATEWAY_IP}:15008`]))], [GATEWAY_2_IP]);
    assert.deepEqual([...gatewayPicks(state, new Set([`${GATEWAY_2_IP}:15008`]))], [GATEWAY_IP]);
    assert.deepEqual([...gatewayPicks(state, new Set([`${GATEWAY_IP}:15009`]))].sort(), [GATEWAY_IP, GATEWAY_2_IP], 'another port of the address is another gateway');
  });

  it('still selects when every usable endpoint is behind an avoided gateway', () => {
    const state = twoGatewayState();
    const both = new Set([`${GATEWAY_IP}:15008`, `${GATEWAY_2_IP}:15008`]);
    assert.deepEqual([...gatewayPicks(state, both)].sort(), [GATEWAY_IP, GATEWAY_2_IP]);
    const analysis = state.analyzeDestination(client, HELLO_VIP, 5000, { avoidGateways: both });
    assert.equal(analysis.kind, 'service');
    if (analysis.kind === 'service') assert.equal(analysis.evaluation.avoidGatewaysIgnored, true);
  });

  it('prefers a direct endpoint over one behind an avoided gateway, even of a better rank', () => {
    const preferRemote = { routingPreference: [LoadBalancing_Scope.REGION], mode: LoadBalancing_Mode.FAILOVER };
    const state = newState();
    addService(state, service(HELLO, { vips: [HELLO_VIP], ports: [{ servicePort: 5000, targetPort: 5000 }], loadBalancing: preferRemote }));
    const remoteInClientRegion = { ...behindFirst(), locality: create(LocalitySchema, { region: 'r1' }) };
    addWorkloads(state, remoteInClientRegion, eastWestGateway(), pod('local', { ips: ['10.0.1.1'], locality: { region: 'r9' }, services: backs(5000, 5000) }));
    assert.deepEqual([...pickCounts(state, client, HELLO_VIP, 5000, 100).keys()], ['behind-first'], 'the remote endpoint is in the client\'s region');
    const resolution = state.resolve(client, HELLO_VIP, 5000, { avoidGateways: new Set([`${GATEWAY_IP}:15008`]) });
    assert.equal(upstreamOf(resolution).workload.name, 'local');
  });
});

describe('ztunnel state: endpoint evaluation', () => {
  const preferClose = { routingPreference: [LoadBalancing_Scope.NETWORK, LoadBalancing_Scope.REGION, LoadBalancing_Scope.ZONE], mode: LoadBalancing_Mode.FAILOVER };

  function serviceAnalysis(state: ZtunnelState, avoidGateways?: ReadonlySet<string>) {
    const analysis = state.analyzeDestination(client, HELLO_VIP, 5000, { avoidGateways });
    assert.equal(analysis.kind, 'service');
    return analysis as Extract<typeof analysis, { kind: 'service' }>;
  }

  it('gives every endpoint its facts, why it is excluded, and its probability', () => {
    const state = newState();
    addService(state, service(HELLO, { vips: [HELLO_VIP], ports: [{ servicePort: 5000 }], loadBalancing: preferClose }));
    addWorkloads(
      state,
      pod('close-a', { ips: ['10.0.1.1'], capacity: 1, locality: { region: 'r1', zone: 'z1' }, services: backs(5000, 8080) }),
      pod('close-b', { ips: ['10.0.1.2'], capacity: 3, locality: { region: 'r1', zone: 'z1' }, services: backs(5000, 8080) }),
      pod('far', { ips: ['10.0.1.3'], locality: { region: 'r2' }, services: backs(5000, 8080) }),
      pod('sick', { ips: ['10.0.1.4'], status: WorkloadStatus.UNHEALTHY, locality: { region: 'r1', zone: 'z1' }, services: backs(5000, 8080) }),
      pod('drained', { ips: ['10.0.1.5'], capacity: 0, locality: { region: 'r1', zone: 'z1' }, services: backs(5000, 8080) }),
      pod('no-port', { ips: ['10.0.1.6'], services: { [HELLO_KEY]: { ports: [] } } }),
      synthetic({ name: 'remote' }),
      eastWestGateway(),
    );
    const { evaluation } = serviceAnalysis(state);
    const byName = new Map(evaluation.endpoints.map((e) => [e.endpoint.workload.name, e]));
    assert.equal(evaluation.bestRank, 5);
    assert.deepEqual(evaluation.chosenFrom.map((e) => e.endpoint.workload.name).sort(), ['close-a', 'close-b']);
    assert.equal(byName.get('close-a')?.probability, 0.25);
    assert.equal(byName.get('close-b')?.probability, 0.75);
    assert.deepEqual(byName.get('close-b')?.reachability, { kind: 'direct', address: '10.0.1.2' });
    assert.equal(byName.get('close-b')?.targetPort, 8080);
    assert.deepEqual(byName.get('far')?.excluded, { kind: 'lower-rank', detail: 'rank 3, below the best rank 5 present' });
    assert.equal(byName.get('sick')?.excluded?.kind, 'unhealthy');
    assert.equal(byName.get('sick')?.rank, 5, 'rank is reported for excluded endpoints too');
    assert.equal(byName.get('drained')?.excluded?.kind, 'no-capacity');
    assert.equal(byName.get('no-port')?.excluded?.kind, 'not-serving-port');
    assert.equal(byName.get('no-port')?.targetPort, undefined);
    const remote = byName.get('remote');
    assert.equal(remote?.reachability.kind, 'gateway');
    assert.equal(remote?.excluded?.kind, 'lower-rank');
    for (const e of evaluation.endpoints) if (e.excluded) assert.equal(e.probability, 0);
  });

  it('names the reason when nothing can be chosen, as resolve does', () => {
    const state = newState();
    addService(state, service(HELLO, { vips: [HELLO_VIP], ports: [{ servicePort: 5000, targetPort: 5000 }] }));
    addWorkloads(state, pod('sick', { ips: ['10.0.1.4'], status: WorkloadStatus.UNHEALTHY, services: backs(5000, 5000) }));
    const { evaluation } = serviceAnalysis(state);
    assert.deepEqual(evaluation.chosenFrom, []);
    assert.equal(evaluation.unavailable, unavailableReason(state.resolve(client, HELLO_VIP, 5000)));
  });

  it('says why a destination passes through', () => {
    const state = newState();
    addService(state, service(HELLO, { vips: [HELLO_VIP], ports: [{ servicePort: 5000, targetPort: 5000 }] }));
    const noEndpoints = state.analyzeDestination(client, HELLO_VIP, 5000);
    assert.equal(noEndpoints.kind, 'passthrough');
    if (noEndpoints.kind === 'passthrough') assert.match(noEndpoints.reason, /has no endpoints known to the mesh/);
    const noPort = state.analyzeDestination(client, HELLO_VIP, 80);
    if (noPort.kind === 'passthrough') assert.match(noPort.reason, /has no port 80/);
    const unknown = state.analyzeDestination(client, '192.0.2.1', 80);
    if (unknown.kind === 'passthrough') assert.match(unknown.reason, /192\.0\.2\.1 is neither a service VIP nor a workload address/);
    assert.equal(unknown.kind, 'passthrough');
  });
});

describe('ztunnel state: hostname targets of inbound HBONE', () => {
  const local = pod('hello-v1', {
    ips: ['10.0.1.1'],
    services: {
      [HELLO_KEY]: { ports: [{ servicePort: 5000, targetPort: 8080 }, { servicePort: 6000, targetPort: 0 }] },
      ...backs(7000, 0, 'default/other.default.svc.cluster.local'),
    },
  });

  it('delivers a service port to the target port of a service the workload backs', () => {
    const state = newState();
    addService(state, service(HELLO, { vips: [HELLO_VIP], ports: [{ servicePort: 5000, targetPort: 5000 }, { servicePort: 6000, targetPort: 6060 }] }));
    addWorkloads(state, local);
    assert.deepEqual(state.serviceTarget(local, HELLO, 5000), { kind: 'found', serviceName: HELLO_KEY, service: state.service(HELLO_KEY), targetPort: 8080 });
    assert.equal((state.serviceTarget(local, HELLO, 6000) as { targetPort: number }).targetPort, 6060, 'no workload target: the service target port');
    // The service itself not (yet) sent: the workload's own port list decides.
    const other = state.serviceTarget(local, 'other.default.svc.cluster.local', 7000);
    assert.deepEqual(other, { kind: 'found', serviceName: 'default/other.default.svc.cluster.local', service: undefined, targetPort: 7000 });
  });

  it('refuses a hostname the workload does not back, or a port its service lacks', () => {
    const state = newState();
    addService(state, service(HELLO, { vips: [HELLO_VIP], ports: [{ servicePort: 5000, targetPort: 5000 }] }));
    addWorkloads(state, local);
    const notBacked = state.serviceTarget(local, 'reviews.default.svc.cluster.local', 5000);
    assert.equal(notBacked.kind, 'refused');
    assert.match(notBacked.kind === 'refused' ? notBacked.reason : '', /workload default\/hello-v1 does not back a service with hostname reviews\.default\.svc\.cluster\.local/);
    const noPort = state.serviceTarget(local, HELLO, 5001);
    assert.match(noPort.kind === 'refused' ? noPort.reason : '', /service default\/helloworld\.default\.svc\.cluster\.local backed by workload default\/hello-v1 has no port 5001/);
  });
});

// ---- authorization ---------------------------------------------------------------------------------

type MatchInit = Exclude<MessageInitShape<typeof MatchSchema>, Match>;
type AuthorizationInit = Exclude<MessageInitShape<typeof AuthorizationSchema>, Authorization>;

function policy(name: string, action: Action, matches: MatchInit[] | null, extra: AuthorizationInit = {}): Authorization {
  return create(AuthorizationSchema, {
    name,
    namespace: 'default',
    scope: Scope.NAMESPACE,
    action,
    // null: a policy with no rules at all; []: one rule without clauses (matches everything).
    rules: matches === null ? [] : [{ clauses: matches.length === 0 ? [] : [{ matches }] }],
    ...extra,
  });
}

const allowPolicy = (name: string, matches: MatchInit[] | null, extra: AuthorizationInit = {}) => policy(name, Action.ALLOW, matches, extra);
const denyPolicy = (name: string, matches: MatchInit[] | null, extra: AuthorizationInit = {}) => policy(name, Action.DENY, matches, extra);

const CURL = 'spiffe://cluster.local/ns/default/sa/curl';
const server = pod('server', { ips: ['10.0.1.1'] });

function withPolicies(...policies: Authorization[]): ZtunnelState {
  const state = newState();
  state.applyAuthorizations(
    policies.map((authorization) => ({ name: `${authorization.namespace}/${authorization.name}`, authorization })),
    [],
  );
  return state;
}

function check(state: ZtunnelState, overrides: { sourceIdentity?: string | null; sourceIp?: string; destinationPort?: number; destinationIp?: string; destination?: Workload } = {}) {
  const { sourceIdentity = CURL, ...rest } = overrides;
  return state.authorize({
    sourceIdentity: sourceIdentity ?? undefined,
    sourceIp: '10.0.0.1',
    destinationIp: '10.0.1.1',
    destinationPort: 8080,
    destination: server,
    ...rest,
  });
}

const exact = (value: string) => ({ matchType: { case: 'exact' as const, value } });
const prefix = (value: string) => ({ matchType: { case: 'prefix' as const, value } });
const suffix = (value: string) => ({ matchType: { case: 'suffix' as const, value } });
const presence = () => ({ matchType: { case: 'presence' as const, value: {} } });
const cidr = (ip: string, length: number) => ({ address: ipToBytes(ip), length });

describe('ztunnel state: authorize', () => {
  it('allows when no policy applies', () => {
    const decision = check(newState());
    assert.equal(decision.allowed, true);
    assert.equal(decision.policy, undefined);
    assert.match(decision.reason, /no authorization policy applies to default\/server/);
  });

  it('lets a matching DENY win over a matching ALLOW', () => {
    const state = withPolicies(allowPolicy('allow-all', []), denyPolicy('deny-curl', [{ principals: [exact('cluster.local/ns/default/sa/curl')] }]));
    const decision = check(state);
    assert.deepEqual({ allowed: decision.allowed, policy: decision.policy }, { allowed: false, policy: 'default/deny-curl' });
    assert.match(decision.reason, /denied by DENY policy default\/deny-curl \(rules\[0\] matched\)/);
    const other = check(state, { sourceIdentity: 'spiffe://cluster.local/ns/default/sa/other' });
    assert.deepEqual({ allowed: other.allowed, policy: other.policy }, { allowed: true, policy: 'default/allow-all' });
    assert.match(other.reason, /allowed by ALLOW policy default\/allow-all/);
  });

  it('denies everything under an ALLOW policy without rules', () => {
    const decision = check(withPolicies(allowPolicy('allow-nothing', null)));
    assert.equal(decision.allowed, false);
    assert.match(decision.reason, /no ALLOW policy matched \(default\/allow-nothing\)/);
  });

  it('does not let a DENY policy without rules deny', () => {
    assert.equal(check(withPolicies(denyPolicy('deny-nothing', null))).allowed, true);
  });

  it('applies namespace, global and selector scopes to the right workloads', () => {
    const elsewhere = pod('elsewhere', { namespace: 'other' });
    const namespaced = withPolicies(allowPolicy('nobody', null));
    assert.equal(check(namespaced).allowed, false);
    assert.equal(check(namespaced, { destination: elsewhere }).allowed, true);

    const global = withPolicies(allowPolicy('nobody', null, { namespace: SYSTEM_NAMESPACE, scope: Scope.GLOBAL }));
    assert.equal(check(global).allowed, false);
    assert.equal(check(global, { destination: elsewhere }).allowed, false);

    // GLOBAL outside the root namespace is narrowed to its own namespace.
    const strayGlobal = withPolicies(allowPolicy('nobody', null, { scope: Scope.GLOBAL }));
    assert.equal(check(strayGlobal).allowed, false);
    assert.equal(check(strayGlobal, { destination: elsewhere }).allowed, true);

    const selector = withPolicies(allowPolicy('nobody', null, { scope: Scope.WORKLOAD_SELECTOR }));
    assert.equal(check(selector).allowed, true, 'not selected by the workload');
    const selected = pod('server', { ips: ['10.0.1.1'], authorizationPolicies: ['default/nobody', 'default/not-yet-sent'] });
    assert.equal(check(selector, { destination: selected }).allowed, false);
  });

  it('matches principals by exact, prefix, suffix and presence, without spiffe://', () => {
    const cases: Array<[MatchInit, string | null, boolean]> = [
      [{ principals: [exact('cluster.local/ns/default/sa/curl')] }, CURL, true],
      [{ principals: [exact(CURL)] }, CURL, false],
      [{ principals: [prefix('cluster.local/ns/default/')] }, CURL, true],
      [{ principals: [prefix('cluster.local/ns/prod/')] }, CURL, false],
      [{ principals: [suffix('/sa/curl')] }, CURL, true],
      [{ principals: [suffix('/sa/sleep')] }, CURL, false],
      [{ principals: [presence()] }, CURL, true],
      [{ principals: [presence()] }, null, false],
      [{ principals: [suffix('/sa/sleep'), suffix('/sa/curl')] }, CURL, true],
    ];
    for (const [match, identity, allowed] of cases) {
      const decision = check(withPolicies(allowPolicy('p', [match])), { sourceIdentity: identity });
      assert.equal(decision.allowed, allowed, `${JSON.stringify(match)} for ${identity}`);
    }
  });

  it('evaluates not_* fields, including for plaintext sources', () => {
    const notCurl = withPolicies(allowPolicy('p', [{ notPrincipals: [suffix('/sa/curl')] }]));
    assert.equal(check(notCurl).allowed, false);
    assert.equal(check(notCurl, { sourceIdentity: 'spiffe://cluster.local/ns/default/sa/web' }).allowed, true);
    assert.equal(check(notCurl, { sourceIdentity: null }).allowed, true, 'nothing to exclude without an identity');

    const notDefaultNs = withPolicies(denyPolicy('d', [{ notNamespaces: [exact('default')] }]));
    assert.equal(check(notDefaultNs).allowed, true);
    assert.equal(check(notDefaultNs, { sourceIdentity: 'spiffe://cluster.local/ns/prod/sa/curl' }).allowed, false);
    assert.equal(check(notDefaultNs, { sourceIdentity: null }).allowed, false);

    const namespaces = withPolicies(allowPolicy('p', [{ namespaces: [exact('default')] }]));
    assert.equal(check(namespaces).allowed, true);
    assert.equal(check(namespaces, { sourceIdentity: null }).allowed, false);

    const accounts = withPolicies(allowPolicy('p', [{ serviceAccounts: [{ namespace: 'default', serviceAccount: 'curl' }] }]));
    assert.equal(check(accounts).allowed, true);
    assert.equal(check(accounts, { sourceIdentity: 'spiffe://cluster.local/ns/prod/sa/curl' }).allowed, false);
    assert.equal(check(accounts, { sourceIdentity: null }).allowed, false);
    const notAccounts = withPolicies(denyPolicy('d', [{ notServiceAccounts: [{ namespace: 'default', serviceAccount: 'curl' }] }]));
    assert.equal(check(notAccounts).allowed, true);
    assert.equal(check(notAccounts, { sourceIdentity: null }).allowed, false);
  });

  it('matches destination ports and CIDRs', () => {
    const ports = withPolicies(allowPolicy('p', [{ destinationPorts: [8080, 9090], notDestinationPorts: [9090] }]));
    assert.equal(check(ports).allowed, true);
    assert.equal(check(ports, { destinationPort: 9090 }).allowed, false);
    assert.equal(check(ports, { destinationPort: 80 }).allowed, false);

    const sources = withPolicies(allowPolicy('p', [{ sourceIps: [cidr('10.0.0.0', 23)], notSourceIps: [cidr('10.0.1.128', 25)] }]));
    assert.equal(check(sources, { sourceIp: '10.0.1.5' }).allowed, true);
    assert.equal(check(sources, { sourceIp: '::ffff:10.0.1.5' }).allowed, true, 'IPv4-mapped source');
    assert.equal(check(sources, { sourceIp: '10.0.1.200' }).allowed, false);
    assert.equal(check(sources, { sourceIp: '10.0.2.1' }).allowed, false);
    assert.equal(check(sources, { sourceIp: 'fd00::1' }).allowed, false);

    const v6 = withPolicies(denyPolicy('d', [{ destinationIps: [cidr('fd00:1::', 32)] }]));
    assert.equal(check(v6, { destinationIp: 'fd00:1:ffff::9' }).allowed, false);
    assert.equal(check(v6, { destinationIp: 'fd00:2::9' }).allowed, true);
    assert.equal(check(v6).allowed, true);
  });

  it('needs every clause of a rule and any rule of a policy', () => {
    const twoClauses = create(AuthorizationSchema, {
      name: 'p',
      namespace: 'default',
      scope: Scope.NAMESPACE,
      action: Action.ALLOW,
      rules: [
        { clauses: [{ matches: [{ principals: [suffix('/sa/curl')] }] }, { matches: [{ destinationPorts: [8080] }] }] },
        { clauses: [{ matches: [{ destinationPorts: [22] }] }] },
      ],
    });
    const state = withPolicies(twoClauses);
    assert.equal(check(state).allowed, true);
    assert.equal(check(state, { destinationPort: 9090 }).allowed, false);
    assert.equal(check(state, { sourceIdentity: null }).allowed, false);
    const viaSecondRule = check(state, { sourceIdentity: null, destinationPort: 22 });
    assert.equal(viaSecondRule.allowed, true);
    assert.match(viaSecondRule.reason, /rules\[1\] matched/);
  });

  it('treats a Match with no fields as matching nothing, as ztunnel does', () => {
    assert.equal(check(withPolicies(allowPolicy('p', [{}]))).allowed, false);
  });

  it('reports dry-run policies without enforcing them', () => {
    const dryDeny = check(withPolicies(denyPolicy('would-deny', [], { dryRun: true })));
    assert.equal(dryDeny.allowed, true);
    assert.match(dryDeny.reason, /dry-run: DENY policy default\/would-deny \(rules\[0\] matched\) would deny/);

    const dryAllowNothing = check(withPolicies(allowPolicy('would-allow-nothing', null, { dryRun: true })));
    assert.equal(dryAllowNothing.allowed, true);
    assert.match(dryAllowNothing.reason, /dry-run: no dry-run ALLOW policy matches, enforcing them would deny/);

    const withEnforced = check(withPolicies(allowPolicy('allow-curl', [{ principals: [suffix('/sa/curl')] }]), allowPolicy('would-allow', [], { dryRun: true })));
    assert.equal(withEnforced.policy, 'default/allow-curl');
    assert.match(withEnforced.reason, /dry-run: ALLOW policy default\/would-allow \(rules\[0\] matched\) would allow/);
  });

  it('stops applying a removed policy', () => {
    const state = withPolicies(allowPolicy('nobody', null));
    assert.equal(check(state).allowed, false);
    state.applyAuthorizations([], ['default/nobody']);
    assert.equal(check(state).allowed, true);
    assert.deepEqual(state.authorizations(), []);
  });
});
