import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { create } from '@bufbuild/protobuf';
import pino from 'pino';

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
import { meshAddressesOf } from '../src/ztunnel/dns/mesh-names.js';
import { ZtunnelState } from '../src/ztunnel/state/store.js';

const WEB = 'sample/web.sample.svc.cluster.local';

function pod(name: string, ip: string, o: { cluster?: string; network?: string; ready?: boolean; hostname?: string } = {}): Workload {
  return create(WorkloadSchema, {
    uid: `${o.cluster ?? 'cluster1'}//Pod/sample/${name}`,
    name,
    namespace: 'sample',
    addresses: [ipToBytes(ip)],
    hostname: o.hostname ?? `${name}.web.sample.svc.cluster.local`,
    network: o.network ?? 'east',
    tunnelProtocol: TunnelProtocol.HBONE,
    status: (o.ready ?? true) ? WorkloadStatus.HEALTHY : WorkloadStatus.UNHEALTHY,
    services: { [WEB]: create(PortListSchema, { ports: [create(PortSchema, { servicePort: 80, targetPort: 80 })] }) },
  });
}

function state(): ZtunnelState {
  const s = new ZtunnelState({ network: 'east', nodeName: 'n1', clusterId: 'cluster1', systemNamespace: 'istio-system', logger: pino({ level: 'silent' }) });
  const web = create(ServiceSchema, { name: 'web', namespace: 'sample', hostname: 'web.sample.svc.cluster.local', ports: [create(PortSchema, { servicePort: 80 })] });
  const perPod = create(ServiceSchema, {
    name: 'web-5',
    namespace: 'sample',
    hostname: 'web-5.web.sample.svc.cluster.local',
    addresses: [create(NetworkAddressSchema, { network: 'east', address: ipToBytes('240.240.9.9') })],
    ports: [create(PortSchema, { servicePort: 80, targetPort: 80 })],
  });
  const behindGateway = create(WorkloadSchema, {
    uid: 'west/SyntheticPod/cluster3/sample/web-5',
    name: 'web-5',
    namespace: 'sample',
    hostname: 'web-5.web.sample.svc.cluster.local',
    network: 'west',
    tunnelProtocol: TunnelProtocol.HBONE,
    status: WorkloadStatus.HEALTHY,
    networkGateway: create(GatewayAddressSchema, { destination: { case: 'hostname', value: create(NamespacedHostnameSchema, { namespace: 'istio-system', hostname: 'west.east-west.ambit.internal' }) } }),
    services: { 'sample/web-5.web.sample.svc.cluster.local': create(PortListSchema, { ports: [create(PortSchema, { servicePort: 80, targetPort: 80 })] }) },
  });
  const workloads = [pod('web-0', '10.1.0.5'), pod('web-1', '10.2.0.6', { cluster: 'cluster2' }), pod('web-2', '10.2.0.7', { cluster: 'cluster2', ready: false }), behindGateway];
  s.applyAddresses([{ name: WEB, service: web }, { name: 'sample/web-5.web.sample.svc.cluster.local', service: perPod }, ...workloads.map((w) => ({ name: w.uid, workload: w }))], []);
  return s;
}

describe('ztunnel DNS: names the mesh answers', () => {
  test('a headless service: its healthy pods on this network, of every cluster', () => {
    assert.deepEqual(meshAddressesOf(state(), 'web.sample.svc.cluster.local', 'east')?.sort(), ['10.1.0.5', '10.2.0.6']);
  });

  test('a StatefulSet pod of another cluster on this network: its pod IP', () => {
    assert.deepEqual(meshAddressesOf(state(), 'web-1.web.sample.svc.cluster.local', 'east'), ['10.2.0.6']);
    assert.equal(meshAddressesOf(state(), 'web-2.web.sample.svc.cluster.local', 'east'), undefined, 'not ready: not answered');
  });

  test('a StatefulSet pod on another network: the VIP the control plane allocated for its name', () => {
    assert.deepEqual(meshAddressesOf(state(), 'web-5.web.sample.svc.cluster.local', 'east'), ['240.240.9.9']);
  });

  test('a pod name without its headless service, or an unknown name: left to cluster DNS', () => {
    const s = state();
    s.applyAddresses([], [WEB]);
    assert.equal(meshAddressesOf(s, 'web-0.web.sample.svc.cluster.local', 'east'), undefined);
    assert.equal(meshAddressesOf(s, 'nothing.sample.svc.cluster.local', 'east'), undefined);
  });
});
