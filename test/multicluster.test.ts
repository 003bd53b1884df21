import { allocatedVip } from '../src/controlplane/multicluster/mesh-resources.js';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { equals } from '@bufbuild/protobuf';
import { KubeConfig } from '@kubernetes/client-node';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';

import { bytesToIp } from '../src/api/ip.js';
import { fakeApiServer } from './helpers/fake-api-server.js';
import {
  KubeClusterView,
  MeshView,
  parseRemoteKubeconfig,
  RemoteClusters,
  RemoteKubeconfigError,
  type ClusterConnection,
  type ConnectRequest,
  type MeshChange,
} from '../src/controlplane/multicluster/index.js';
import {
  AddressSchema,
  TunnelProtocol,
  WorkloadStatus,
  WorkloadType,
  type Service,
  type Workload,
} from '../src/gen/istio/workload/workload_pb.js';

// ---------------------------------------------------------------------------------------------
// Fixtures: the seed's helloworld, as `kubectl get -o json` returns the objects
// ---------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;
type StringMap = Record<string, string>;

const HELLO = 'sample/helloworld.sample.svc.cluster.local';
const SYNTHETIC_HELLO_N2 = `network2/SyntheticGateway/${HELLO}`;
const GATEWAYS_N2 = 'istio-system/network2.east-west.ambit.internal';

function capture(): { log: Logger; lines: Json[] } {
  const lines: Json[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Json) });
  return { log, lines };
}

function namespace(name: string, labels: StringMap = {}): Json {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

interface PodOptions {
  ip: string;
  labels: StringMap;
  ready?: boolean;
  serviceAccount?: string;
  namespace?: string;
}

function pod(name: string, o: PodOptions): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: o.namespace ?? 'sample', labels: o.labels },
    spec: {
      nodeName: 'node1',
      serviceAccountName: o.serviceAccount ?? 'helloworld',
      containers: [{ name: 'app', image: 'helloworld', ports: [{ name: 'http', containerPort: 5000 }] }],
    },
    status: {
      phase: 'Running',
      podIP: o.ip,
      podIPs: [{ ip: o.ip }],
      conditions: [{ type: 'Ready', status: (o.ready ?? true) ? 'True' : 'False' }],
    },
  };
}

function service(name: string, clusterIP: string, o: { global?: boolean; selector?: StringMap; namespace?: string } = {}): Json {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: o.namespace ?? 'sample', labels: { app: name, ...(o.global ? { 'istio.io/global': 'true' } : {}) } },
    spec: {
      clusterIP,
      clusterIPs: [clusterIP],
      selector: o.selector ?? { app: name },
      ports: [{ name: 'http', port: 5000, targetPort: 5000, protocol: 'TCP' }],
    },
  };
}

function gateway(name: string, o: { network?: string; address?: string; className?: string } = {}): Json {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace: 'istio-system', labels: o.network ? { 'topology.istio.io/network': o.network } : {} },
    spec: {
      gatewayClassName: o.className ?? 'istio-east-west',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE', tls: { mode: 'Terminate' } }],
    },
    status: o.address ? { addresses: [{ type: 'IPAddress', value: o.address }] } : {},
  };
}

const v1 = (o: Partial<PodOptions> = {}) => pod('helloworld-v1-abc', { ip: '10.10.0.5', labels: { app: 'helloworld', version: 'v1' }, ...o });
const v2 = (name = 'helloworld-v2-xyz', o: Partial<PodOptions> = {}) =>
  pod(name, { ip: '10.20.0.5', labels: { app: 'helloworld', version: 'v2' }, ...o });

interface ClusterSpec {
  id: string;
  network: string;
  /** Fixed network (local), else the system namespace label decides (remote). */
  fixed?: boolean;
  global?: boolean;
  vip: string;
  pods?: Json[];
  gatewayAddress?: string;
  extra?: Array<[kind: 'Service' | 'Pod' | 'Namespace', Json]>;
}

function cluster(spec: ClusterSpec, log = capture().log): KubeClusterView {
  const view = new KubeClusterView({
    clusterId: spec.id,
    ...(spec.fixed ? { network: spec.network } : {}),
    trustDomain: 'cluster.local',
    systemNamespace: 'istio-system',
    log,
  });
  view.sink.upsert('Namespace', namespace('istio-system', { 'topology.istio.io/network': spec.network }));
  view.sink.upsert('Namespace', namespace('sample', { 'istio.io/dataplane-mode': 'ambient' }));
  view.sink.upsert('Service', service('helloworld', spec.vip, { global: spec.global ?? true }));
  for (const object of spec.pods ?? []) view.sink.upsert('Pod', object);
  for (const [kind, object] of spec.extra ?? []) view.sink.upsert(kind, object);
  if (spec.gatewayAddress) view.upsertGateway(gateway('istio-eastwestgateway', { network: spec.network, address: spec.gatewayAddress }));
  return view;
}

const cluster1 = (o: Partial<ClusterSpec> = {}) =>
  cluster({ id: 'cluster1', network: 'network1', fixed: true, vip: '10.96.0.10', pods: [v1()], gatewayAddress: '198.18.1.100', ...o });
const cluster2 = (o: Partial<ClusterSpec> = {}) =>
  cluster({ id: 'cluster2', network: 'network2', vip: '10.97.0.10', pods: [v2()], gatewayAddress: '198.18.2.100', ...o });

function mesh(local: KubeClusterView, ...remotes: KubeClusterView[]): { view: MeshView; changes: MeshChange[] } {
  const view = new MeshView({ local, trustDomain: 'cluster.local', log: capture().log });
  for (const remote of remotes) view.setRemote(remote);
  const changes: MeshChange[] = [];
  view.onChange((change) => changes.push(change));
  return { view, changes };
}

function workload(view: MeshView, name: string): Workload | undefined {
  const address = view.address(name);
  return address?.type.case === 'workload' ? address.type.value : undefined;
}

function svc(view: MeshView, name: string): Service | undefined {
  const address = view.address(name);
  return address?.type.case === 'service' ? address.type.value : undefined;
}

