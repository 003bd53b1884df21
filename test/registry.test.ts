import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { create, toJson, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import { V1ObjectMeta, V1Pod } from '@kubernetes/client-node';
import { pino } from 'pino';

import { MeshRegistry, type RegistryChange, type RegistryOptions } from '../src/controlplane/registry/index.js';
import {
  Action,
  AuthorizationSchema,
  Scope,
  type Authorization,
} from '../src/gen/istio/security/authorization_pb.js';
import {
  AppProtocol,
  LoadBalancing_Mode,
  LoadBalancing_Scope,
  NetworkMode,
  TunnelProtocol,
  WorkloadSchema,
  WorkloadStatus,
  WorkloadType,
  type Service,
  type Workload,
} from '../src/gen/istio/workload/workload_pb.js';

// ---------------------------------------------------------------------------------------------
// Fixtures: objects as `kubectl get -o json` returns them
// ---------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;
type StringMap = Record<string, string>;

const CLUSTER = 'cluster1';
const HOST = (name: string, ns = 'default') => `${ns}/${name}.${ns}.svc.cluster.local`;
const UID = (name: string, ns = 'default') => `${CLUSTER}//Pod/${ns}/${name}`;

function setup(overrides: Partial<RegistryOptions> = {}) {
  const logLines: Json[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logLines.push(JSON.parse(line) as Json) });
  const registry = new MeshRegistry({
    clusterId: CLUSTER,
    network: 'network1',
    trustDomain: 'cluster.local',
    systemNamespace: 'istio-system',
    log,
    ...overrides,
  });
  const changes: RegistryChange[] = [];
  registry.onChange((change) => changes.push(change));
  return { registry, changes, logLines };
}

function namespace(name: string, labels: StringMap = {}, annotations: StringMap = {}): Json {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels, annotations } };
}

function node(name: string, labels: StringMap = {}): Json {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels } };
}

interface PodOptions {
  namespace?: string;
  labels?: StringMap;
  ip?: string | null;
  ips?: string[];
  node?: string;
  serviceAccount?: string;
  phase?: string;
  ready?: boolean;
  hostNetwork?: boolean;
  owner?: { kind: string; name: string };
  ports?: Array<{ name: string; containerPort: number; protocol?: string }>;
  deletionTimestamp?: unknown;
}

function pod(name: string, o: PodOptions = {}): Json {
  const ip = o.ip === undefined ? '10.0.0.1' : o.ip;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: o.namespace ?? 'default',
      uid: `uid-${name}`,
      labels: o.labels ?? {},
      ...(o.owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: o.owner.kind, name: o.owner.name, uid: 'x', controller: true }] } : {}),
      ...(o.deletionTimestamp ? { deletionTimestamp: o.deletionTimestamp } : {}),
    },
    spec: {
      nodeName: o.node ?? 'node1',
      serviceAccountName: o.serviceAccount ?? 'default',
      ...(o.hostNetwork ? { hostNetwork: true } : {}),
      containers: [{ name: 'app', image: 'example', ports: o.ports ?? [] }],
    },
    status: {
      phase: o.phase ?? 'Running',
      ...(ip ? { podIP: ip, podIPs: (o.ips ?? [ip]).map((address) => ({ ip: address })) } : {}),
      conditions: [{ type: 'Ready', status: (o.ready ?? true) ? 'True' : 'False' }],
    },
  };
}

interface ServiceOptions {
  namespace?: string;
  selector?: StringMap;
  clusterIP?: string;
  ports?: Json[];
  annotations?: StringMap;
  labels?: StringMap;
  spec?: Json;
}

function service(name: string, o: ServiceOptions = {}): Json {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: o.namespace ?? 'default', annotations: o.annotations ?? {}, labels: o.labels ?? {} },
    spec: {
      type: 'ClusterIP',
      clusterIP: o.clusterIP ?? '10.96.0.10',
      clusterIPs: [o.clusterIP ?? '10.96.0.10'],
      ...(o.selector ? { selector: o.selector } : {}),
      ports: o.ports ?? [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
      ...o.spec,
    },
  };
}

function policy(name: string, ns: string, spec: Json, annotations: StringMap = {}): Json {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: ns, annotations },
    spec,
  };
}

// ---------------------------------------------------------------------------------------------
// Assertion helpers
// ---------------------------------------------------------------------------------------------

function workloadOf(registry: MeshRegistry, name: string, ns = 'default'): Workload {
  const address = registry.address(UID(name, ns));
  assert.ok(address, `no workload for pod ${ns}/${name}`);
  assert.equal(address.type.case, 'workload');
  return address.type.value;
}

function serviceOf(registry: MeshRegistry, name: string, ns = 'default'): Service {
  const address = registry.address(HOST(name, ns));
  assert.ok(address, `no service ${ns}/${name}`);
  assert.equal(address.type.case, 'service');
  return address.type.value;
}

function authorizationOf(registry: MeshRegistry, name: string): Authorization {
  const authorization = registry.authorization(name);
  assert.ok(authorization, `no authorization ${name}`);
  return authorization;
}

/** Compares messages through their JSON form, which gives readable diffs. */
function assertMessage<Desc extends DescMessage>(schema: Desc, actual: MessageShape<Desc>, expected: MessageInitShape<Desc>): void {
  assert.deepEqual(toJson(schema, actual), toJson(schema, create(schema, expected)));
}

function sorted(names: string[]): string[] {
  return [...names].sort();
}

function onlyChange(changes: RegistryChange[]): RegistryChange {
  assert.equal(changes.length, 1, `expected exactly one change, got ${JSON.stringify(changes)}`);
  return changes[0]!;
}

const ip = (text: string) => Uint8Array.from(text.split('.').map(Number));
const exact = (value: string) => ({ matchType: { case: 'exact' as const, value } });
const prefix = (value: string) => ({ matchType: { case: 'prefix' as const, value } });
const suffix = (value: string) => ({ matchType: { case: 'suffix' as const, value } });
const presence = () => ({ matchType: { case: 'presence' as const, value: create(EmptySchema) } });

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

