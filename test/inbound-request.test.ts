// Unit tests of ztunnel's inbound decision (buildInboundRequest): which source authorization sees, which targets are refused, what clients are told, which labels metrics get.
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http2';
import { describe, test } from 'node:test';

import { create } from '@bufbuild/protobuf';

import { bytesToIp, ipToBytes } from '../src/api/ip.js';
import { GatewayAddressSchema, NamespacedHostnameSchema, NetworkMode, PortListSchema, PortSchema, TunnelProtocol, WorkloadSchema, type Workload } from '../src/gen/istio/workload/workload_pb.js';
import { authorizedSourceIp, buildInboundRequest, ZTUNNEL_PORTS, type InboundConnectionFacts, type InboundState } from '../src/ztunnel/proxy/inbound.js';
import { serviceTargetOf } from '../src/ztunnel/state/service-target.js';
import type { AuthorizationDecision, ConnectionFacts } from '../src/ztunnel/state/types.js';

const CLUSTER = 'cluster1';
const spiffe = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
const WAYPOINT_IDENTITY = spiffe('sample', 'waypoint');

function workload(name: string, ip: string, options: { ns?: string; sa?: string; node?: string; hostNetwork?: boolean; uid?: string; network?: string; cluster?: string; services?: Record<string, [number, number]> } = {}): Workload {
  const ns = options.ns ?? 'sample';
  return create(WorkloadSchema, {
    uid: options.uid ?? `${options.cluster ?? CLUSTER}//Pod/${ns}/${name}`,
    name,
    namespace: ns,
    addresses: [ipToBytes(ip)],
    serviceAccount: options.sa ?? name,
    node: options.node ?? 'node1',
    workloadName: name,
    canonicalName: name,
    canonicalRevision: 'v1',
    network: options.network ?? '',
    tunnelProtocol: options.hostNetwork ? TunnelProtocol.NONE : TunnelProtocol.HBONE,
    networkMode: options.hostNetwork ? NetworkMode.HOST_NETWORK : NetworkMode.STANDARD,
    clusterId: options.cluster ?? CLUSTER,
    services: Object.fromEntries(Object.entries(options.services ?? {}).map(([name, [servicePort, targetPort]]) => [name, create(PortListSchema, { ports: [create(PortSchema, { servicePort, targetPort })] })])),
  });
}

const NODE1_IP = '10.0.0.1';
const NODE2_IP = '10.0.0.2';
const HELLO_IP = '10.1.1.10';
const SLEEP_IP = '10.1.1.20'; // on node1, like helloworld
const REMOTE_SLEEP_IP = '10.1.2.20'; // on node2
const EVIL_IP = '10.1.1.66'; // a pod with a certificate of its own
const GATEWAY_IP = '10.1.1.99';

const hello = workload('helloworld', HELLO_IP, { services: { 'sample/helloworld.sample.svc.cluster.local': [5000, 5000] } });
const sleep = workload('sleep', SLEEP_IP);
const remoteSleep = workload('sleep-2', REMOTE_SLEEP_IP, { sa: 'sleep', node: 'node2' });
const evil = workload('evil', EVIL_IP, { ns: 'evil' });
const gateway = workload('east-west', GATEWAY_IP, { ns: 'istio-system', sa: 'istio-eastwestgateway', uid: `${CLUSTER}/Gateway/istio-system/east-west` });
const ztunnel1 = workload('ztunnel-1', NODE1_IP, { ns: 'istio-system', sa: 'ztunnel', hostNetwork: true });
const ztunnel2 = workload('ztunnel-2', NODE2_IP, { ns: 'istio-system', sa: 'ztunnel', node: 'node2', hostNetwork: true });
// A node named like ours in another cluster on the same network: its pods are never "ours".
const foreignZtunnel = workload('ztunnel-x', '10.0.9.1', { ns: 'istio-system', sa: 'ztunnel', node: 'node1', hostNetwork: true, cluster: 'cluster9' });

const WORKLOADS = [hello, sleep, remoteSleep, evil, gateway, ztunnel1, ztunnel2, foreignZtunnel];