function names(view: MeshView, pattern: RegExp): string[] {
  return [...view.addresses().keys()].filter((name) => pattern.test(name)).sort();
}

function vips(service: Service | undefined): string[] {
  return (service?.addresses ?? []).map((a) => `${a.network}/${bytesToIp(a.address)}`);
}

function upserted(changes: MeshChange[]): string[] {
  return changes.flatMap((c) => c.addresses.upserted).sort();
}

function removed(changes: MeshChange[]): string[] {
  return changes.flatMap((c) => c.addresses.removed).sort();
}

// ---------------------------------------------------------------------------------------------
// Merged view
// ---------------------------------------------------------------------------------------------

describe('MeshView: two clusters on two networks (seed: helloworld v1 in cluster1, v2 in cluster2)', () => {
  test('cluster1 serves v1, ONE synthetic workload for network2, both gateways and the merged service', () => {
    const local = cluster1();
    const { view } = mesh(local, cluster2());

    const localPod = workload(view, 'cluster1//Pod/sample/helloworld-v1-abc');
    assert.ok(localPod, 'local pod workload is served');
    assert.ok(equals(AddressSchema, view.address('cluster1//Pod/sample/helloworld-v1-abc')!, local.registry.address('cluster1//Pod/sample/helloworld-v1-abc')!), 'local workload unchanged');
    assert.equal(workload(view, 'cluster2//Pod/sample/helloworld-v2-xyz'), undefined, 'no pod workloads from another network');

    assert.deepEqual(names(view, /SyntheticGateway/), [SYNTHETIC_HELLO_N2]);
    const synthetic = workload(view, SYNTHETIC_HELLO_N2)!;
    assert.equal(synthetic.uid, SYNTHETIC_HELLO_N2);
    assert.equal(synthetic.name, 'helloworld');
    assert.equal(synthetic.namespace, 'sample');
    assert.equal(synthetic.network, 'network2');
    assert.equal(synthetic.tunnelProtocol, TunnelProtocol.HBONE);
    assert.equal(synthetic.status, WorkloadStatus.HEALTHY);
    assert.equal(synthetic.capacity, 1);
    assert.equal(synthetic.serviceAccount, 'helloworld', 'identity of the backing pods');
    assert.equal(synthetic.trustDomain, '');
    assert.equal(synthetic.clusterId, '');
    assert.equal(synthetic.locality, undefined);
    assert.deepEqual(synthetic.addresses, []);
    const gatewayAddress = synthetic.networkGateway;
    assert.equal(gatewayAddress?.destination.case, 'hostname', 'the network gateways by name, so ztunnel spreads over them');
    assert.equal(gatewayAddress.destination.value.namespace, 'istio-system');
    assert.equal(gatewayAddress.destination.value.hostname, 'network2.east-west.ambit.internal');
    assert.equal(gatewayAddress.hboneMtlsPort, 15008);
    const gatewayService = svc(view, GATEWAYS_N2)!;
    assert.deepEqual(gatewayService.ports.map((p) => [p.servicePort, p.targetPort]), [[15008, 15008]]);
    assert.deepEqual(gatewayService.addresses, [], 'no VIP: only named by synthetic workloads');
    assert.deepEqual(Object.keys(synthetic.services), [HELLO]);
    assert.deepEqual(synthetic.services[HELLO]!.ports.map((p) => [p.servicePort, p.targetPort]), [[5000, 5000]]);

    assert.deepEqual(names(view, /\/Gateway\//), ['cluster1/Gateway/istio-system/istio-eastwestgateway', 'cluster2/Gateway/istio-system/istio-eastwestgateway']);
    const remoteGateway = workload(view, 'cluster2/Gateway/istio-system/istio-eastwestgateway')!;
    assert.deepEqual(remoteGateway.addresses.map(bytesToIp), ['198.18.2.100']);
    assert.equal(remoteGateway.network, 'network2');
    assert.equal(remoteGateway.namespace, 'istio-system');
    assert.equal(remoteGateway.serviceAccount, 'istio-eastwestgateway');
    assert.equal(remoteGateway.tunnelProtocol, TunnelProtocol.HBONE);
    assert.equal(remoteGateway.workloadType, WorkloadType.POD);
    assert.deepEqual(Object.keys(remoteGateway.services), [GATEWAYS_N2], 'an endpoint of its network\'s gateway service');
    assert.equal(workload(view, 'cluster1/Gateway/istio-system/istio-eastwestgateway')!.network, 'network1');

    assert.deepEqual(vips(svc(view, HELLO)), ['network1/10.96.0.10', 'network2/10.97.0.10']);
    assert.deepEqual(svc(view, HELLO)!.ports.map((p) => p.servicePort), [5000]);
  });

  test('without the global label: no synthetic workload, no remote VIP', () => {
    const { view } = mesh(cluster1({ global: false }), cluster2({ global: false }));
    assert.deepEqual(names(view, /SyntheticGateway/), []);
    assert.deepEqual(vips(svc(view, HELLO)), ['network1/10.96.0.10']);
    assert.deepEqual(names(view, /^cluster2\/\/Pod/), []);
  });

  test('global only in the remote cluster: the local non-global Service keeps the name local', () => {
    const { view } = mesh(cluster1({ global: false }), cluster2({ global: true }));
    assert.deepEqual(names(view, /SyntheticGateway/), []);
    assert.deepEqual(vips(svc(view, HELLO)), ['network1/10.96.0.10']);
  });

  test('labelling the local Service global later brings the remote endpoints in', () => {
    const local = cluster1({ global: false });
    const { view, changes } = mesh(local, cluster2());
    local.sink.upsert('Service', service('helloworld', '10.96.0.10', { global: true }));
    assert.deepEqual(upserted(changes), [SYNTHETIC_HELLO_N2, HELLO].sort());
    assert.deepEqual(vips(svc(view, HELLO)), ['network1/10.96.0.10', 'network2/10.97.0.10']);
  });

  test('a global service that exists only in the remote cluster is served with its remote VIP and a VIP allocated on the local network', () => {
    const remote = cluster2({
      extra: [
        ['Service', service('greeter', '10.97.0.20', { global: true })],
        ['Pod', pod('greeter-1', { ip: '10.20.0.9', labels: { app: 'greeter' }, serviceAccount: 'greeter' })],
      ],
    });
    const { view } = mesh(cluster1(), remote);
    const greeter = 'sample/greeter.sample.svc.cluster.local';
    assert.deepEqual(vips(svc(view, greeter)), [`network1/${allocatedVip(svc(view, greeter)!.hostname)}`, 'network2/10.97.0.20']);
    assert.match(allocatedVip('greeter.sample.svc.cluster.local'), /^240\.240\.\d+\.\d+$/);
    assert.equal(workload(view, `network2/SyntheticGateway/${greeter}`)?.capacity, 1);
    assert.equal(workload(view, `network2/SyntheticGateway/${greeter}`)?.serviceAccount, 'greeter');
  });

  test('v2 scaled to 0 ready endpoints: capacity 0 and UNHEALTHY; back to ready: capacity 1', () => {
    const remote = cluster2();
    const { view } = mesh(cluster1(), remote);
    remote.sink.upsert('Pod', v2('helloworld-v2-xyz', { ready: false }));
    assert.equal(workload(view, SYNTHETIC_HELLO_N2)!.capacity, 0);
    assert.equal(workload(view, SYNTHETIC_HELLO_N2)!.status, WorkloadStatus.UNHEALTHY);
    remote.sink.remove('Pod', v2());
    assert.equal(workload(view, SYNTHETIC_HELLO_N2)!.capacity, 0, 'the Service still exists: the synthetic workload stays');
    remote.sink.upsert('Pod', v2());
    assert.equal(workload(view, SYNTHETIC_HELLO_N2)!.capacity, 1);
    assert.equal(workload(view, SYNTHETIC_HELLO_N2)!.status, WorkloadStatus.HEALTHY);
  });

  test('capacity sums the endpoints of every cluster on that network; identity falls back to the namespace default', () => {
    const cluster3 = cluster({
      id: 'cluster3',
      network: 'network2',
      vip: '10.98.0.10',
      pods: [pod('helloworld-v3-q', { ip: '10.30.0.5', labels: { app: 'helloworld' }, serviceAccount: 'other' })],
    });
    const { view } = mesh(cluster1(), cluster2(), cluster3);
    const synthetic = workload(view, SYNTHETIC_HELLO_N2)!;
    assert.equal(synthetic.capacity, 2);
    assert.equal(synthetic.serviceAccount, '', 'pods disagree: the default account of the service namespace');
    assert.equal(synthetic.namespace, 'sample');
    assert.deepEqual(vips(svc(view, HELLO)), ['network1/10.96.0.10', 'network2/10.97.0.10', 'network2/10.98.0.10']);
    assert.deepEqual(names(view, /SyntheticGateway/), [SYNTHETIC_HELLO_N2], 'still one synthetic workload per (network, service)');
  });

  test('no usable gateway in the remote network: no synthetic workload until one gets an address', () => {
    const remote = cluster2({ gatewayAddress: undefined });
    remote.upsertGateway(gateway('istio-eastwestgateway', { network: 'network2' }));
    remote.upsertGateway(gateway('other-class', { network: 'network2', address: '198.18.2.7', className: 'istio-waypoint' }));
    const { view, changes } = mesh(cluster1(), remote);
    assert.deepEqual(names(view, /SyntheticGateway/), []);
    assert.deepEqual(names(view, /^cluster2\/Gateway/), []);
    remote.upsertGateway(gateway('istio-eastwestgateway', { network: 'network2', address: '198.18.2.100' }));
    assert.deepEqual(upserted(changes), ['cluster2/Gateway/istio-system/istio-eastwestgateway', GATEWAYS_N2, SYNTHETIC_HELLO_N2]);
  });

  test('several gateways: all become gateway workloads behind the network\'s gateway service; synthetic workloads are untouched', () => {
    const remote = cluster2();
    const { view, changes } = mesh(cluster1(), remote);
    remote.upsertGateway(gateway('a-second-gateway', { address: '198.18.2.50' })); // network from the cluster
    assert.deepEqual(names(view, /^cluster2\/Gateway/), ['cluster2/Gateway/istio-system/a-second-gateway', 'cluster2/Gateway/istio-system/istio-eastwestgateway']);
    assert.equal(workload(view, 'cluster2/Gateway/istio-system/a-second-gateway')!.network, 'network2');
    assert.deepEqual(Object.keys(workload(view, 'cluster2/Gateway/istio-system/a-second-gateway')!.services), [GATEWAYS_N2]);
    const target = workload(view, SYNTHETIC_HELLO_N2)!.networkGateway!.destination;
    assert.equal(target.case === 'hostname' && target.value.hostname, 'network2.east-west.ambit.internal');
    assert.deepEqual(upserted(changes), ['cluster2/Gateway/istio-system/a-second-gateway']);
    changes.length = 0;
    remote.removeGateway(gateway('istio-eastwestgateway'));
    assert.deepEqual(removed(changes), ['cluster2/Gateway/istio-system/istio-eastwestgateway'], 'one gateway left: nothing else changes');
    assert.ok(workload(view, SYNTHETIC_HELLO_N2));
  });

  test('remote cluster on the SAME network: real pod workloads carrying only global service keys', () => {
    const cluster3 = cluster({
      id: 'cluster3',
      network: 'network1',
      vip: '10.98.0.10',
      pods: [
        pod('helloworld-v3-q', { ip: '10.30.0.5', labels: { app: 'helloworld', tier: 'x' } }),
        pod('internal-1', { ip: '10.30.0.6', labels: { app: 'internal' } }),
      ],
      extra: [
        ['Service', service('tier', '10.98.0.11', { selector: { tier: 'x' } })],
        ['Service', service('internal', '10.98.0.12')],
      ],
    });
    const { view } = mesh(cluster1(), cluster3);
    const remotePod = workload(view, 'cluster3//Pod/sample/helloworld-v3-q')!;
    assert.ok(remotePod);
    assert.equal(remotePod.clusterId, 'cluster3');
    assert.equal(remotePod.network, 'network1');
    assert.deepEqual(remotePod.addresses.map(bytesToIp), ['10.30.0.5']);
    assert.deepEqual(Object.keys(remotePod.services), [HELLO], 'non-global service keys are dropped');
    assert.equal(workload(view, 'cluster3//Pod/sample/internal-1'), undefined, 'pods of non-global services never appear');
    assert.equal(svc(view, 'sample/internal.sample.svc.cluster.local'), undefined);
    assert.equal(svc(view, 'sample/tier.sample.svc.cluster.local'), undefined);
    assert.deepEqual(names(view, /SyntheticGateway/), []);
    assert.deepEqual(vips(svc(view, HELLO)), ['network1/10.96.0.10', 'network1/10.98.0.10']);
  });

  test('a remote cluster changing network is rebuilt: its pods move from direct to behind the gateway', () => {
    const cluster3 = cluster({ id: 'cluster3', network: 'network1', vip: '10.98.0.10', pods: [pod('helloworld-v3-q', { ip: '10.30.0.5', labels: { app: 'helloworld' } })] });
    const { view, changes } = mesh(cluster1(), cluster2(), cluster3);
    assert.ok(workload(view, 'cluster3//Pod/sample/helloworld-v3-q'));
    assert.equal(workload(view, SYNTHETIC_HELLO_N2)!.capacity, 1);
    cluster3.sink.upsert('Namespace', namespace('istio-system', { 'topology.istio.io/network': 'network2' }));
    assert.equal(cluster3.network(), 'network2');
    assert.equal(workload(view, 'cluster3//Pod/sample/helloworld-v3-q'), undefined);
    assert.equal(workload(view, SYNTHETIC_HELLO_N2)!.capacity, 2);
    assert.deepEqual(removed(changes), ['cluster3//Pod/sample/helloworld-v3-q']);
    assert.deepEqual(vips(svc(view, HELLO)), ['network1/10.96.0.10', 'network2/10.97.0.10', 'network2/10.98.0.10']);
  });

  test('removing a remote cluster removes everything it contributed, and notifies', () => {
    const { view, changes } = mesh(cluster1(), cluster2());
    view.removeRemote('cluster2');
    assert.deepEqual(removed(changes), ['cluster2/Gateway/istio-system/istio-eastwestgateway', GATEWAYS_N2, SYNTHETIC_HELLO_N2]);
    assert.deepEqual(upserted(changes), [HELLO]);
    assert.deepEqual(vips(svc(view, HELLO)), ['network1/10.96.0.10']);
  });

  test('authorizations are the local cluster’s only', () => {
    const policy = (name: string) => ({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name, namespace: 'sample' },
      spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['evil'] } }] }] },
    });
    const local = cluster1();
    const remote = cluster2();
    remote.sink.upsert('AuthorizationPolicy', policy('remote-policy'));
    const { view, changes } = mesh(local, remote);
    assert.deepEqual([...view.authorizations().keys()], []);
    local.sink.upsert('AuthorizationPolicy', policy('local-policy'));
    assert.deepEqual([...view.authorizations().keys()], ['sample/local-policy']);
    assert.deepEqual(changes.flatMap((c) => c.authorizations.upserted), ['sample/local-policy']);
  });
});

