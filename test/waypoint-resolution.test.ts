/** ztunnel's resolution of destinations served by a waypoint (Service.waypoint, Workload.waypoint), fed objects directly. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { pino } from 'pino';

import { ipToBytes } from '../src/api/ip.js';
import {
  GatewayAddressSchema,
  LoadBalancing_Mode,
  LoadBalancing_Scope,
  LoadBalancingSchema,
  NamespacedHostnameSchema,
  NetworkAddressSchema,
  PortListSchema,
  PortSchema,
  ServiceSchema,
  TunnelProtocol,
  WorkloadSchema,
  WorkloadStatus,
  type Workload,
} from '../src/gen/istio/workload/workload_pb.js';
import { buildConfigDump } from '../src/ztunnel/admin/config-dump.js';
import { ZtunnelState } from '../src/ztunnel/state/store.js';

const CLUSTER = 'cluster1';
const WAYPOINT_HOST = 'waypoint.default.svc.cluster.local';
const waypointAddress = () =>
  create(GatewayAddressSchema, { destination: { case: 'hostname', value: create(NamespacedHostnameSchema, { namespace: 'default', hostname: WAYPOINT_HOST }) }, hboneMtlsPort: 15008 });

function pod(name: string, ip: string, sa: string, services: Record<string, [number, number]>, extra: Omit<MessageInitShape<typeof WorkloadSchema>, '$typeName'> = {}): Workload {
  return create(WorkloadSchema, {
    uid: `${CLUSTER}//Pod/default/${name}`,
    name,
    namespace: 'default',
    addresses: [ipToBytes(ip)],
    serviceAccount: sa,
    node: 'node1',
    clusterId: CLUSTER,
    tunnelProtocol: TunnelProtocol.HBONE,
    services: Object.fromEntries(Object.entries(services).map(([svc, [servicePort, targetPort]]) => [svc, create(PortListSchema, { ports: [create(PortSchema, { servicePort, targetPort })] })])),
    ...extra,
  });
}

function service(name: string, vip: string, port: number, withWaypoint: boolean) {
  return create(ServiceSchema, {
    name,
    namespace: 'default',
    hostname: `${name}.default.svc.cluster.local`,
    addresses: [create(NetworkAddressSchema, { network: '', address: ipToBytes(vip) })],
    ports: [create(PortSchema, { servicePort: port, targetPort: port })],
    waypoint: withWaypoint ? waypointAddress() : undefined,
  });
}

function state(options: { waypointHealthy?: boolean; extra?: Workload[]; waypointService?: boolean; waypointPods?: boolean; waypointLoadBalancing?: MessageInitShape<typeof LoadBalancingSchema> } = {}): ZtunnelState {
  const s = new ZtunnelState({ network: '', nodeName: 'node1', clusterId: CLUSTER, systemNamespace: 'istio-system', logger: pino({ level: 'silent' }) });
  const waypointService = create(ServiceSchema, { ...service('waypoint', '10.96.0.20', 15008, false), loadBalancing: options.waypointLoadBalancing && create(LoadBalancingSchema, options.waypointLoadBalancing) });
  const services = [service('productpage', '10.96.0.10', 9080, true), service('reviews', '10.96.0.11', 9080, false), ...(options.waypointService === false ? [] : [waypointService])];
  const workloads = [
    pod('productpage-1', '10.1.0.10', 'bookinfo-productpage', { 'default/productpage.default.svc.cluster.local': [9080, 9080] }),
    pod('reviews-1', '10.1.0.11', 'bookinfo-reviews', { 'default/reviews.default.svc.cluster.local': [9080, 9080] }, { waypoint: waypointAddress() }),
    pod('waypoint-1', '10.1.0.20', 'waypoint', { [`default/${WAYPOINT_HOST}`]: [15008, 15008] }, {
      tunnelProtocol: TunnelProtocol.NONE,
      status: options.waypointHealthy === false ? WorkloadStatus.UNHEALTHY : WorkloadStatus.HEALTHY,
    }),
    pod('sleep-1', '10.1.0.30', 'sleep', {}),
    ...(options.extra ?? []),
  ].filter((w) => options.waypointPods !== false || !w.name.startsWith('waypoint-'));
  s.applyAddresses([...services.map((svc) => ({ name: `default/${svc.hostname}`, service: svc })), ...workloads.map((w) => ({ name: w.uid, workload: w }))], []);
  return s;
}

const sleep = () => state().workloadByIp('10.1.0.30')!;

describe('ztunnel resolution through waypoints', () => {
  test('a service with Service.waypoint goes to a waypoint pod on 15008, CONNECT VIP:port, expecting the waypoint identity', () => {
    const s = state();
    const r = s.resolve(s.workloadByIp('10.1.0.30')!, '10.96.0.10', 9080);
    assert.equal(r.kind, 'waypoint');
    if (r.kind !== 'waypoint') return;
    assert.deepEqual([r.upstream.address, r.upstream.port, r.authority], ['10.1.0.20', 15008, '10.96.0.10:9080']);
    assert.deepEqual(r.upstream.expectedIdentities, ['spiffe://cluster.local/ns/default/sa/waypoint']);
    assert.equal(r.service?.name, 'productpage');
  });

  test('a pod with Workload.waypoint, addressed directly or picked for a service, goes to the waypoint with CONNECT pod:port', () => {
    const s = state();
    const direct = s.resolve(sleep(), '10.1.0.11', 9080);
    assert.equal(direct.kind === 'waypoint' && direct.authority, '10.1.0.11:9080');
    const viaService = s.resolve(sleep(), '10.96.0.11', 9080);
    assert.equal(viaService.kind, 'waypoint');
    assert.equal(viaService.kind === 'waypoint' && viaService.authority, '10.1.0.11:9080');
    assert.equal(viaService.kind === 'waypoint' && viaService.destination?.name, 'reviews-1');
  });

  test('the waypoint itself (ignoreWaypoints) resolves to the endpoint', () => {
    const s = state();
    const r = s.resolve(sleep(), '10.96.0.10', 9080, { ignoreWaypoints: true });
    assert.equal(r.kind, 'hbone');
    assert.equal(r.kind === 'hbone' && r.upstream.address, '10.1.0.10');
  });

  test('a waypoint without a healthy pod makes the destination unavailable, naming the waypoint', () => {
    const s = state({ waypointHealthy: false });
    const r = s.resolve(s.workloadByIp('10.1.0.30')!, '10.96.0.10', 9080);
    assert.equal(r.kind, 'unavailable');
    assert.match(r.kind === 'unavailable' ? r.reason : '', /^waypoint default\/waypoint\.default\.svc\.cluster\.local has no usable pod: .*none healthy/);
    // A pod behind the waypoint, addressed directly, is unavailable too: never reached around it.
    assert.equal(s.resolve(sleep(), '10.1.0.11', 9080).kind, 'unavailable');
  });

  test('the identities allowed to reach a workload behind its waypoint are the waypoint pods\'', () => {
    assert.deepEqual(state().waypointIdentities(waypointAddress()), ['spiffe://cluster.local/ns/default/sa/waypoint']);
  });

  test('waypoint pods are picked like endpoints: healthy ones only, and the waypoint Service\'s locality preference', () => {
    const secondPod = (node: string, healthy: boolean) =>
      pod('waypoint-2', '10.1.0.21', 'waypoint', { [`default/${WAYPOINT_HOST}`]: [15008, 15008] }, { node, tunnelProtocol: TunnelProtocol.NONE, status: healthy ? WorkloadStatus.HEALTHY : WorkloadStatus.UNHEALTHY });
    const picks = (s: ZtunnelState) => new Set(Array.from({ length: 40 }, () => {
      const r = s.resolve(s.workloadByIp('10.1.0.30')!, '10.96.0.10', 9080);
      return r.kind === 'waypoint' ? r.upstream.address : r.kind;
    }));
    assert.deepEqual(picks(state({ waypointHealthy: false, extra: [secondPod('node2', true)] })), new Set(['10.1.0.21']));
    assert.deepEqual(picks(state({ extra: [secondPod('node2', true)] })), new Set(['10.1.0.20', '10.1.0.21']));
    const nodeFirst = { mode: LoadBalancing_Mode.FAILOVER, routingPreference: [LoadBalancing_Scope.NODE] };
    // sleep-1 and waypoint-1 are on node1: with NODE preferred, the node2 pod is never picked.
    assert.deepEqual(picks(state({ waypointLoadBalancing: nodeFirst, extra: [secondPod('node2', true)] })), new Set(['10.1.0.20']));
    assert.deepEqual(picks(state({ waypointHealthy: false, waypointLoadBalancing: nodeFirst, extra: [secondPod('node2', true)] })), new Set(['10.1.0.21']));
  });

  test('a waypoint Service known here without any pod makes the destination unavailable, naming the waypoint', () => {
    const s = state({ waypointPods: false });
    const r = s.resolve(sleep(), '10.96.0.10', 9080);
    assert.equal(r.kind, 'unavailable');
    assert.match(r.kind === 'unavailable' ? r.reason : '', /^waypoint default\/waypoint\.default\.svc\.cluster\.local has no usable pod: no pod on network/);
  });

  test('another side\'s waypoint (its Service unknown here, no pod of it on this network) is not honoured: resolution as without one', () => {
    const remoteWaypointPod = pod('waypoint-r', '10.2.0.20', 'waypoint', { [`default/${WAYPOINT_HOST}`]: [15008, 15008] }, { network: 'network2', clusterId: 'cluster2', tunnelProtocol: TunnelProtocol.NONE });
    for (const s of [state({ waypointService: false, waypointPods: false }), state({ waypointService: false, waypointPods: false, extra: [remoteWaypointPod] })]) {
      const viaService = s.resolve(sleep(), '10.96.0.10', 9080);
      assert.equal(viaService.kind, 'hbone');
      assert.equal(viaService.kind === 'hbone' && viaService.upstream.address, '10.1.0.10');
      assert.equal(s.resolve(sleep(), '10.1.0.11', 9080).kind, 'hbone');
    }
  });

  test('a waypoint named by address is the workload at that address', () => {
    const byAddress = create(GatewayAddressSchema, { destination: { case: 'address', value: create(NetworkAddressSchema, { network: '', address: ipToBytes('10.1.0.20') }) }, hboneMtlsPort: 15009 });
    const target = pod('target-1', '10.1.0.40', 'target', {}, { waypoint: byAddress });
    const s = state({ extra: [target] });
    const r = s.resolve(sleep(), '10.1.0.40', 8080);
    assert.equal(r.kind, 'waypoint');
    if (r.kind !== 'waypoint') return;
    assert.deepEqual([r.upstream.address, r.upstream.port, r.authority, r.waypointName], ['10.1.0.20', 15009, '10.1.0.40:8080', '10.1.0.20']);
    assert.deepEqual(s.waypointIdentities(byAddress), ['spiffe://cluster.local/ns/default/sa/waypoint']);
    const elsewhere = create(GatewayAddressSchema, { destination: { case: 'address', value: create(NetworkAddressSchema, { network: 'network2', address: ipToBytes('10.1.0.20') }) } });
    assert.equal(state({ extra: [pod('target-1', '10.1.0.40', 'target', {}, { waypoint: elsewhere })] }).resolve(sleep(), '10.1.0.40', 8080).kind, 'hbone');
  });

  test('ignoreWaypoints reaches a pod with Workload.waypoint directly', () => {
    const s = state();
    assert.equal(s.resolve(sleep(), '10.1.0.11', 9080, { ignoreWaypoints: true }).kind, 'hbone');
    assert.equal(s.resolve(sleep(), '10.96.0.11', 9080, { ignoreWaypoints: true }).kind, 'hbone');
  });

  test('analyzeDestination (explain) shows the waypoint the connection goes to', () => {
    const s = state();
    const service = s.analyzeDestination(sleep(), '10.96.0.10', 9080);
    assert.equal(service.kind === 'service' && service.waypoint?.kind, 'waypoint');
    const behind = s.analyzeDestination(sleep(), '10.96.0.11', 9080);
    assert.equal(behind.kind, 'service');
    if (behind.kind !== 'service') return;
    assert.equal(behind.waypoint, undefined);
    const through = s.resolutionThrough(behind, behind.evaluation.chosenFrom[0]!);
    assert.equal(through.kind === 'waypoint' && through.authority, '10.1.0.11:9080');
    const direct = s.analyzeDestination(sleep(), '10.1.0.11', 9080);
    assert.equal(direct.kind === 'workload' && direct.resolution.kind, 'waypoint');
    const ignoring = s.analyzeDestination(sleep(), '10.96.0.11', 9080, { ignoreWaypoints: true });
    assert.equal(ignoring.kind === 'service' && s.resolutionThrough(ignoring, ignoring.evaluation.chosenFrom[0]!).kind, 'hbone');
  });

  test('the config dump (ambit proxy-config) names the waypoint of services and workloads', () => {
    const s = state();
    const dump = buildConfigDump({ node: 'node1', clusterId: CLUSTER, network: '', state: s, certificates: () => [], xds: () => ({ address: 'cp', connected: true }) as never, captured: () => new Set() });
    assert.equal(dump.services.find((svc) => svc.name === 'productpage')?.waypoint, `default/${WAYPOINT_HOST}`);
    assert.equal(dump.services.find((svc) => svc.name === 'reviews')?.waypoint, undefined);
    assert.equal(dump.workloads.find((w) => w.name === 'reviews-1')?.waypoint, `default/${WAYPOINT_HOST}`);
  });
});