function fakeState(overrides: Partial<InboundState> = {}): InboundState & { decisions: ConnectionFacts[] } {
  const decisions: ConnectionFacts[] = [];
  const pods = WORKLOADS.filter((w) => w.networkMode !== NetworkMode.HOST_NETWORK);
  const hostNetwork = WORKLOADS.filter((w) => w.networkMode === NetworkMode.HOST_NETWORK);
  const has = (w: Workload, ip: string) => w.addresses.some((address) => bytesToIp(address) === ip);
  return {
    decisions,
    network: 'network1',
    clusterId: CLUSTER,
    workloadByIp: (ip, network) => (network === undefined || network === 'network1' ? pods.find((w) => has(w, ip)) : undefined),
    hostNetworkWorkloadsAt: (ip) => hostNetwork.filter((w) => has(w, ip)),
    waypointIdentities: () => [WAYPOINT_IDENTITY],
    knowsNetwork: (network) => network === 'network1' || network === 'network2',
    serviceTarget: (destination, hostname, port) => serviceTargetOf(destination, hostname, port, () => undefined),
    authorize: (facts): AuthorizationDecision => {
      decisions.push(facts);
      return facts.sourceIp === EVIL_IP ? { allowed: false, policy: 'sample/deny-evil-ip', reason: 'matched a DENY rule' } : { allowed: true, reason: 'no policy' };
    },
    isRelay: (w) => w.uid.includes('/Gateway/'),
    ...overrides,
  };
}

function facts(peerIp: string, peerIdentity: string): InboundConnectionFacts {
  return { peerIp, peerIdentity, original: { ip: HELLO_IP, port: 15008 }, destination: hello, destinationIdentity: spiffe('sample', 'helloworld') };
}

const connect = (authority: string, extra: IncomingHttpHeaders = {}): IncomingHttpHeaders => ({ ':method': 'CONNECT', ':authority': authority, ...extra });

describe('inbound source address (DESIGN §11: only what is authenticated)', () => {
  const state = fakeState();

  test('a pod dialling from its own address with its own certificate is its own address, whatever forwarded claims', () => {
    assert.equal(authorizedSourceIp({ peerIp: EVIL_IP, peerIdentity: spiffe('evil', 'evil') }, `for="${SLEEP_IP}"`, state), EVIL_IP);
    assert.equal(authorizedSourceIp({ peerIp: EVIL_IP, peerIdentity: spiffe('evil', 'evil') }, `for="${EVIL_IP}"`, state), EVIL_IP);
    assert.equal(authorizedSourceIp({ peerIp: EVIL_IP, peerIdentity: spiffe('evil', 'evil') }, undefined, state), EVIL_IP);
  });

  test("a node's ztunnel may name its own pods, with their identity", () => {
    assert.equal(authorizedSourceIp({ peerIp: NODE1_IP, peerIdentity: spiffe('sample', 'sleep') }, `for="${SLEEP_IP}"`, state), SLEEP_IP);
    assert.equal(authorizedSourceIp({ peerIp: NODE2_IP, peerIdentity: spiffe('sample', 'sleep') }, `for="${REMOTE_SLEEP_IP}"`, state), REMOTE_SLEEP_IP);
  });

  test("but not another node's pods, another identity's pods, or pods of a same-named node in another cluster", () => {
    assert.equal(authorizedSourceIp({ peerIp: NODE2_IP, peerIdentity: spiffe('sample', 'sleep') }, `for="${SLEEP_IP}"`, state), NODE2_IP, 'sleep runs on node1');
    assert.equal(authorizedSourceIp({ peerIp: NODE1_IP, peerIdentity: spiffe('evil', 'evil') }, `for="${SLEEP_IP}"`, state), NODE1_IP, 'the certificate is not sleep’s');
    assert.equal(authorizedSourceIp({ peerIp: '10.0.9.1', peerIdentity: spiffe('sample', 'sleep') }, `for="${SLEEP_IP}"`, state), '10.0.9.1', 'node1 of cluster9 is not our node1');
    assert.equal(authorizedSourceIp({ peerIp: NODE1_IP, peerIdentity: spiffe('sample', 'sleep') }, 'for="10.9.9.9"', state), NODE1_IP, 'an address nobody has');
  });

  test('a relay (east-west gateway) speaking with its own identity may name its client', () => {
    assert.equal(authorizedSourceIp({ peerIp: GATEWAY_IP, peerIdentity: spiffe('istio-system', 'istio-eastwestgateway') }, `for="${REMOTE_SLEEP_IP}"`, state), REMOTE_SLEEP_IP);
    assert.equal(authorizedSourceIp({ peerIp: GATEWAY_IP, peerIdentity: spiffe('sample', 'sleep') }, `for="${SLEEP_IP}"`, state), GATEWAY_IP, 'inner TLS through the gateway: the gateway pod is the source');
  });

  test('the forged address never reaches authorization, and the DENY on the real address holds', () => {
    const local = fakeState();
    const request = buildInboundRequest(facts(EVIL_IP, spiffe('evil', 'evil')), connect(`${HELLO_IP}:5000`, { forwarded: `for="${SLEEP_IP}"` }), local);
    assert.equal(request.kind, 'reject');
    assert.equal(request.kind === 'reject' && request.status, 401);
    assert.deepEqual(local.decisions.map((d) => d.sourceIp), [EVIL_IP]);
  });
});