describe('workloads', () => {
  test('a deployment pod becomes a complete workload', () => {
    const { registry } = setup();
    registry.upsert('Node', node('node1', { 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': 'z1' }));
    registry.upsert(
      'Pod',
      pod('web-7d4f9c8b6-x2x9z', {
        labels: { app: 'web', version: 'v2', 'pod-template-hash': '7d4f9c8b6' },
        owner: { kind: 'ReplicaSet', name: 'web-7d4f9c8b6' },
        serviceAccount: 'web',
        ip: '10.0.0.7',
      }),
    );
    assertMessage(WorkloadSchema, workloadOf(registry, 'web-7d4f9c8b6-x2x9z'), {
      uid: UID('web-7d4f9c8b6-x2x9z'),
      name: 'web-7d4f9c8b6-x2x9z',
      namespace: 'default',
      addresses: [ip('10.0.0.7')],
      network: 'network1',
      tunnelProtocol: TunnelProtocol.NONE,
      serviceAccount: 'web',
      node: 'node1',
      canonicalName: 'web',
      canonicalRevision: 'v2',
      workloadType: WorkloadType.DEPLOYMENT,
      workloadName: 'web',
      status: WorkloadStatus.HEALTHY,
      clusterId: CLUSTER,
      locality: { region: 'r1', zone: 'z1' },
    });
  });

  test('defaults are omitted; a non-default trust domain, a pod network label and dual stack are carried', () => {
    const { registry } = setup({ trustDomain: 'example.org' });
    registry.upsert('Pod', pod('a', { ips: ['10.0.0.1', 'fd00::1'], labels: { 'topology.istio.io/network': 'net-x' } }));
    const workload = workloadOf(registry, 'a');
    assert.equal(workload.trustDomain, 'example.org');
    assert.equal(workload.serviceAccount, '', 'the default service account is omitted');
    assert.equal(workload.network, 'net-x');
    assert.deepEqual(workload.addresses.map((a) => a.length), [4, 16]);
    assert.equal(workload.addresses[1]![15], 1);
    assert.equal(workload.locality, undefined, 'no node known: no locality');

    const { registry: plain } = setup();
    plain.upsert('Pod', pod('a'));
    assert.equal(workloadOf(plain, 'a').trustDomain, '', 'cluster.local is omitted');
  });

  test('only addressable, unfinished pods have workloads', () => {
    const { registry, changes } = setup();
    registry.upsert('Pod', pod('pending', { ip: null, phase: 'Pending' }));
    registry.upsert('Pod', pod('done', { phase: 'Succeeded' }));
    registry.upsert('Pod', pod('failed', { phase: 'Failed' }));
    assert.equal(registry.addresses().size, 0);
    assert.equal(changes.length, 0);

    registry.upsert('Pod', pod('pending', { ip: '10.0.0.9', phase: 'Running' }));
    assert.deepEqual(onlyChange(changes).addresses.upserted, [UID('pending')]);
    changes.length = 0;
    registry.upsert('Pod', pod('pending', { ip: '10.0.0.9', phase: 'Succeeded' }));
    assert.deepEqual(onlyChange(changes).addresses, { upserted: [], removed: [UID('pending')] });
  });

  test('readiness and deletion drive the status', () => {
    const { registry, changes } = setup();
    registry.upsert('Pod', pod('a', { ready: false }));
    assert.equal(workloadOf(registry, 'a').status, WorkloadStatus.UNHEALTHY);
    changes.length = 0;
    registry.upsert('Pod', pod('a', { ready: true }));
    assert.equal(workloadOf(registry, 'a').status, WorkloadStatus.HEALTHY);
    assert.deepEqual(onlyChange(changes).addresses.upserted, [UID('a')]);
    // client-node model objects carry Date timestamps; JSON carries strings: both count.
    registry.upsert('Pod', pod('a', { ready: true, deletionTimestamp: new Date() }));
    assert.equal(workloadOf(registry, 'a').status, WorkloadStatus.UNHEALTHY);
  });

  test('a pod being deleted whose address a new pod got has no workload (the address is the new pod\'s), and gets it back if that pod goes', () => {
    const { registry } = setup();
    registry.upsert('Pod', pod('held', { ip: '10.0.0.6', ready: true }));
    registry.upsert('Pod', pod('held', { ip: '10.0.0.6', ready: true, deletionTimestamp: new Date() }));
    assert.equal(workloadOf(registry, 'held').status, WorkloadStatus.UNHEALTHY, 'still listed while no one else has its address');
    registry.upsert('Pod', pod('waypoint', { ip: '10.0.0.6', ready: false }));
    assert.equal(registry.address(UID('held')), undefined, 'gone as soon as another pod has the address, ready or not');
    assert.ok(registry.address(UID('waypoint')));
    // An update of the held pod changes nothing.
    registry.upsert('Pod', pod('held', { ip: '10.0.0.6', ready: false, deletionTimestamp: new Date() }));
    assert.equal(registry.address(UID('held')), undefined);
    // Two pods not being deleted on one address (a real conflict) both stay: ztunnel decides.
    registry.upsert('Pod', pod('twin', { ip: '10.0.0.6', ready: true }));
    assert.ok(registry.address(UID('twin')) && registry.address(UID('waypoint')));
    registry.remove('Pod', pod('waypoint', { ip: '10.0.0.6' }));
    registry.remove('Pod', pod('twin', { ip: '10.0.0.6' }));
    assert.equal(workloadOf(registry, 'held').status, WorkloadStatus.UNHEALTHY, 'back once nobody else has the address');
  });

  test('an identical update announces nothing', () => {
    const { registry, changes } = setup();
    registry.upsert('Pod', pod('a'));
    changes.length = 0;
    registry.upsert('Pod', pod('a'));
    assert.equal(changes.length, 0);
  });

  test('workload type and name from the owner; canonical name and revision from labels', () => {
    const { registry } = setup();
    const cases: Array<[PodOptions, string, WorkloadType, string, string]> = [
      [{ owner: { kind: 'ReplicaSet', name: 'api-5c9d8' }, labels: { 'pod-template-hash': '5c9d8' } }, 'api', WorkloadType.DEPLOYMENT, 'api', 'latest'],
      [{ owner: { kind: 'ReplicaSet', name: 'api-v1-5c9d8' } }, 'api-v1', WorkloadType.DEPLOYMENT, 'api-v1', 'latest'],
      [{ owner: { kind: 'Job', name: 'migrate' }, labels: { 'app.kubernetes.io/name': 'db', 'app.kubernetes.io/version': '3' } }, 'migrate', WorkloadType.JOB, 'db', '3'],
      [{ owner: { kind: 'Job', name: 'backup-28455120' } }, 'backup', WorkloadType.CRONJOB, 'backup', 'latest'],
      [{ owner: { kind: 'StatefulSet', name: 'db' } }, 'p4', WorkloadType.POD, 'p4', 'latest'],
      [{ labels: { app: 'x', 'service.istio.io/canonical-name': 'canon', 'service.istio.io/canonical-revision': 'r9' } }, 'p5', WorkloadType.POD, 'canon', 'r9'],
    ];
    cases.forEach(([options], i) => registry.upsert('Pod', pod(`p${i}`, options)));
    cases.forEach(([, workloadName, type, canonicalName, revision], i) => {
      const workload = workloadOf(registry, `p${i}`);
      assert.deepEqual(
        [workload.workloadName, workload.workloadType, workload.canonicalName, workload.canonicalRevision],
        [workloadName, type, canonicalName, revision],
        `case ${i}`,
      );
    });
  });

  test('host-network pods are never enrolled', () => {
    const { registry } = setup();
    registry.upsert('Namespace', namespace('default', { 'istio.io/dataplane-mode': 'ambient' }));
    registry.upsert('Pod', pod('agent', { hostNetwork: true, labels: { 'istio.io/dataplane-mode': 'ambient' } }));
    const workload = workloadOf(registry, 'agent');
    assert.equal(workload.networkMode, NetworkMode.HOST_NETWORK);
    assert.equal(workload.tunnelProtocol, TunnelProtocol.NONE);
  });

  test('removing a pod removes its workload', () => {
    const { registry, changes } = setup();
    registry.upsert('Pod', pod('a'));
    changes.length = 0;
    registry.remove('Pod', pod('a'));
    assert.deepEqual(onlyChange(changes).addresses, { upserted: [], removed: [UID('a')] });
    assert.equal(registry.addresses().size, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Enrolment and locality
// ---------------------------------------------------------------------------------------------

describe('enrolment', () => {
  test('labelling a namespace enrols its pods, except opted-out ones, touching nothing else', () => {
    const { registry, changes } = setup();
    registry.upsert('Namespace', namespace('apps'));
    registry.upsert('Namespace', namespace('other'));
    registry.upsert('Pod', pod('a', { namespace: 'apps' }));
    registry.upsert('Pod', pod('b', { namespace: 'apps' }));
    registry.upsert('Pod', pod('out', { namespace: 'apps', labels: { 'istio.io/dataplane-mode': 'none' } }));
    registry.upsert('Pod', pod('c', { namespace: 'other' }));
    registry.upsert('Service', service('svc', { namespace: 'apps', selector: { app: 'x' } }));
    changes.length = 0;

    registry.upsert('Namespace', namespace('apps', { 'istio.io/dataplane-mode': 'ambient' }));
    const enrol = onlyChange(changes);
    assert.deepEqual(sorted(enrol.addresses.upserted), [UID('a', 'apps'), UID('b', 'apps')]);
    assert.deepEqual(enrol.addresses.removed, []);
    assert.equal(workloadOf(registry, 'a', 'apps').tunnelProtocol, TunnelProtocol.HBONE);
    assert.equal(workloadOf(registry, 'out', 'apps').tunnelProtocol, TunnelProtocol.NONE);
    assert.equal(workloadOf(registry, 'c', 'other').tunnelProtocol, TunnelProtocol.NONE);

    changes.length = 0;
    registry.upsert('Namespace', namespace('apps', { 'istio.io/dataplane-mode': 'ambient', team: 'x' }));
    assert.equal(changes.length, 0, 'an unrelated label changes nothing');

    registry.upsert('Namespace', namespace('apps'));
    assert.deepEqual(sorted(onlyChange(changes).addresses.upserted), [UID('a', 'apps'), UID('b', 'apps')]);
    assert.equal(workloadOf(registry, 'a', 'apps').tunnelProtocol, TunnelProtocol.NONE);
  });

  test('a pod label enrols a pod in a namespace that is not enrolled', () => {
    const { registry } = setup();
    registry.upsert('Pod', pod('a', { labels: { 'istio.io/dataplane-mode': 'ambient' } }));
    assert.equal(workloadOf(registry, 'a').tunnelProtocol, TunnelProtocol.HBONE);
  });

  test('a namespace seen after its pods still enrols them; deleting it unenrols them', () => {
    const { registry, changes } = setup();
    registry.upsert('Pod', pod('a'));
    changes.length = 0;
    registry.upsert('Namespace', namespace('default', { 'istio.io/dataplane-mode': 'ambient' }));
    assert.deepEqual(onlyChange(changes).addresses.upserted, [UID('a')]);
    registry.remove('Namespace', namespace('default'));
    assert.equal(workloadOf(registry, 'a').tunnelProtocol, TunnelProtocol.NONE);
  });
});

describe('locality', () => {
  test('a node arriving after its pods gives them locality; changes follow the node', () => {
    const { registry, changes } = setup();
    registry.upsert('Pod', pod('a', { node: 'node1' }));
    registry.upsert('Pod', pod('b', { node: 'node1' }));
    registry.upsert('Pod', pod('elsewhere', { node: 'node2' }));
    assert.equal(workloadOf(registry, 'a').locality, undefined);
    changes.length = 0;

    registry.upsert('Node', node('node1', { 'topology.kubernetes.io/region': 'eu', 'topology.kubernetes.io/zone': 'eu-1', 'topology.istio.io/subzone': 'rack7' }));
    assert.deepEqual(sorted(onlyChange(changes).addresses.upserted), [UID('a'), UID('b')]);
    const locality = workloadOf(registry, 'a').locality;
    assert.deepEqual([locality?.region, locality?.zone, locality?.subzone], ['eu', 'eu-1', 'rack7']);
    assert.equal(workloadOf(registry, 'elsewhere').locality, undefined);

    changes.length = 0;
    registry.upsert('Node', node('node1', { 'topology.kubernetes.io/region': 'eu', 'topology.kubernetes.io/zone': 'eu-1', 'topology.istio.io/subzone': 'rack7', other: 'x' }));
    assert.equal(changes.length, 0, 'a label that is not topology changes nothing');

    registry.upsert('Node', node('node1', { 'topology.kubernetes.io/region': 'eu', 'topology.kubernetes.io/zone': 'eu-2' }));
    assert.equal(workloadOf(registry, 'a').locality?.zone, 'eu-2');
    registry.remove('Node', node('node1'));
    assert.equal(workloadOf(registry, 'a').locality, undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------

describe('services', () => {
  test('service resource: VIPs, TCP ports, app protocols; headless and ExternalName services', () => {
    const { registry } = setup();
    registry.upsert(
      'Service',
      service('web', {
        selector: { app: 'web' },
        ports: [
          { name: 'http', port: 80, targetPort: 'http-alt', protocol: 'TCP' },
          { name: 'grpc-api', port: 9090, targetPort: 9091 },
          { name: 'metrics', port: 9100, appProtocol: 'kubernetes.io/h2c' },
          { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' },
        ],
      }),
    );
    const web = serviceOf(registry, 'web');
    assert.equal(web.hostname, 'web.default.svc.cluster.local');
    assert.deepEqual(web.addresses.map((a) => [a.network, [...a.address]]), [['network1', [10, 96, 0, 10]]]);
    assert.deepEqual(
      web.ports.map((p) => [p.servicePort, p.targetPort, p.appProtocol]),
      [
        [80, 0, AppProtocol.HTTP11],
        [9090, 9091, AppProtocol.GRPC],
        [9100, 9100, AppProtocol.HTTP2],
      ],
    );
    assert.equal(web.loadBalancing, undefined);

    registry.upsert('Service', service('headless', { clusterIP: 'None', selector: { app: 'web' } }));
    assert.deepEqual(serviceOf(registry, 'headless').addresses, []);

    registry.upsert('Service', { metadata: { name: 'ext', namespace: 'default' }, spec: { type: 'ExternalName', externalName: 'example.com' } });
    assert.equal(registry.address(HOST('ext')), undefined);
  });

  test('named target ports resolve per pod; a pod without the port gets no entry for it', () => {
    const { registry } = setup();
    registry.upsert('Pod', pod('a', { labels: { app: 'web' }, ports: [{ name: 'http-alt', containerPort: 8080 }] }));
    registry.upsert('Pod', pod('b', { labels: { app: 'web' }, ports: [{ name: 'http-alt', containerPort: 8081 }] }));
    registry.upsert('Pod', pod('c', { labels: { app: 'web' } }));
    registry.upsert(
      'Service',
      service('web', {
        selector: { app: 'web' },
        ports: [
          { name: 'http', port: 80, targetPort: 'http-alt' },
          { name: 'tcp-raw', port: 81, targetPort: 9000 },
          { name: 'plain', port: 82 },
          { name: 'dns', port: 53, protocol: 'UDP' },
        ],
      }),
    );
    const portsOf = (name: string) =>
      workloadOf(registry, name).services[HOST('web')]?.ports.map((p) => [p.servicePort, p.targetPort, p.appProtocol]);
    assert.deepEqual(portsOf('a'), [[80, 8080, AppProtocol.HTTP11], [81, 9000, AppProtocol.TCP], [82, 82, AppProtocol.UNKNOWN]]);
    assert.deepEqual(portsOf('b'), [[80, 8081, AppProtocol.HTTP11], [81, 9000, AppProtocol.TCP], [82, 82, AppProtocol.UNKNOWN]]);
    assert.deepEqual(portsOf('c'), [[81, 9000, AppProtocol.TCP], [82, 82, AppProtocol.UNKNOWN]]);
  });

  test('a selector change moves pods in and out, rebuilding only the pods concerned', () => {
    const { registry, changes } = setup();
    for (const app of ['a', 'b', 'c']) registry.upsert('Pod', pod(`${app}1`, { labels: { app } }));
    registry.upsert('Pod', pod('far', { namespace: 'other', labels: { app: 'b' } }));
    registry.upsert('Service', service('svc', { selector: { app: 'a' } }));
    assert.deepEqual(Object.keys(workloadOf(registry, 'a1').services), [HOST('svc')]);
    changes.length = 0;
    const before = registry.stats();

    registry.upsert('Service', service('svc', { selector: { app: 'b' } }));
    const change = onlyChange(changes);
    assert.deepEqual(sorted(change.addresses.upserted), [UID('a1'), UID('b1')], 'the service message itself did not change');
    assert.equal(registry.stats().workloadBuilds - before.workloadBuilds, 2);
    assert.deepEqual(workloadOf(registry, 'a1').services, {});
    assert.deepEqual(Object.keys(workloadOf(registry, 'b1').services), [HOST('svc')]);
    assert.deepEqual(workloadOf(registry, 'far', 'other').services, {}, 'services select in their own namespace only');

    changes.length = 0;
    registry.remove('Service', service('svc'));
    assert.deepEqual(onlyChange(changes).addresses, { upserted: [UID('b1')], removed: [HOST('svc')] });
    assert.deepEqual(workloadOf(registry, 'b1').services, {});
  });

  test('a service change that pods do not see rebuilds no pod', () => {
    const { registry, changes } = setup();
    registry.upsert('Pod', pod('a', { labels: { app: 'a' } }));
    registry.upsert('Service', service('svc', { selector: { app: 'a' } }));
    changes.length = 0;
    const before = registry.stats().workloadBuilds;
    registry.upsert('Service', service('svc', { selector: { app: 'a' }, annotations: { owner: 'me' } }));
    assert.equal(changes.length, 0);
    registry.upsert('Service', service('svc', { selector: { app: 'a' }, annotations: { 'networking.istio.io/traffic-distribution': 'PreferClose' } }));
    assert.deepEqual(onlyChange(changes).addresses.upserted, [HOST('svc')]);
    assert.equal(registry.stats().workloadBuilds, before);

    changes.length = 0;
    registry.upsert('Service', service('svc', { selector: { app: 'a' }, ports: [{ name: 'http', port: 80, targetPort: 8081 }] }));
    assert.deepEqual(sorted(onlyChange(changes).addresses.upserted), sorted([HOST('svc'), UID('a')]));
    assert.equal(workloadOf(registry, 'a').services[HOST('svc')]?.ports[0]?.targetPort, 8081);
  });

  test('traffic distribution: spec, service annotation, namespace annotation, internalTrafficPolicy', () => {
    const { registry, changes } = setup();
    const { NETWORK, REGION, ZONE, SUBZONE, NODE } = LoadBalancing_Scope;
    const zoneFailover = [[NETWORK, REGION, ZONE], LoadBalancing_Mode.FAILOVER];
    const nodeFailover = [[NETWORK, REGION, ZONE, SUBZONE, NODE], LoadBalancing_Mode.FAILOVER];
    const lbOf = (name: string) => {
      const lb = serviceOf(registry, name).loadBalancing;
      return lb ? [lb.routingPreference, lb.mode] : undefined;
    };
    const annotated = (value: string) => ({ 'networking.istio.io/traffic-distribution': value });

    registry.upsert('Service', service('close', { spec: { trafficDistribution: 'PreferClose' } }));
    registry.upsert('Service', service('zone', { spec: { trafficDistribution: 'PreferSameZone' } }));
    registry.upsert('Service', service('node', { spec: { trafficDistribution: 'PreferSameNode' } }));
    registry.upsert('Service', service('any', { spec: { trafficDistribution: 'Any' } }));
    registry.upsert('Service', service('plain'));
    registry.upsert('Service', service('ann', { annotations: annotated('PreferSameNode') }));
    registry.upsert('Service', service('both', { annotations: annotated('PreferSameNode'), spec: { trafficDistribution: 'PreferClose' } }));
    registry.upsert('Service', service('local', { spec: { internalTrafficPolicy: 'Local', trafficDistribution: 'PreferClose' } }));
    registry.upsert('Service', service('any-ann', { annotations: annotated('Any') }));
    registry.upsert('Service', service('other-ns', { namespace: 'other' }));

    assert.deepEqual(lbOf('close'), zoneFailover);
    assert.deepEqual(lbOf('zone'), zoneFailover);
    assert.deepEqual(lbOf('node'), nodeFailover);
    assert.equal(lbOf('any'), undefined);
    assert.equal(lbOf('plain'), undefined);
    assert.deepEqual(lbOf('ann'), nodeFailover);
    assert.deepEqual(lbOf('both'), zoneFailover, 'the spec field wins over the annotation');
    assert.deepEqual(lbOf('local'), [[NODE], LoadBalancing_Mode.STRICT]);

    changes.length = 0;
    registry.upsert('Namespace', namespace('default', {}, annotated('PreferClose')));
    assert.deepEqual(sorted(onlyChange(changes).addresses.upserted), [HOST('plain')], 'only services without their own setting change');
    assert.deepEqual(lbOf('plain'), zoneFailover);
    assert.equal(lbOf('any-ann'), undefined, 'Any on the service overrides the namespace');
    assert.equal(serviceOf(registry, 'other-ns', 'other').loadBalancing, undefined);
  });

  test('an unknown traffic distribution is reported and treated as unset', () => {
    const { registry, logLines } = setup();
    registry.upsert('Namespace', namespace('default', {}, { 'networking.istio.io/traffic-distribution': 'PreferSameNode' }));
    registry.upsert('Service', service('svc', { annotations: { 'networking.istio.io/traffic-distribution': 'Closest' } }));
    assert.deepEqual(serviceOf(registry, 'svc').loadBalancing?.routingPreference.length, 5, 'falls back to the namespace');
    assert.deepEqual(registry.problems(), [
      {
        object: 'Service default/svc',
        field: 'metadata.annotations["networking.istio.io/traffic-distribution"]',
        message: 'unknown traffic distribution "Closest" (want one of PreferClose, PreferSameZone, PreferSameNode, Any); treated as unset',
      },
    ]);
    registry.upsert('Service', service('svc', { annotations: { 'networking.istio.io/traffic-distribution': 'Closest' } }));
    assert.equal(logLines.filter((line) => line.object === 'Service default/svc' && line.level === 40).length, 1, 'logged once');

    registry.upsert('Namespace', namespace('ns2', {}, { 'networking.istio.io/traffic-distribution': 'nearby' }));
    assert.ok(registry.problems().some((p) => p.object === 'Namespace ns2'));
    registry.remove('Service', service('svc'));
    registry.remove('Namespace', namespace('ns2'));
    assert.deepEqual(registry.problems(), []);
  });
});

// ---------------------------------------------------------------------------------------------
// Authorization policies
// ---------------------------------------------------------------------------------------------

describe('authorization policies', () => {
  test('scope follows namespace and selector; workloads list the selector policies that select them', () => {
    const { registry, changes } = setup();
    registry.upsert('Pod', pod('web', { labels: { app: 'web' } }));
    registry.upsert('Pod', pod('db', { labels: { app: 'db' } }));
    registry.upsert('Pod', pod('web2', { namespace: 'other', labels: { app: 'web' } }));
    changes.length = 0;

    registry.upsert('AuthorizationPolicy', policy('mesh', 'istio-system', { rules: [{}] }));
    registry.upsert('AuthorizationPolicy', policy('ns', 'default', { action: 'DENY', rules: [{ to: [{ operation: { ports: ['22'] } }] }] }));
    assert.equal(authorizationOf(registry, 'istio-system/mesh').scope, Scope.GLOBAL);
    assert.equal(authorizationOf(registry, 'default/ns').scope, Scope.NAMESPACE);
    assert.equal(authorizationOf(registry, 'default/ns').action, Action.DENY);
    assert.deepEqual(changes.map((c) => c.addresses.upserted), [[], []], 'scoped policies do not touch workloads');
    registry.upsert('AuthorizationPolicy', policy('empty-selector', 'default', { selector: { matchLabels: {} }, rules: [{}] }));
    assert.equal(authorizationOf(registry, 'default/empty-selector').scope, Scope.NAMESPACE, 'an empty selector selects the namespace');
    registry.remove('AuthorizationPolicy', policy('empty-selector', 'default', {}));

    changes.length = 0;
    registry.upsert('AuthorizationPolicy', policy('web-only', 'default', { selector: { matchLabels: { app: 'web' } }, rules: [{}] }));
    const change = onlyChange(changes);
    assert.deepEqual(change.authorizations.upserted, ['default/web-only']);
    assert.deepEqual(change.addresses.upserted, [UID('web')]);
    assert.equal(authorizationOf(registry, 'default/web-only').scope, Scope.WORKLOAD_SELECTOR);
    assert.deepEqual(workloadOf(registry, 'web').authorizationPolicies, ['default/web-only']);
    assert.deepEqual(workloadOf(registry, 'db').authorizationPolicies, []);
    assert.deepEqual(workloadOf(registry, 'web2', 'other').authorizationPolicies, []);

    // A root-namespace selector policy selects across namespaces.
    registry.upsert('AuthorizationPolicy', policy('all-web', 'istio-system', { selector: { matchLabels: { app: 'web' } } }));
    assert.deepEqual(workloadOf(registry, 'web').authorizationPolicies, ['default/web-only', 'istio-system/all-web']);
    assert.deepEqual(workloadOf(registry, 'web2', 'other').authorizationPolicies, ['istio-system/all-web']);

    // A rule change does not change who is selected: no workload is rebuilt.
    changes.length = 0;
    const builds = registry.stats().workloadBuilds;
    registry.upsert('AuthorizationPolicy', policy('web-only', 'default', { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { namespaces: ['a'] } }] }] }));
    assert.deepEqual(onlyChange(changes), { addresses: { upserted: [], removed: [] }, authorizations: { upserted: ['default/web-only'], removed: [] } });
    assert.equal(registry.stats().workloadBuilds, builds);

    changes.length = 0;
    registry.upsert('AuthorizationPolicy', policy('web-only', 'default', { selector: { matchLabels: { app: 'db' } }, rules: [{ from: [{ source: { namespaces: ['a'] } }] }] }));
    assert.deepEqual(sorted(onlyChange(changes).addresses.upserted), [UID('db'), UID('web')]);
    assert.deepEqual(workloadOf(registry, 'db').authorizationPolicies, ['default/web-only']);

    changes.length = 0;
    registry.remove('AuthorizationPolicy', policy('web-only', 'default', {}));
    assert.deepEqual(onlyChange(changes), { addresses: { upserted: [UID('db')], removed: [] }, authorizations: { upserted: [], removed: ['default/web-only'] } });
    assert.deepEqual(workloadOf(registry, 'db').authorizationPolicies, []);
  });

  test('rules translate to clauses: to, from, and one clause per condition', () => {
    const { registry } = setup();
    registry.upsert(
      'AuthorizationPolicy',
      policy('full', 'default', {
        action: 'ALLOW',
        rules: [
          {
            from: [
              {
                source: {
                  principals: ['cluster.local/ns/default/sa/curl', 'cluster.local/ns/prod/*', '*/sa/admin', '*'],
                  notPrincipals: ['cluster.local/ns/default/sa/evil'],
                  namespaces: ['default'],
                  notNamespaces: ['kube-system'],
                },
              },
              { source: { ipBlocks: ['10.1.0.0/16', '192.168.1.5'], notIpBlocks: ['10.1.2.0/24'], serviceAccounts: ['prod/api', 'local'], notServiceAccounts: ['x/y'] } },
            ],
            to: [{ operation: { ports: ['8080', '9090'], notPorts: ['22'] } }],
            when: [
              { key: 'source.ip', values: ['10.2.0.0/16'], notValues: ['10.2.3.4'] },
              { key: 'destination.port', values: ['443'] },
              { key: 'source.namespace', notValues: ['test*'] },
              { key: 'source.principal', values: ['cluster.local/ns/a/sa/b'] },
              { key: 'destination.ip', values: ['10.96.0.10'] },
            ],
          },
          {},
        ],
      }),
    );
    assertMessage(AuthorizationSchema, authorizationOf(registry, 'default/full'), {
      name: 'full',
      namespace: 'default',
      scope: Scope.NAMESPACE,
      action: Action.ALLOW,
      rules: [
        {
          clauses: [
            { matches: [{ destinationPorts: [8080, 9090], notDestinationPorts: [22] }] },
            {
              matches: [
                {
                  principals: [exact('cluster.local/ns/default/sa/curl'), prefix('cluster.local/ns/prod/'), suffix('/sa/admin'), presence()],
                  notPrincipals: [exact('cluster.local/ns/default/sa/evil')],
                  namespaces: [exact('default')],
                  notNamespaces: [exact('kube-system')],
                },
                {
                  sourceIps: [{ address: ip('10.1.0.0'), length: 16 }, { address: ip('192.168.1.5'), length: 32 }],
                  notSourceIps: [{ address: ip('10.1.2.0'), length: 24 }],
                  serviceAccounts: [{ namespace: 'prod', serviceAccount: 'api' }, { namespace: 'default', serviceAccount: 'local' }],
                  notServiceAccounts: [{ namespace: 'x', serviceAccount: 'y' }],
                },
              ],
            },
            { matches: [{ sourceIps: [{ address: ip('10.2.0.0'), length: 16 }], notSourceIps: [{ address: ip('10.2.3.4'), length: 32 }] }] },
            { matches: [{ destinationPorts: [443] }] },
            { matches: [{ notNamespaces: [prefix('test')] }] },
            { matches: [{ principals: [exact('cluster.local/ns/a/sa/b')] }] },
            { matches: [{ destinationIps: [{ address: ip('10.96.0.10'), length: 32 }] }] },
          ],
        },
        { clauses: [] },
      ],
    });
  });

  test('an empty ALLOW policy allows nothing; a DENY policy without rules is refused, as Istio validation does', () => {
    const { registry } = setup();
    registry.upsert('AuthorizationPolicy', policy('deny-all', 'default', {}));
    const denyAll = authorizationOf(registry, 'default/deny-all');
    assert.equal(denyAll.action, Action.ALLOW);
    assert.deepEqual(denyAll.rules, []);
    registry.upsert('AuthorizationPolicy', { ...policy('no-spec', 'default', {}), spec: undefined });
    assert.deepEqual(authorizationOf(registry, 'default/no-spec').rules, []);

    registry.upsert('AuthorizationPolicy', policy('noop', 'default', { action: 'DENY' }));
    assert.equal(registry.authorization('default/noop'), undefined);
    assert.deepEqual(registry.problems().map((p) => [p.object, p.field]), [['AuthorizationPolicy default/noop', 'spec.rules']]);
  });

  test('HTTP attributes: an ALLOW rule using them is dropped, a DENY rule is enforced without them', () => {
    const { registry, logLines } = setup();
    registry.upsert(
      'AuthorizationPolicy',
      policy('allow-l7', 'default', {
        rules: [
          { to: [{ operation: { methods: ['GET'], ports: ['8080'] } }] },
          { from: [{ source: { requestPrincipals: ['*'] } }] },
          { when: [{ key: 'request.headers[x-user]', values: ['me'] }] },
          { from: [{ source: { remoteIpBlocks: ['1.2.3.4'] } }] },
          { from: [{ source: { namespaces: ['ok'] } }] },
        ],
      }),
    );
    const allow = authorizationOf(registry, 'default/allow-l7');
    assertMessage(AuthorizationSchema, allow, {
      name: 'allow-l7',
      namespace: 'default',
      scope: Scope.NAMESPACE,
      rules: [{ clauses: [{ matches: [{ namespaces: [exact('ok')] }] }] }],
    });
    const warnings = logLines.filter((line) => line.policy === 'default/allow-l7');
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]!.msg), /methods, remoteIpBlocks, request\.headers\[x-user\], requestPrincipals/);

    registry.upsert('AuthorizationPolicy', policy('only-l7', 'default', { rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }));
    assert.deepEqual(authorizationOf(registry, 'default/only-l7').rules, [], 'every rule dropped: allow nothing');

    registry.upsert(
      'AuthorizationPolicy',
      policy('deny-l7', 'default', {
        action: 'DENY',
        rules: [
          {
            to: [{ operation: { methods: ['POST'], ports: ['8080'] } }, { operation: { paths: ['/x'] } }],
            when: [{ key: 'request.auth.claims[iss]', values: ['x'] }],
          },
        ],
      }),
    );
    assertMessage(AuthorizationSchema, authorizationOf(registry, 'default/deny-l7'), {
      name: 'deny-l7',
      namespace: 'default',
      scope: Scope.NAMESPACE,
      action: Action.DENY,
      // The second `to` entry has only HTTP fields: at L4 it matches any port, so the `to` clause matches
      // everything; the HTTP condition is left out too. What remains denies every connection.
      rules: [{ clauses: [] }],
    });
    assert.deepEqual(registry.problems(), [], 'HTTP attributes are warnings, not problems');
  });

  test('dry run comes from the annotation', () => {
    const { registry } = setup();
    registry.upsert('AuthorizationPolicy', policy('try', 'default', { rules: [{}] }, { 'istio.io/dry-run': 'true' }));
    registry.upsert('AuthorizationPolicy', policy('real', 'default', { rules: [{}] }, { 'istio.io/dry-run': 'false' }));
    assert.equal(authorizationOf(registry, 'default/try').dryRun, true);
    assert.equal(authorizationOf(registry, 'default/real').dryRun, false);
  });

  test('unsupported actions and waypoint policies are skipped with a problem', () => {
    const { registry } = setup();
    registry.upsert('AuthorizationPolicy', policy('ext', 'default', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{}] }));
    registry.upsert('AuthorizationPolicy', policy('audit', 'default', { action: 'AUDIT', rules: [{}] }));
    registry.upsert('AuthorizationPolicy', policy('wp', 'default', { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }], rules: [{}] }));
    registry.upsert('AuthorizationPolicy', policy('wp1', 'default', { targetRef: { kind: 'Service', group: '', name: 'web' }, rules: [{}] }));
    assert.equal(registry.authorizations().size, 0);
    assert.deepEqual(
      registry.problems().map((p) => [p.object, p.field]),
      [
        ['AuthorizationPolicy default/ext', 'spec.action'],
        ['AuthorizationPolicy default/audit', 'spec.action'],
        ['AuthorizationPolicy default/wp', 'spec.targetRefs'],
        ['AuthorizationPolicy default/wp1', 'spec.targetRef'],
      ],
    );
    assert.match(registry.problems()[0]!.message, /ztunnel does not support the CUSTOM action/);
  });

  test('a policy that becomes unsupported is withdrawn', () => {
    const { registry, changes } = setup();
    registry.upsert('AuthorizationPolicy', policy('p', 'default', { rules: [{}] }));
    changes.length = 0;
    registry.upsert('AuthorizationPolicy', policy('p', 'default', { action: 'AUDIT', rules: [{}] }));
    assert.deepEqual(onlyChange(changes).authorizations.removed, ['default/p']);
  });

  test('bad fields skip the policy with a problem naming the field, logged once; the last valid version stays', () => {
    const { registry, changes, logLines } = setup();
    const bad = policy('p', 'default', {
      rules: [{ from: [{ source: { namespaces: ['a'] } }, { source: { ipBlocks: ['10.0.0.0/33'] } }] }],
    });
    registry.upsert('AuthorizationPolicy', bad);
    registry.upsert('AuthorizationPolicy', bad);
    assert.equal(registry.authorization('default/p'), undefined);
    assert.equal(changes.length, 0);
    assert.deepEqual(registry.problems(), [
      {
        object: 'AuthorizationPolicy default/p',
        field: 'spec.rules[0].from[1].source.ipBlocks[0]',
        message: '"10.0.0.0/33" is not an IP address or CIDR block',
      },
    ]);
    assert.equal(logLines.filter((line) => line.object === 'AuthorizationPolicy default/p').length, 1);

    const good = policy('p', 'default', { rules: [{ from: [{ source: { namespaces: ['a'] } }] }] });
    registry.upsert('AuthorizationPolicy', good);
    assert.deepEqual(registry.problems(), []);
    const kept = authorizationOf(registry, 'default/p');

    changes.length = 0;
    registry.upsert('AuthorizationPolicy', policy('p', 'default', { rules: [{ to: [{ operation: { ports: ['http', '70000'] } }] }] }));
    assert.equal(registry.authorization('default/p'), kept, 'an invalid update leaves the last valid version in force');
    assert.equal(changes.length, 0);
    assert.deepEqual(
      registry.problems().map((p) => p.field),
      ['spec.rules[0].to[0].operation.ports[0]', 'spec.rules[0].to[0].operation.ports[1]'],
    );

    registry.remove('AuthorizationPolicy', good);
    assert.deepEqual(registry.problems(), []);
    assert.equal(registry.authorization('default/p'), undefined);
  });

  test('malformed policies are reported, never thrown', () => {
    const { registry } = setup();
    const cases: Array<[Json, string]> = [
      [policy('typo', 'default', { rules: [{ from: [{ source: { principles: ['x'] } }] }] }), 'spec.rules[0].from[0].source.principles'],
      [policy('types', 'default', { rules: [{ from: [{ source: { namespaces: 'default' } }] }] }), 'spec.rules[0].from[0].source.namespaces'],
      [policy('action', 'default', { action: 'PERMIT' }), 'spec.action'],
      [policy('sa', 'default', { rules: [{ from: [{ source: { serviceAccounts: ['a/b/c'] } }] }] }), 'spec.rules[0].from[0].source.serviceAccounts[0]'],
      [policy('cond', 'default', { rules: [{ when: [{ key: 'destination.port', values: ['eighty'] }] }] }), 'spec.rules[0].when[0].values[0]'],
    ];
    for (const [object] of cases) assert.doesNotThrow(() => registry.upsert('AuthorizationPolicy', object));
    assert.equal(registry.authorizations().size, 0);
    for (const [object, field] of cases) {
      const name = (object.metadata as { name: string }).name;
      assert.ok(
        registry.problems().some((p) => p.object === `AuthorizationPolicy default/${name}` && p.field === field),
        `${name}: ${JSON.stringify(registry.problems())}`,
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Robustness and notifications
// ---------------------------------------------------------------------------------------------

describe('robustness', () => {
  test('garbage never throws; bad objects are reported and skipped', () => {
    const { registry } = setup();
    const kinds = ['Namespace', 'Node', 'Pod', 'Service', 'AuthorizationPolicy'] as const;
    for (const kind of kinds) {
      for (const junk of [null, undefined, 'pod', 42, {}, { metadata: {} }, { metadata: { name: 7 } }]) {
        assert.doesNotThrow(() => registry.upsert(kind, junk));
        assert.doesNotThrow(() => registry.remove(kind, junk));
      }
    }
    assert.doesNotThrow(() => registry.upsert('Secret' as never, pod('a')));

    registry.upsert('Pod', { ...pod('bad-ip'), status: { phase: 'Running', podIP: '10.0.0.300' } });
    registry.upsert('Service', service('bad-port', { ports: [{ port: 70000 }] }));
    assert.equal(registry.addresses().size, 0);
    const problems = registry.problems();
    assert.ok(problems.some((p) => p.object === 'Pod default/bad-ip' && p.field === 'status.podIP'), JSON.stringify(problems));
    assert.ok(problems.some((p) => p.object === 'Service default/bad-port' && p.field === 'spec.ports[0].port'), JSON.stringify(problems));
  });

  test('an invalid update keeps the last valid service, still reported after its namespace changes', () => {
    const { registry } = setup();
    registry.upsert('Service', service('svc'));
    registry.upsert('Service', service('svc', { ports: [{ port: 0 }] }));
    registry.upsert('Namespace', namespace('default', {}, { 'networking.istio.io/traffic-distribution': 'PreferClose' }));
    assert.equal(serviceOf(registry, 'svc').ports[0]?.servicePort, 80);
    assert.equal(serviceOf(registry, 'svc').loadBalancing?.mode, LoadBalancing_Mode.FAILOVER);
    assert.deepEqual(registry.problems().map((p) => [p.object, p.field]), [['Service default/svc', 'spec.ports[0].port']]);
    registry.upsert('Service', service('svc'));
    assert.deepEqual(registry.problems(), []);
  });

  test('client-node model instances are read like plain JSON', () => {
    const { registry } = setup();
    const model = Object.assign(new V1Pod(), pod('a', { labels: { app: 'a' } }));
    model.metadata = Object.assign(new V1ObjectMeta(), model.metadata, { creationTimestamp: new Date() });
    registry.upsert('Pod', model);
    assert.equal(workloadOf(registry, 'a').canonicalName, 'a');
  });

  test('listeners can unsubscribe, and a failing listener does not stop the others', () => {
    const { registry, changes } = setup();
    registry.onChange(() => {
      throw new Error('listener bug');
    });
    const extra: RegistryChange[] = [];
    const unsubscribe = registry.onChange((change) => extra.push(change));
    registry.upsert('Pod', pod('a'));
    unsubscribe();
    registry.upsert('Pod', pod('b', { ip: '10.0.0.2' }));
    assert.equal(changes.length, 2);
    assert.equal(extra.length, 1);
  });
});

describe('scale', () => {
  test('5,000 pods and a service selecting them all: one pod update is one change and one rebuild', () => {
    const { registry, changes } = setup();
    registry.upsert('Namespace', namespace('big', { 'istio.io/dataplane-mode': 'ambient' }));
    registry.upsert('Namespace', namespace('small'));
    registry.upsert('Node', node('node1', { 'topology.kubernetes.io/zone': 'z1' }));
    const podName = (i: number) => `web-${i}`;
    const podIp = (i: number) => `10.${Math.floor(i / 250) + 1}.${i % 250}.1`;
    for (let i = 0; i < 5000; i++) {
      registry.upsert('Pod', pod(podName(i), { namespace: 'big', ip: podIp(i), labels: { app: 'web' }, ports: [{ name: 'http', containerPort: 8080 }] }));
    }
    assert.equal(changes.length, 5000);
    changes.length = 0;

    registry.upsert('Service', service('web', { namespace: 'big', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] }));
    assert.equal(onlyChange(changes).addresses.upserted.length, 5001);
    assert.equal(workloadOf(registry, podName(4999), 'big').services[HOST('web', 'big')]?.ports[0]?.targetPort, 8080);

    changes.length = 0;
    const before = registry.stats();
    registry.upsert('Pod', pod(podName(42), { namespace: 'big', ip: podIp(42), ready: false, labels: { app: 'web' }, ports: [{ name: 'http', containerPort: 8080 }] }));
    assert.deepEqual(onlyChange(changes).addresses, { upserted: [UID(podName(42), 'big')], removed: [] });
    assert.deepEqual(registry.stats(), { ...before, workloadBuilds: before.workloadBuilds + 1 });

    changes.length = 0;
    registry.upsert('Namespace', namespace('small', { 'istio.io/dataplane-mode': 'ambient' }));
    assert.equal(changes.length, 0);
    assert.deepEqual(registry.stats(), { ...before, workloadBuilds: before.workloadBuilds + 1 }, 'another namespace rebuilds nothing here');

    registry.remove('Pod', pod(podName(7), { namespace: 'big' }));
    assert.deepEqual(onlyChange(changes).addresses, { upserted: [], removed: [UID(podName(7), 'big')] });
    assert.equal(registry.addresses().size, 5000);
  });
});

describe('registry: waypoint enrolment (istio.io/use-waypoint)', () => {
  const waypointHost = (svc: Service) => (svc.waypoint?.destination.case === 'hostname' ? `${svc.waypoint.destination.value.namespace}/${svc.waypoint.destination.value.hostname}:${svc.waypoint.hboneMtlsPort}` : undefined);

  test('a labelled namespace sends its services to the waypoint; a Service label wins, none opts out, use-waypoint-namespace moves it', () => {
    const { registry } = setup();
    const waypointService = (name: string, ns = 'default', ip = '10.96.1.1') => service(name, { namespace: ns, clusterIP: ip, labels: { 'gateway.istio.io/managed': 'istio.io-mesh-controller' } });
    registry.upsert('Namespace', namespace('default', { 'istio.io/use-waypoint': 'waypoint' }));
    registry.upsert('Service', service('web'));
    assert.equal(serviceOf(registry, 'web').waypoint, undefined, 'no such waypoint yet: nothing changes');
    registry.upsert('Service', waypointService('api-waypoint', 'default', '10.96.1.2'));
    registry.upsert('Service', waypointService('edge', 'infra', '10.96.1.3'));
    registry.upsert('Service', service('api', { clusterIP: '10.96.0.11', labels: { 'istio.io/use-waypoint': 'api-waypoint' } }));
    registry.upsert('Service', service('db', { clusterIP: '10.96.0.12', labels: { 'istio.io/use-waypoint': 'none' } }));
    registry.upsert('Service', service('shared', { clusterIP: '10.96.0.13', labels: { 'istio.io/use-waypoint': 'edge', 'istio.io/use-waypoint-namespace': 'infra' } }));
    registry.upsert('Service', waypointService('waypoint', 'default', '10.96.0.14'));
    assert.equal(waypointHost(serviceOf(registry, 'web')), 'default/waypoint.default.svc.cluster.local:15008', 'set once the waypoint exists');
    assert.equal(waypointHost(serviceOf(registry, 'api')), 'default/api-waypoint.default.svc.cluster.local:15008');
    assert.equal(waypointHost(serviceOf(registry, 'db')), undefined);
    assert.equal(waypointHost(serviceOf(registry, 'shared')), 'infra/edge.infra.svc.cluster.local:15008');
    assert.equal(waypointHost(serviceOf(registry, 'waypoint')), undefined, 'a waypoint never uses a waypoint');
  });

  test('deleting the waypoint or removing the namespace label takes the waypoint off its services', () => {
    const { registry } = setup();
    registry.upsert('Namespace', namespace('default', { 'istio.io/use-waypoint': 'waypoint' }));
    registry.upsert('Service', service('waypoint', { clusterIP: '10.96.1.1', labels: { 'gateway.istio.io/managed': 'istio.io-mesh-controller' } }));
    registry.upsert('Service', service('web'));
    assert.ok(serviceOf(registry, 'web').waypoint);
    registry.remove('Service', service('waypoint', { clusterIP: '10.96.1.1' }));
    assert.equal(serviceOf(registry, 'web').waypoint, undefined, 'the waypoint deleted: traffic goes direct again');
    registry.upsert('Service', service('waypoint', { clusterIP: '10.96.1.1', labels: { 'gateway.istio.io/managed': 'istio.io-mesh-controller' } }));
    assert.ok(serviceOf(registry, 'web').waypoint);
    registry.upsert('Namespace', namespace('default'));
    assert.equal(serviceOf(registry, 'web').waypoint, undefined);
  });

  const workloadWaypoint = (w: Workload) => (w.waypoint?.destination.case === 'hostname' ? `${w.waypoint.destination.value.namespace}/${w.waypoint.destination.value.hostname}` : undefined);
  const MANAGED = { 'gateway.istio.io/managed': 'istio.io-mesh-controller' };

  test("seed 004's istio-mesh waypoint serves the pods of its service account; their selector policies move from ztunnel to the waypoint", () => {
    const { registry } = setup();
    registry.upsert('AuthorizationPolicy', policy('productpage-viewer', 'default', { selector: { matchLabels: { app: 'productpage' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }], to: [{ operation: { methods: ['GET'] } }] }] }));
    registry.upsert('Pod', pod('productpage-v1-abc', { ip: '10.0.0.5', serviceAccount: 'bookinfo-productpage', labels: { app: 'productpage' } }));
    registry.upsert('Pod', pod('reviews-v1-abc', { ip: '10.0.0.6', serviceAccount: 'bookinfo-reviews', labels: { app: 'productpage' } }));
    assert.deepEqual(workloadOf(registry, 'productpage-v1-abc').authorizationPolicies, ['default/productpage-viewer'], 'positive control: ztunnel enforces it while no waypoint serves the pod');
    assert.equal(registry.waypointPolicies(UID('productpage-v1-abc')), undefined);

    registry.upsert('Service', service('bookinfo-productpage-waypoint-proxy', { clusterIP: '10.96.1.9', labels: { ...MANAGED, 'gateway.networking.k8s.io/gateway-name': 'productpage', 'istio.io/waypoint-for': 'workload' }, annotations: { 'istio.io/service-account': 'bookinfo-productpage' } }));
    // The waypoint's own pod runs as the same service account and must not point at itself.
    registry.upsert('Pod', pod('bookinfo-productpage-waypoint-proxy-xyz', { ip: '10.0.0.7', serviceAccount: 'bookinfo-productpage', labels: { ...MANAGED, 'gateway.networking.k8s.io/gateway-name': 'productpage' } }));
    const served = workloadOf(registry, 'productpage-v1-abc');
    assert.equal(workloadWaypoint(served), 'default/bookinfo-productpage-waypoint-proxy.default.svc.cluster.local');
    assert.equal(served.waypoint?.hboneMtlsPort, 15008);
    assert.deepEqual(served.authorizationPolicies, [], 'ztunnel admits only the waypoint; the waypoint enforces the policy');
    assert.deepEqual(registry.waypointPolicies(UID('productpage-v1-abc')), ['default/productpage-viewer']);
    assert.equal(workloadWaypoint(workloadOf(registry, 'reviews-v1-abc')), undefined, 'another service account is not served');
    assert.deepEqual(workloadOf(registry, 'reviews-v1-abc').authorizationPolicies, ['default/productpage-viewer']);
    assert.equal(workloadWaypoint(workloadOf(registry, 'bookinfo-productpage-waypoint-proxy-xyz')), undefined);

    registry.remove('Service', service('bookinfo-productpage-waypoint-proxy', { clusterIP: '10.96.1.9' }));
    assert.equal(workloadWaypoint(workloadOf(registry, 'productpage-v1-abc')), undefined, 'the waypoint deleted: direct again');
    assert.deepEqual(workloadOf(registry, 'productpage-v1-abc').authorizationPolicies, ['default/productpage-viewer'], 'and ztunnel enforces the policy again');
    assert.equal(registry.waypointPolicies(UID('productpage-v1-abc')), undefined);
  });

  test('use-waypoint on a pod or namespace gives workloads a waypoint only when it is for workloads (or all); the pod label wins, none opts out', () => {
    const { registry } = setup();
    registry.upsert('Service', service('svc-waypoint', { clusterIP: '10.96.1.1', labels: { ...MANAGED, 'istio.io/waypoint-for': 'service' } }));
    registry.upsert('Service', service('all-waypoint', { clusterIP: '10.96.1.2', labels: { ...MANAGED, 'istio.io/waypoint-for': 'all' } }));
    registry.upsert('Service', service('wl-waypoint', { clusterIP: '10.96.1.3', labels: { ...MANAGED, 'istio.io/waypoint-for': 'workload' } }));
    registry.upsert('Namespace', namespace('default', { 'istio.io/use-waypoint': 'svc-waypoint' }));
    registry.upsert('Pod', pod('a', { ip: '10.0.0.1' }));
    registry.upsert('Pod', pod('b', { ip: '10.0.0.2', labels: { 'istio.io/use-waypoint': 'wl-waypoint' } }));
    registry.upsert('Pod', pod('c', { ip: '10.0.0.3', labels: { 'istio.io/use-waypoint': 'none' } }));
    registry.upsert('Service', service('web', { clusterIP: '10.96.0.20', labels: { 'istio.io/use-waypoint': 'wl-waypoint' } }));
    assert.equal(workloadWaypoint(workloadOf(registry, 'a')), undefined, 'a waypoint for services does not take traffic addressed to pods');
    assert.equal(workloadWaypoint(workloadOf(registry, 'b')), 'default/wl-waypoint.default.svc.cluster.local');
    assert.equal(workloadWaypoint(workloadOf(registry, 'c')), undefined);
    assert.equal(serviceOf(registry, 'web').waypoint, undefined, 'a waypoint for workloads does not take service traffic');
    registry.upsert('Namespace', namespace('default', { 'istio.io/use-waypoint': 'all-waypoint' }));
    assert.equal(workloadWaypoint(workloadOf(registry, 'a')), 'default/all-waypoint.default.svc.cluster.local', 'the namespace label change reaches its pods');
    assert.equal(workloadWaypoint(workloadOf(registry, 'c')), undefined);
  });
});