describe('MeshView: StatefulSet pods by their own DNS name', () => {
  const statefulPod = (name: string, ip: string, o: { ready?: boolean } = {}): Json => {
    const object = pod(name, { ip, labels: { app: 'web' }, serviceAccount: 'web', ready: o.ready ?? true }) as { spec: Record<string, unknown> };
    object.spec.hostname = name;
    object.spec.subdomain = 'web';
    return object as Json;
  };
  const headless = (global = true): Json => {
    const object = service('web', 'None', { global }) as { spec: Record<string, unknown> };
    object.spec.clusterIPs = ['None'];
    return object as Json;
  };
  const WEB = 'sample/web.sample.svc.cluster.local';
  const WEB0 = 'sample/web-0.web.sample.svc.cluster.local';

  test('same network: the remote pod is served with its pod IP and its DNS name', () => {
    const remote = cluster({ id: 'cluster3', network: 'network1', vip: '10.98.0.10', extra: [['Service', headless()], ['Pod', statefulPod('web-0', '10.30.0.7')]] });
    const { view } = mesh(cluster1(), remote);
    const served = workload(view, 'cluster3//Pod/sample/web-0')!;
    assert.equal(served.hostname, 'web-0.web.sample.svc.cluster.local');
    assert.deepEqual(served.addresses.map(bytesToIp), ['10.30.0.7']);
    assert.deepEqual(Object.keys(served.services), [WEB]);
    assert.deepEqual(svc(view, WEB)!.addresses, [], 'headless: no VIP allocated');
    assert.deepEqual(names(view, /SyntheticPod/), []);
  });

  test('another network: a service named like the pod with an allocated VIP, and one workload behind the gateways', () => {
    const remote = cluster2({ extra: [['Service', headless()], ['Pod', statefulPod('web-0', '10.20.0.7')], ['Pod', statefulPod('web-1', '10.20.0.8', { ready: false })]] });
    const { view } = mesh(cluster1(), remote);
    const perPod = svc(view, WEB0)!;
    assert.equal(perPod.hostname, 'web-0.web.sample.svc.cluster.local');
    assert.deepEqual(vips(perPod), [`network1/${allocatedVip('web-0.web.sample.svc.cluster.local')}`]);
    assert.deepEqual(perPod.ports.map((p) => [p.servicePort, p.targetPort]), [[5000, 5000]]);
    const standIn = workload(view, 'network2/SyntheticPod/cluster2/sample/web-0')!;
    assert.deepEqual(Object.keys(standIn.services), [WEB0]);
    assert.equal(standIn.serviceAccount, 'web');
    assert.equal(standIn.clusterId, 'cluster2');
    assert.equal(standIn.networkGateway?.destination.case, 'hostname');
    assert.equal(workload(view, 'network2/SyntheticPod/cluster2/sample/web-1')!.status, WorkloadStatus.UNHEALTHY);
    assert.deepEqual(svc(view, WEB)!.addresses, [], 'the headless service itself gets no VIP');
  });

  test('not global, or the pod gone, or no gateway: nothing per pod', () => {
    const remote = cluster2({ extra: [['Service', headless(false)], ['Pod', statefulPod('web-0', '10.20.0.7')]] });
    const { view, changes } = mesh(cluster1(), remote);
    assert.equal(svc(view, WEB0), undefined);
    remote.sink.upsert('Service', headless(true));
    assert.ok(svc(view, WEB0), 'labelled global → served');
    changes.length = 0;
    remote.sink.remove('Pod', statefulPod('web-0', '10.20.0.7'));
    assert.equal(svc(view, WEB0), undefined);
    assert.deepEqual(removed(changes).filter((n) => /web-0/.test(n)), ['network2/SyntheticPod/cluster2/sample/web-0', WEB0]);
    remote.sink.upsert('Pod', statefulPod('web-0', '10.20.0.7'));
    assert.ok(svc(view, WEB0));
    remote.removeGateway(gateway('istio-eastwestgateway'));
    assert.equal(svc(view, WEB0), undefined, 'unreachable without a gateway');
  });
});