describe('inbound targets and answers', () => {
  const state = fakeState();
  const fromSleep = facts(NODE1_IP, spiffe('sample', 'sleep'));

  test('a CONNECT to one of ztunnel’s own ports is refused with 400, by address or through a service', () => {
    for (const port of ZTUNNEL_PORTS) {
      const request = buildInboundRequest(fromSleep, connect(`${HELLO_IP}:${port}`), state);
      assert.equal(request.kind, 'reject', `port ${port}`);
      assert.equal(request.kind === 'reject' && request.status, 400);
      assert.equal(request.kind === 'reject' && request.reason, 'ztunnel_port');
    }
    assert.deepEqual([...ZTUNNEL_PORTS].sort((a, b) => a - b), [15000, 15001, 15006, 15008, 15020, 15021, 15053]);
  });

  test('an address other than the one dialled is refused without naming the real one', () => {
    const request = buildInboundRequest(fromSleep, connect('10.1.1.11:5000'), state);
    assert.ok(request.kind === 'reject');
    assert.equal(request.status, 400);
    assert.equal(request.reason, 'authority_mismatch');
    assert.ok(!request.message.includes(HELLO_IP), request.message);
    assert.equal(request.logFields.destination, HELLO_IP, 'the log has it');
  });

  test('through an east-west gateway a CONNECT must name a service, never a pod address', () => {
    const viaGateway = facts(GATEWAY_IP, spiffe('sample', 'sleep'));
    const byAddress = buildInboundRequest(viaGateway, connect(`${HELLO_IP}:5000`), state);
    assert.ok(byAddress.kind === 'reject');
    assert.equal(byAddress.reason, 'address_through_gateway');
    assert.ok(!byAddress.message.includes(HELLO_IP));
    const claimedNetwork = buildInboundRequest(fromSleep, connect(`${HELLO_IP}:5000`, { 'x-forwarded-network': 'network2' }), state);
    assert.ok(claimedNetwork.kind === 'reject' && claimedNetwork.reason === 'address_through_gateway');
    const byService = buildInboundRequest(viaGateway, connect('helloworld.sample.svc.cluster.local:5000', { 'x-forwarded-network': 'network2' }), state);
    assert.equal(byService.kind, 'forward');
  });

  test('a service the destination does not back is refused without naming the workload', () => {
    const request = buildInboundRequest(fromSleep, connect('other.sample.svc.cluster.local:80'), state);
    assert.ok(request.kind === 'reject');
    assert.equal(request.reason, 'unknown_service');
    assert.ok(!/helloworld|10\.1\./.test(request.message), request.message);
  });

  test('a long malformed authority is not echoed back in full', () => {
    const request = buildInboundRequest(fromSleep, connect('x'.repeat(5000)), state);
    assert.ok(request.kind === 'reject');
    assert.ok(request.message.length < 400, `${request.message.length} characters`);
  });

  test('a policy denial is 401 with the policy named, and counted as a refused connection', () => {
    const request = buildInboundRequest(facts(EVIL_IP, spiffe('evil', 'evil')), connect(`${HELLO_IP}:5000`), state);
    assert.ok(request.kind === 'reject');
    assert.equal(request.status, 401);
    assert.match(request.message, /sample\/deny-evil-ip/);
    assert.equal(request.refused?.responseFlags, 'DENY');
  });
});

