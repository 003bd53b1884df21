/** ztunnel's resolution of destinations served by a waypoint (Service.waypoint, Workload.waypoint), fed objects directly. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { pino } from 'pino';

import { ipToBytes } from '../src/api/ip.js';
import {
  GatewayAddressSchema,
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

function state(options: { waypointHealthy?: boolean } = {}): ZtunnelState {
  const s = new ZtunnelState({ network: '', nodeName: 'node1', clusterId: CLUSTER, systemNamespace: 'istio-system', logger: pino({ level: 'silent' }) });
  const services = [service('productpage', '10.96.0.10', 9080, true), service('reviews', '10.96.0.11', 9080, false), service('waypoint', '10.96.0.20', 15008, false)];
  const workloads = [
    pod('productpage-1', '10.1.0.10', 'bookinfo-productpage', { 'default/productpage.default.svc.cluster.local': [9080, 9080] }),
    pod('reviews-1', '10.1.0.11', 'bookinfo-reviews', { 'default/reviews.default.svc.cluster.local': [9080, 9080] }, { waypoint: waypointAddress() }),
    pod('waypoint-1', '10.1.0.20', 'waypoint', { [`default/${WAYPOINT_HOST}`]: [15008, 15008] }, {
      tunnelProtocol: TunnelProtocol.NONE,
      status: options.waypointHealthy === false ? WorkloadStatus.UNHEALTHY : WorkloadStatus.HEALTHY,
    }),
    pod('sleep-1', '10.1.0.30', 'sleep', {}),
  ];
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
    assert.match(r.kind === 'unavailable' ? r.reason : '', /waypoint default\/waypoint\.default\.svc\.cluster\.local has no healthy pod/);
  });

  test('the identities allowed to reach a workload behind its waypoint are the waypoint pods\'', () => {
    assert.deepEqual(state().waypointIdentities(waypointAddress()), ['spiffe://cluster.local/ns/default/sa/waypoint']);
  });
});