describe('MeshView incrementality', () => {
  test('a pod change in cluster2 emits only the synthetic workload it affects', () => {
    const remote = cluster2({ extra: [['Service', service('private', '10.97.0.30')]] });
    const { view, changes } = mesh(cluster1(), remote);
    const before = view.stats();
    remote.sink.upsert('Pod', v2('helloworld-v2-second', { ip: '10.20.0.6' }));
    assert.deepEqual(changes.length, 1);
    assert.deepEqual(changes[0]!.addresses, { upserted: [SYNTHETIC_HELLO_N2], removed: [] });
    assert.equal(workload(view, SYNTHETIC_HELLO_N2)!.capacity, 2);
    const after = view.stats();
    assert.deepEqual(
      { workloads: after.workloadBuilds - before.workloadBuilds, services: after.serviceBuilds - before.serviceBuilds, synthetics: after.syntheticBuilds - before.syntheticBuilds, gateways: after.gatewayBuilds - before.gatewayBuilds },
      { workloads: 0, services: 0, synthetics: 1, gateways: 0 },
      'only the synthetic workload of the pod’s service is recomputed',
    );

    changes.length = 0;
    remote.sink.upsert('Pod', pod('private-1', { ip: '10.20.0.7', labels: { app: 'private' } }));
    assert.deepEqual(changes, [], 'a pod of a non-global remote service changes nothing here');

    remote.sink.upsert('Pod', { ...v2('helloworld-v2-second', { ip: '10.20.0.6' }), metadata: { name: 'helloworld-v2-second', namespace: 'sample', labels: { app: 'helloworld', version: 'v2' }, annotations: { touched: 'yes' } } });
    assert.deepEqual(changes, [], 'an event that changes no served message emits nothing');
  });

  test('a local pod change emits only that pod', () => {
    const local = cluster1();
    const { view, changes } = mesh(local, cluster2());
    const before = view.stats();
    local.sink.upsert('Pod', v1({ ready: false }));
    assert.deepEqual(changes.map((c) => c.addresses), [{ upserted: ['cluster1//Pod/sample/helloworld-v1-abc'], removed: [] }]);
    assert.equal(view.stats().syntheticBuilds, before.syntheticBuilds);
    assert.equal(view.stats().workloadBuilds, before.workloadBuilds + 1);
  });

  test('a gateway address change recomputes only that gateway workload; synthetic workloads name the gateways by hostname', () => {
    const remote2 = cluster2();
    const remote3 = cluster({ id: 'cluster3', network: 'network3', vip: '10.98.0.10', pods: [v2('helloworld-v3')], gatewayAddress: '198.18.3.100' });
    const { view, changes } = mesh(cluster1(), remote2, remote3);
    const before = view.stats();
    remote2.upsertGateway(gateway('istio-eastwestgateway', { network: 'network2', address: '198.18.2.101' }));
    assert.deepEqual(upserted(changes), ['cluster2/Gateway/istio-system/istio-eastwestgateway']);
    assert.equal(view.stats().syntheticBuilds, before.syntheticBuilds, 'no synthetic workload is rebuilt');
    assert.equal(view.stats().serviceBuilds, before.serviceBuilds);
  });

  test('replacing a remote view with identical content emits nothing', () => {
    const { view, changes } = mesh(cluster1(), cluster2());
    view.setRemote(cluster2());
    assert.deepEqual(changes, []);
  });
});