describe('inbound metric labels: the registry or the certificate, never the baggage', () => {
  const state = fakeState();
  const baggage = 'k8s.cluster.name=random-1,k8s.namespace.name=random-2,k8s.deployment.name=random-3,service.name=random-4,service.version=random-5';

  test('a known source gets its registry labels', () => {
    const request = buildInboundRequest(facts(NODE1_IP, spiffe('sample', 'sleep')), connect(`${HELLO_IP}:5000`, { forwarded: `for="${SLEEP_IP}"`, baggage }), state);
    assert.ok(request.kind === 'forward');
    assert.equal(request.description.source.workload, 'sleep');
    assert.equal(request.description.source.cluster, CLUSTER);
  });

  test('an unknown source gets its identity and namespace from the certificate, the rest unknown', () => {
    const request = buildInboundRequest(facts(EVIL_IP, spiffe('evil', 'evil')), connect('helloworld.sample.svc.cluster.local:5000', { baggage, 'x-forwarded-network': 'made-up' }), fakeState({ authorize: () => ({ allowed: true, reason: 'no policy' }), workloadByIp: () => undefined }));
    assert.ok(request.kind === 'forward');
    assert.deepEqual(request.description.source, { principal: spiffe('evil', 'evil'), namespace: 'evil', cluster: undefined });
    assert.ok(!JSON.stringify(request.description).includes('random-'), 'nothing from the baggage');
  });

  test('a client of another network the mesh knows is labelled with that network', () => {
    const request = buildInboundRequest(facts(GATEWAY_IP, spiffe('sample', 'sleep')), connect('helloworld.sample.svc.cluster.local:5000', { baggage, 'x-forwarded-network': 'network2' }), state);
    assert.ok(request.kind === 'forward');
    assert.equal(request.description.source.cluster, 'network:network2');
    assert.equal(request.description.source.workload, undefined);
  });
});

describe('inbound sandwich rule: a workload with a waypoint is reached only through it', () => {
  const behindWaypoint = create(WorkloadSchema, {
    ...hello,
    waypoint: create(GatewayAddressSchema, {
      destination: { case: 'hostname', value: create(NamespacedHostnameSchema, { namespace: 'sample', hostname: 'waypoint.sample.svc.cluster.local' }) },
      hboneMtlsPort: 15008,
    }),
  });
  const factsTo = (peerIdentity: string): InboundConnectionFacts => ({ ...facts(NODE1_IP, peerIdentity), destination: behindWaypoint });

  test('a client that goes around the waypoint is refused (401, waypoint_bypassed) before any policy is evaluated', () => {
    const state = fakeState();
    const request = buildInboundRequest(factsTo(spiffe('sample', 'sleep')), connect(`${HELLO_IP}:5000`), state);
    assert.equal(request.kind, 'reject');
    assert.equal(request.kind === 'reject' && request.status, 401);
    assert.equal(request.kind === 'reject' && request.reason, 'waypoint_bypassed');
    assert.match(request.kind === 'reject' ? request.message : '', /through its waypoint sample\/waypoint\.sample\.svc\.cluster\.local/);
    assert.equal(request.kind === 'reject' && request.refused?.responseFlags, 'DENY');
    assert.equal(state.decisions.length, 0);
  });

  test('the waypoint itself is let through, and the destination\'s L4 policy still decides for its identity', () => {
    const state = fakeState();
    const request = buildInboundRequest(factsTo(WAYPOINT_IDENTITY), connect(`${HELLO_IP}:5000`), state);
    assert.equal(request.kind, 'forward');
    assert.deepEqual(state.decisions.map((d) => d.sourceIdentity), [WAYPOINT_IDENTITY]);
  });

  test('a waypoint the mesh does not know fails closed', () => {
    const state = fakeState({ waypointIdentities: () => [] });
    assert.equal(buildInboundRequest(factsTo(WAYPOINT_IDENTITY), connect(`${HELLO_IP}:5000`), state).kind, 'reject');
  });
});