// ---------------------------------------------------------------------------------------------
// Remote secrets
// ---------------------------------------------------------------------------------------------

function kubeconfig(name: string, token: string, server = 'https://198.18.0.2:6443'): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${name}`,
    '  cluster:',
    `    server: ${server}`,
    '    certificate-authority-data: ZmFrZQ==',
    'contexts:',
    `- name: ${name}`,
    '  context:',
    `    cluster: ${name}`,
    `    user: ${name}`,
    `current-context: ${name}`,
    'users:',
    `- name: ${name}`,
    '  user:',
    `    token: ${token}`,
    '',
  ].join('\n');
}

function remoteSecret(name: string, data: StringMap, labels: StringMap = { 'istio/multiCluster': 'true' }): Json {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: 'istio-system', labels, annotations: { 'networking.istio.io/cluster': Object.keys(data)[0] ?? '' } },
    data: Object.fromEntries(Object.entries(data).map(([key, value]) => [key, Buffer.from(value).toString('base64')])),
  };
}

interface FakeConnection {
  request: ConnectRequest;
  stopped: boolean;
}

/** RemoteClusters wired to a MeshView, with a connect factory serving prepared cluster views. */
function remoteSetup(views: Record<string, () => KubeClusterView>) {
  const { log, lines } = capture();
  const metrics = new Registry();
  const local = cluster1();
  const view = new MeshView({ local, trustDomain: 'cluster.local', log });
  const changes: MeshChange[] = [];
  view.onChange((change) => changes.push(change));
  const connections: FakeConnection[] = [];
  const remotes = new RemoteClusters({
    localClusterId: 'cluster1',
    systemNamespace: 'istio-system',
    trustDomain: 'cluster.local',
    clusters: view,
    metrics,
    log,
    connect: (request): ClusterConnection => {
      const make = views[request.clusterId];
      if (!make) throw new Error(`no fake for ${request.clusterId}`);
      const connection: FakeConnection = { request, stopped: false };
      connections.push(connection);
      return { view: make(), synced: Promise.resolve(), stop: () => void (connection.stopped = true) };
    },
  });
  const metric = async (name: string, labels: StringMap) => {
    const values = (await metrics.getSingleMetric(name)?.get())?.values ?? [];
    return values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value;
  };
  return { view, changes, connections, remotes, lines, metric };
}

/** Lets promise callbacks (the fake connections' `synced`) run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('RemoteClusters', () => {
  test('a remote secret connects the cluster and its resources appear; deleting it removes them (notified)', async () => {
    const { view, changes, connections, remotes, metric } = remoteSetup({ cluster2: () => cluster2() });
    const secret = remoteSecret('istio-remote-secret-cluster2', { cluster2: kubeconfig('cluster2', 'token-a') });
    remotes.upsertSecret(secret);
    await settle();
    assert.equal(connections.length, 1);
    assert.equal(connections[0]!.request.kubeConfig.getCurrentCluster()?.server, 'https://198.18.0.2:6443');
    assert.equal(connections[0]!.request.kubeConfig.getCurrentUser()?.token, 'token-a');
    assert.ok(workload(view, SYNTHETIC_HELLO_N2));
    assert.equal(await metric('ambit_remote_clusters', { cluster: 'cluster2', state: 'synced' }), 1);
    assert.deepEqual(remotes.status(), [{ cluster: 'cluster2', secret: 'istio-system/istio-remote-secret-cluster2', state: 'synced', network: 'network2' }]);

    changes.length = 0;
    remotes.removeSecret(secret);
    assert.equal(connections[0]!.stopped, true);
    assert.equal(workload(view, SYNTHETIC_HELLO_N2), undefined);
    assert.deepEqual(removed(changes), ['cluster2/Gateway/istio-system/istio-eastwestgateway', GATEWAYS_N2, SYNTHETIC_HELLO_N2]);
    assert.deepEqual(vips(svc(view, HELLO)), ['network1/10.96.0.10']);
    assert.equal(await metric('ambit_remote_clusters', { cluster: 'cluster2', state: 'synced' }), undefined);
  });

  test('removing one key of a multi-cluster secret stops only that cluster', async () => {
    const cluster3 = () => cluster({ id: 'cluster3', network: 'network3', vip: '10.98.0.10', pods: [v2('helloworld-v3')], gatewayAddress: '198.18.3.100' });
    const { view, connections, remotes } = remoteSetup({ cluster2: () => cluster2(), cluster3 });
    remotes.upsertSecret(remoteSecret('remotes', { cluster2: kubeconfig('cluster2', 't2'), cluster3: kubeconfig('cluster3', 't3') }));
    await settle();
    assert.ok(workload(view, `network3/SyntheticGateway/${HELLO}`));
    remotes.upsertSecret(remoteSecret('remotes', { cluster2: kubeconfig('cluster2', 't2') }));
    await settle();
    assert.equal(workload(view, `network3/SyntheticGateway/${HELLO}`), undefined);
    assert.ok(workload(view, SYNTHETIC_HELLO_N2));
    assert.deepEqual(connections.map((c) => [c.request.clusterId, c.stopped]), [['cluster2', false], ['cluster3', true]]);
  });

  test('a rotated token reconnects that cluster only; its resources stay served', async () => {
    const cluster3 = () => cluster({ id: 'cluster3', network: 'network3', vip: '10.98.0.10', pods: [v2('helloworld-v3')], gatewayAddress: '198.18.3.100' });
    const { view, changes, connections, remotes } = remoteSetup({ cluster2: () => cluster2(), cluster3 });
    remotes.upsertSecret(remoteSecret('secret-2', { cluster2: kubeconfig('cluster2', 'token-a') }));
    remotes.upsertSecret(remoteSecret('secret-3', { cluster3: kubeconfig('cluster3', 'token-3') }));
    await settle();
    changes.length = 0;
    remotes.upsertSecret(remoteSecret('secret-2', { cluster2: kubeconfig('cluster2', 'token-b') }));
    await settle();
    assert.deepEqual(connections.map((c) => [c.request.clusterId, c.stopped]), [['cluster2', true], ['cluster3', false], ['cluster2', false]]);
    assert.equal(connections[2]!.request.kubeConfig.getCurrentUser()?.token, 'token-b');
    assert.deepEqual(removed(changes), [], 'nothing disappears during the reconnect');
    assert.ok(workload(view, SYNTHETIC_HELLO_N2));

    remotes.upsertSecret(remoteSecret('secret-2', { cluster2: kubeconfig('cluster2', 'token-b') }));
    await settle();
    assert.equal(connections.length, 3, 'unchanged content (a resync) does not reconnect');
  });

  test('a broken kubeconfig is an error (logged once, counted) and the other clusters are unaffected', async () => {
    const { view, connections, remotes, lines, metric } = remoteSetup({ cluster2: () => cluster2() });
    remotes.upsertSecret(remoteSecret('secret-2', { cluster2: kubeconfig('cluster2', 'token-a') }));
    const broken = remoteSecret('secret-3', { cluster3: 'clusters: [\n  - name: x\n token: supersecret' });
    remotes.upsertSecret(broken);
    remotes.upsertSecret(broken);
    await settle();
    assert.deepEqual(connections.map((c) => c.request.clusterId), ['cluster2']);
    assert.ok(workload(view, SYNTHETIC_HELLO_N2));
    assert.equal(await metric('ambit_remote_clusters', { cluster: 'cluster3', state: 'error' }), 1);
    assert.equal(await metric('ambit_remote_clusters', { cluster: 'cluster3', state: 'syncing' }), 0);
    assert.equal(await metric('ambit_remote_cluster_errors_total', { cluster: 'cluster3', reason: 'kubeconfig' }), 1);
    assert.equal(await metric('ambit_remote_clusters', { cluster: 'cluster2', state: 'synced' }), 1);
    const errors = lines.filter((line) => line['msg'] === 'remote cluster unavailable');
    assert.equal(errors.length, 1, 'one log line per state change');
    assert.match(String(errors[0]!['problem']), /secret istio-system\/secret-3 key "cluster3": \(kubeconfig\): is not valid YAML/);
    assert.ok(!JSON.stringify(lines).includes('supersecret'), 'no secret content in logs');
  });

  test('a broken update keeps the working connection of that cluster', async () => {
    const { view, connections, remotes, metric } = remoteSetup({ cluster2: () => cluster2() });
    remotes.upsertSecret(remoteSecret('secret-2', { cluster2: kubeconfig('cluster2', 'token-a') }));
    await settle();
    remotes.upsertSecret(remoteSecret('secret-2', { cluster2: kubeconfig('cluster2', 'token-b', 'ftp://nowhere') }));
    await settle();
    assert.equal(connections.length, 1);
    assert.equal(connections[0]!.stopped, false);
    assert.ok(workload(view, SYNTHETIC_HELLO_N2));
    assert.equal(await metric('ambit_remote_clusters', { cluster: 'cluster2', state: 'error' }), 1);
    assert.match(remotes.status()[0]!.problem ?? '', /clusters\[0\]\.cluster\.server: must be an https:\/\/ URL/);
  });

  test('an unreachable or unauthorized API server: error state once per change, counted per failure, recovers', async () => {
    const { connections, remotes, lines, metric } = remoteSetup({ cluster2: () => cluster2() });
    remotes.upsertSecret(remoteSecret('secret-2', { cluster2: kubeconfig('cluster2', 'token-a') }));
    await settle();
    const health = connections[0]!.request.health;
    health({ ok: false, reason: 'unauthorized', message: 'HTTP 401: Unauthorized' });
    health({ ok: false, reason: 'unauthorized', message: 'HTTP 401: Unauthorized' });
    assert.equal(await metric('ambit_remote_clusters', { cluster: 'cluster2', state: 'error' }), 1);
    assert.equal(await metric('ambit_remote_cluster_errors_total', { cluster: 'cluster2', reason: 'unauthorized' }), 2);
    assert.equal(lines.filter((line) => line['msg'] === 'remote cluster unavailable').length, 1);
    health({ ok: true });
    assert.equal(await metric('ambit_remote_clusters', { cluster: 'cluster2', state: 'synced' }), 1);
    assert.equal(await metric('ambit_remote_clusters', { cluster: 'cluster2', state: 'error' }), 0);
  });

  test('a kubeconfig with insecure-skip-tls-verify is refused, never used, and says why (status, log, metric)', async () => {
    const { connections, remotes, lines, metric } = remoteSetup({ cluster2: () => cluster2() });
    const insecure = kubeconfig('cluster2', 'token-a').replace('    certificate-authority-data: ZmFrZQ==\n', '    insecure-skip-tls-verify: true\n');
    remotes.upsertSecret(remoteSecret('secret-2', { cluster2: insecure }));
    await settle();
    assert.equal(connections.length, 0, 'no connection is made with TLS verification off');
    const [status] = remotes.status();
    assert.equal(status?.state, 'error');
    assert.match(status?.problem ?? '', /^insecure_kubeconfig: secret istio-system\/secret-2 key "cluster2": clusters\[0\]\.cluster\.insecure-skip-tls-verify: TLS verification of remote API servers cannot be turned off/);
    assert.equal(await metric('ambit_remote_cluster_errors_total', { cluster: 'cluster2', reason: 'insecure_kubeconfig' }), 1);
    assert.ok(lines.some((line) => line['msg'] === 'remote cluster unavailable' && /insecure-skip-tls-verify/.test(String(line['problem']))));

    // Next to a CA, and as the string "true", it is refused all the same; a working connection stays.
    remotes.upsertSecret(remoteSecret('secret-2', { cluster2: kubeconfig('cluster2', 'token-a') }));
    await settle();
    assert.equal(connections.length, 1);
    remotes.upsertSecret(remoteSecret('secret-2', { cluster2: kubeconfig('cluster2', 'token-b').replace('    server:', '    insecure-skip-tls-verify: "true"\n    server:') }));
    await settle();
    assert.equal(connections.length, 1);
    assert.equal(connections[0]!.stopped, false);
    assert.match(remotes.status()[0]?.problem ?? '', /insecure-skip-tls-verify/);
  });

  test('a key with our own cluster name is ignored with a warning', async () => {
    const { view, connections, remotes, lines } = remoteSetup({ cluster2: () => cluster2() });
    remotes.upsertSecret(remoteSecret('mixed', { cluster1: kubeconfig('cluster1', 'x'), cluster2: kubeconfig('cluster2', 'y') }));
    await settle();
    assert.deepEqual(connections.map((c) => c.request.clusterId), ['cluster2']);
    const warnings = lines.filter((line) => String(line['msg']).includes('local cluster name'));
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]!['key'], 'cluster1');
    assert.equal(warnings[0]!['level'], 40);
    assert.ok(workload(view, 'cluster1//Pod/sample/helloworld-v1-abc'), 'local resources untouched');
  });

  test('a Secret without the multiCluster label is not a remote secret', async () => {
    const { connections, remotes } = remoteSetup({ cluster2: () => cluster2() });
    remotes.upsertSecret(remoteSecret('plain', { cluster2: kubeconfig('cluster2', 'y') }, {}));
    await settle();
    assert.equal(connections.length, 0);
  });
});

describe('parseRemoteKubeconfig', () => {
  const source = { secret: 'istio-system/istio-remote-secret-cluster2', key: 'cluster2' };
  const problem = (text: string) => {
    try {
      parseRemoteKubeconfig(text, source);
    } catch (err) {
      assert.ok(err instanceof RemoteKubeconfigError);
      return err.message;
    }
    assert.fail('expected an error');
  };

  test('accepts the seed’s kubeconfig and makes its cluster and user current', () => {
    const config = parseRemoteKubeconfig(kubeconfig('cluster2', 'tok'), source);
    assert.equal(config.getCurrentCluster()?.server, 'https://198.18.0.2:6443');
    assert.equal(config.getCurrentUser()?.token, 'tok');
  });

  test('names the secret, key and field; never the values', () => {
    const two = kubeconfig('a', 'tok1').replace('clusters:\n', 'clusters:\n- name: b\n  cluster:\n    server: https://b\n');
    assert.equal(problem(two), 'secret istio-system/istio-remote-secret-cluster2 key "cluster2": clusters: has 2 entries (want exactly one)');
    assert.match(problem(kubeconfig('a', 'tok').replace(/ {4}server: .*\n/, '')), /: clusters\[0\]\.cluster\.server: is missing$/);
    assert.match(problem(kubeconfig('a', 'tok', 'not a url')), /clusters\[0\]\.cluster\.server: is not a URL/);
    const plainHttp = kubeconfig('a', 'tok').replace('https://', 'http://');
    assert.match(problem(plainHttp), /clusters\[0\]\.cluster\.server: must be an https:\/\/ URL/);
    const skipVerify = kubeconfig('a', 'tok').replace('    server:', '    insecure-skip-tls-verify: true\n    server:');
    assert.match(problem(skipVerify), /clusters\[0\]\.cluster\.insecure-skip-tls-verify: TLS verification of remote API servers cannot be turned off/);
    assert.match(problem(kubeconfig('a', 'tok').replace('users:\n', 'usrs:\n')), /: users: is missing/);
    assert.match(problem(''), /\(kubeconfig\): is empty/);
    const secretish = problem('clusters: [ {name: a, cluster: {server: "https://x"}} ]\nusers: [ {name: u, user: {token: sekrit}} ] ]');
    assert.ok(!secretish.includes('sekrit'), secretish);
  });

  test('refuses credential plugins and file references', () => {
    const exec = kubeconfig('a', 'tok').replace('    token: tok\n', '    exec:\n      command: /bin/sh\n');
    assert.match(problem(exec), /users\[0\]\.user\.exec: exec credential plugins are not allowed/);
    const tokenFile = kubeconfig('a', 'tok').replace('    token: tok\n', '    token-file: /var/run/secrets/kubernetes.io/serviceaccount/token\n');
    assert.match(problem(tokenFile), /users\[0\]\.user\.token-file: file references are not allowed/);
  });
});

// ---------------------------------------------------------------------------------------------
// The real connection path, against a minimal API server on 127.0.0.1
// ---------------------------------------------------------------------------------------------

/** Waits for a condition driven by real I/O; fails with `what` if it never holds. */
async function eventually(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail(`never happened: ${what}`);
}

describe('RemoteClusters against an API server', () => {
  test('secret watch, unauthorized token, rotation to a good token, deletion', async () => {
    const secretsPath = '/api/v1/namespaces/istio-system/secrets';
    const remoteGateway = gateway('istio-eastwestgateway', { network: 'network2', address: '198.18.2.100' });
    const secret = (token: string) => remoteSecret('istio-remote-secret-cluster2', { cluster2: api.kubeconfig('cluster2', token) });
    const api = await fakeApiServer(
      {
        [secretsPath]: [],
        '/api/v1/namespaces': [namespace('istio-system', { 'topology.istio.io/network': 'network2' }), namespace('sample', { 'istio.io/dataplane-mode': 'ambient' })],
        '/api/v1/nodes': [],
        '/api/v1/services': [service('helloworld', '10.97.0.10', { global: true })],
        '/api/v1/pods': [v2()],
        '/apis/security.istio.io/v1/authorizationpolicies': [],
        '/apis/gateway.networking.k8s.io/v1/gateways': [remoteGateway],
      },
      new Set(['local-token', 'good-token']),
    );
    const { log, lines } = capture();
    const metrics = new Registry();
    const view = new MeshView({ local: cluster1(), trustDomain: 'cluster.local', log });
    const remotes = new RemoteClusters({ localClusterId: 'cluster1', systemNamespace: 'istio-system', trustDomain: 'cluster.local', clusters: view, metrics, log });
    const metric = async (name: string, labels: StringMap) =>
      ((await metrics.getSingleMetric(name)?.get())?.values ?? []).find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value;
    try {
      const localConfig = new KubeConfig();
      localConfig.loadFromString(api.kubeconfig('local', 'local-token'));

      api.objects[secretsPath]!.push(secret('wrong-token')); // listed, not watched
      remotes.watch(localConfig);
      await eventually('unauthorized error state', async () => (await metric('ambit_remote_clusters', { cluster: 'cluster2', state: 'error' })) === 1);
      assert.ok(((await metric('ambit_remote_cluster_errors_total', { cluster: 'cluster2', reason: 'unauthorized' })) ?? 0) >= 1);
      assert.equal(workload(view, SYNTHETIC_HELLO_N2), undefined);

      await eventually('the secret watch is open', () => api.watching(secretsPath));
      api.emit(secretsPath, 'MODIFIED', secret('good-token'));
      await eventually('remote resources served', () => workload(view, SYNTHETIC_HELLO_N2)?.capacity === 1);
      await eventually('synced state', async () => (await metric('ambit_remote_clusters', { cluster: 'cluster2', state: 'synced' })) === 1);
      assert.deepEqual(vips(svc(view, HELLO)), ['network1/10.96.0.10', 'network2/10.97.0.10']);
      assert.ok(workload(view, 'cluster2/Gateway/istio-system/istio-eastwestgateway'));
      assert.equal(remotes.status()[0]?.network, 'network2');

      api.emit(secretsPath, 'DELETED', secret('good-token'));
      await eventually('remote resources removed', () => workload(view, SYNTHETIC_HELLO_N2) === undefined);
      assert.deepEqual(remotes.status(), []);
      assert.ok(!JSON.stringify(lines).includes('good-token') && !JSON.stringify(lines).includes('wrong-token'), 'no tokens in logs');
    } finally {
      remotes.stop();
      view.close();
      await api.close();
    }
  });
});
