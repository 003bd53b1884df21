import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ApiException, KubeConfig, type CoreV1Api, type KubernetesObject, type V1Deployment, type V1EnvVar, type V1Pod, type V1Service } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { EastWestGatewayController } from '../src/controlplane/gateways/controller.js';
import { DESIRED_HASH_ANNOTATION, EAST_WEST_CONTROLLER_NAME } from '../src/controlplane/gateways/constants.js';
import { isAccepted, readGateway, type GatewayObject } from '../src/controlplane/gateways/gateway.js';
import { kubeGatewayApi, type GatewayApi, type GatewayClassObject, type OwnedKind, type OwnedObject } from '../src/controlplane/gateways/kube-api.js';
import { ownImage } from '../src/controlplane/gateways/own-image.js';
import { isSubset } from '../src/controlplane/gateways/reconciler.js';
import { renderDeployment, renderGatewayResources, renderService, renderServiceAccount, type GatewayWorkloadSettings } from '../src/controlplane/gateways/render.js';
import { informerSources, type GatewaySources, type ObjectStore, type SourceEvents, type WatchedKind } from '../src/controlplane/gateways/sources.js';
import { computeGatewayStatus, sameStatus, type Condition, type GatewayStatus } from '../src/controlplane/gateways/status.js';
import { WorkQueue } from '../src/controlplane/gateways/work-queue.js';
import { ztunnelDaemonSet } from '../src/install/objects/ztunnel.js';
import { loadValues } from '../src/install/values.js';

type Json = Record<string, unknown>;

const NOW = new Date('2025-03-01T10:00:00.000Z');
const LATER = new Date('2025-03-01T11:00:00.000Z');

/** The listener of the seed's east-west Gateway. */
const MESH_LISTENER = {
  name: 'mesh',
  port: 15008,
  protocol: 'HBONE',
  tls: { mode: 'Terminate', options: { 'gateway.istio.io/tls-terminate-mode': 'ISTIO_MUTUAL' } },
};

function gateway(overrides: { name?: string; namespace?: string; uid?: string; generation?: number; labels?: Record<string, string>; spec?: unknown; status?: unknown } = {}): GatewayObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: {
      name: overrides.name ?? 'istio-eastwestgateway',
      namespace: overrides.namespace ?? 'istio-system',
      uid: overrides.uid ?? 'gw-uid-1',
      generation: overrides.generation ?? 1,
      labels: overrides.labels ?? { 'topology.istio.io/network': 'network1' },
    },
    spec: 'spec' in overrides ? overrides.spec : { gatewayClassName: 'istio-east-west', listeners: [MESH_LISTENER] },
    ...(overrides.status === undefined ? {} : { status: overrides.status }),
  };
}

const withListeners = (...listeners: unknown[]) => gateway({ spec: { gatewayClassName: 'istio-east-west', listeners } });

const SETTINGS: GatewayWorkloadSettings = {
  clusterId: 'cluster1',
  trustDomain: 'cluster.local',
  systemNamespace: 'istio-system',
  image: 'registry.example/ambit/ambit:dev',
  imagePullPolicy: 'IfNotPresent',
};

const envOf = (vars: V1EnvVar[] | undefined) => Object.fromEntries((vars ?? []).map((v) => [v.name, v.value ?? `fieldRef:${v.valueFrom?.fieldRef?.fieldPath}`]));
const condition = (conditions: Condition[] | undefined, type: string) => conditions?.find((c) => c.type === type);
const brief = (c: Condition | undefined) => c && `${c.status}/${c.reason}`;

function loadBalanced(ip: string | undefined, hostname?: string): V1Service {
  return { status: { loadBalancer: { ingress: ip ? [{ ip }] : hostname ? [{ hostname }] : [] } } };
}
const readyDeployment = (ready: number): V1Deployment => ({ status: { replicas: 1, readyReplicas: ready } });

describe('listener validation', () => {
  it('accepts the seed listener: HBONE, 15008, Terminate with ISTIO_MUTUAL', () => {
    const reading = readGateway(gateway(), 'cluster-net');
    assert.deepEqual(reading.problems, []);
    assert.deepEqual(reading.listeners, [{ name: 'mesh', problem: undefined }]);
    assert.equal(isAccepted(reading), true);
    assert.equal(reading.network, 'network1');
    assert.equal(reading.networkLabel, 'network1');
  });

  it('names each wrong field and what is expected', () => {
    const passthrough = readGateway(withListeners({ ...MESH_LISTENER, tls: { mode: 'Passthrough' } }), 'n');
    assert.equal(
      passthrough.listeners[0]!.problem,
      'tls.mode is "Passthrough", expected Terminate; tls.options["gateway.istio.io/tls-terminate-mode"] is not set, expected ISTIO_MUTUAL',
    );
    assert.equal(isAccepted(passthrough), false);
    const tcp = readGateway(withListeners({ ...MESH_LISTENER, protocol: 'TCP', port: 443 }), 'n');
    assert.equal(tcp.listeners[0]!.problem, 'protocol is "TCP", expected HBONE; port is 443, expected 15008');
    const simple = readGateway(withListeners({ ...MESH_LISTENER, tls: { mode: 'Terminate', options: { 'gateway.istio.io/tls-terminate-mode': 'SIMPLE' } } }), 'n');
    assert.equal(simple.listeners[0]!.problem, 'tls.options["gateway.istio.io/tls-terminate-mode"] is "SIMPLE", expected ISTIO_MUTUAL');
    const noTls = readGateway(withListeners({ name: 'mesh', port: '15008', protocol: 'HBONE' }), 'n');
    assert.match(noTls.listeners[0]!.problem!, /^port is "15008", expected 15008; tls\.mode is not set, expected Terminate; tls\.options/);
    const tlsString = readGateway(withListeners({ ...MESH_LISTENER, tls: 'Terminate' }), 'n');
    assert.equal(tlsString.listeners[0]!.problem, 'tls is "Terminate", expected an object with mode Terminate');
  });

  it('accepts a Gateway with at least one valid listener', () => {
    const reading = readGateway(withListeners(MESH_LISTENER, { ...MESH_LISTENER, name: 'tls', protocol: 'TLS' }), 'n');
    assert.equal(isAccepted(reading), true);
    assert.deepEqual(reading.listeners.map((l) => [l.name, !!l.problem]), [['mesh', false], ['tls', true]]);
  });

  it('reports malformed Gateways by field instead of failing', () => {
    const problemsOf = (g: GatewayObject) => readGateway(g, 'n').problems;
    assert.deepEqual(problemsOf(gateway({ spec: 'garbage' })), ['spec: expected an object, got "garbage"']);
    assert.deepEqual(problemsOf(gateway({ spec: undefined })), ['spec: expected an object, got not set']);
    assert.deepEqual(problemsOf(withListeners()), ['spec.listeners: expected a list of at least one listener, got []']);
    assert.deepEqual(problemsOf(gateway({ spec: { gatewayClassName: 'istio-east-west', listeners: { mesh: 1 } } })), ['spec.listeners: expected a list of at least one listener, got {"mesh":1}']);
    assert.deepEqual(problemsOf(withListeners(42, { port: 15008 }, MESH_LISTENER, MESH_LISTENER)), [
      'spec.listeners[0]: expected an object, got 42',
      'spec.listeners[1].name: expected a non-empty string, got not set',
      'spec.listeners[3].name: "mesh" is the name of an earlier listener',
    ]);
    assert.deepEqual(problemsOf(gateway({ spec: { gatewayClassName: 'istio-east-west', listeners: [MESH_LISTENER], infrastructure: { labels: { a: 1 } } } })), [
      'spec.infrastructure.labels: expected a map of strings, got {"a":1}',
    ]);
    assert.match(problemsOf(gateway({ name: 'East-West' }))[0]!, /^metadata\.name: "East-West" cannot name the gateway Service/);
    assert.match(problemsOf(gateway({ name: `a${'b'.repeat(63)}` }))[0]!, /cannot name the gateway Service \(at most 63/);
  });

  it('takes the network from the Gateway label, else the cluster', () => {
    const reading = readGateway(gateway({ labels: {} }), 'cluster-net');
    assert.equal(reading.network, 'cluster-net');
    assert.equal(reading.networkLabel, undefined);
  });
});

describe('rendered gateway objects', () => {
  const reading = readGateway(gateway(), 'cluster-net');
  const owner = [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'istio-eastwestgateway', uid: 'gw-uid-1', controller: true }];

  it('runs `ambit gateway` with the control plane image, identity settings and credentials like ztunnel', () => {
    const deployment = renderDeployment(reading, SETTINGS);
    assert.equal(deployment.metadata?.name, 'istio-eastwestgateway');
    assert.equal(deployment.metadata?.namespace, 'istio-system');
    assert.deepEqual(deployment.metadata?.ownerReferences, owner);
    assert.equal(deployment.spec?.replicas, undefined, 'scaling is left to kubectl scale or an HPA');
    assert.deepEqual(deployment.spec?.selector.matchLabels, { 'gateway.networking.k8s.io/gateway-name': 'istio-eastwestgateway' });
    const pod = deployment.spec!.template;
    assert.equal(pod.metadata?.labels?.['gateway.networking.k8s.io/gateway-name'], 'istio-eastwestgateway');
    assert.equal(pod.metadata?.labels?.['istio.io/dataplane-mode'], 'none');
    assert.equal(pod.spec?.serviceAccountName, 'istio-eastwestgateway');
    assert.equal(pod.spec?.automountServiceAccountToken, false);
    const container = pod.spec!.containers[0]!;
    assert.equal(container.name, 'gateway');
    assert.equal(container.image, 'registry.example/ambit/ambit:dev');
    assert.equal(container.imagePullPolicy, 'IfNotPresent');
    assert.deepEqual(container.args, ['gateway']);
    assert.deepEqual(envOf(container.env), {
      GATEWAY_NAME: 'istio-eastwestgateway',
      NODE_NAME: 'fieldRef:spec.nodeName',
      POD_NAME: 'fieldRef:metadata.name',
      POD_NAMESPACE: 'fieldRef:metadata.namespace',
      INSTANCE_IP: 'fieldRef:status.podIP',
      CLUSTER_ID: 'cluster1',
      NETWORK: 'network1',
      TRUST_DOMAIN: 'cluster.local',
      SYSTEM_NAMESPACE: 'istio-system',
      XDS_ADDRESS: 'ambit-controlplane.istio-system.svc:15012',
      CA_ADDRESS: 'ambit-controlplane.istio-system.svc:15012',
    });
    assert.deepEqual(container.readinessProbe?.httpGet, { path: '/healthz/ready', port: 15021 });
    assert.deepEqual(container.ports?.map((p) => [p.name, p.containerPort]), [['tls-hbone', 15008], ['http-metrics', 15020], ['status-port', 15021]]);
    const ztunnel = ztunnelDaemonSet(loadValues().values).spec!.template.spec!;
    assert.deepEqual(pod.spec?.volumes, ztunnel.volumes, 'the same token and root-cert volumes as ztunnel');
    assert.deepEqual(container.volumeMounts, ztunnel.containers[0]!.volumeMounts);
    const withLevel = renderDeployment(readGateway(gateway({ labels: {} }), 'cluster-net'), { ...SETTINGS, logLevel: 'debug' });
    const env = envOf(withLevel.spec!.template.spec!.containers[0]!.env);
    assert.equal(env.NETWORK, 'cluster-net', 'the cluster network when the Gateway has no label');
    assert.equal(env.AMBIT_LOG_LEVEL, 'debug');
  });

  it('exposes 15008 through a LoadBalancer Service labelled with the Gateway network', () => {
    const service = renderService(reading);
    assert.equal(service.spec?.type, 'LoadBalancer');
    assert.deepEqual(service.spec?.selector, { 'gateway.networking.k8s.io/gateway-name': 'istio-eastwestgateway' });
    assert.deepEqual(service.spec?.ports, [
      { name: 'tls-hbone', port: 15008, targetPort: 15008, protocol: 'TCP' },
      { name: 'status-port', port: 15021, targetPort: 15021, protocol: 'TCP' },
    ]);
    assert.equal(service.metadata?.labels?.['topology.istio.io/network'], 'network1');
    assert.equal(service.metadata?.labels?.['app.kubernetes.io/managed-by'], 'ambit-eastwest-controller');
    assert.deepEqual(service.metadata?.ownerReferences, owner);
    const unlabelled = renderService(readGateway(gateway({ labels: {} }), 'cluster-net'));
    assert.equal(unlabelled.metadata?.labels?.['topology.istio.io/network'], undefined, 'only a label the Gateway has is copied');
    const account = renderServiceAccount(reading);
    assert.equal(account.metadata?.name, 'istio-eastwestgateway');
    assert.deepEqual(account.metadata?.ownerReferences, owner);
  });

  it('carries infrastructure labels and annotations, the controller labels winning', () => {
    const spec = {
      gatewayClassName: 'istio-east-west',
      listeners: [MESH_LISTENER],
      infrastructure: { labels: { team: 'mesh', 'gateway.networking.k8s.io/gateway-name': 'spoofed' }, annotations: { 'lb.example/internal': 'true' } },
    };
    const { service, deployment } = renderGatewayResources(readGateway(gateway({ spec }), 'n'), SETTINGS);
    assert.equal(service.metadata?.labels?.team, 'mesh');
    assert.equal(service.metadata?.labels?.['gateway.networking.k8s.io/gateway-name'], 'istio-eastwestgateway');
    assert.equal(service.metadata?.annotations?.['lb.example/internal'], 'true');
    assert.equal(deployment.spec?.template.metadata?.labels?.team, 'mesh');
  });

  it('hashes the desired content, so a removed field still changes the object', () => {
    const first = renderService(reading);
    assert.match(first.metadata!.annotations![DESIRED_HASH_ANNOTATION]!, /^[0-9a-f]{16}$/);
    assert.equal(renderService(readGateway(gateway(), 'cluster-net')).metadata!.annotations![DESIRED_HASH_ANNOTATION], first.metadata!.annotations![DESIRED_HASH_ANNOTATION]);
    const unlabelled = renderService(readGateway(gateway({ labels: {} }), 'cluster-net'));
    assert.notEqual(unlabelled.metadata!.annotations![DESIRED_HASH_ANNOTATION], first.metadata!.annotations![DESIRED_HASH_ANNOTATION]);
    assert.equal(isSubset(unlabelled, first), false);
  });

  it('compares desired with actual, ignoring what the server added', () => {
    const desired = renderService(reading);
    const actual = structuredClone(desired) as Json & V1Service;
    actual.spec!.clusterIP = '10.96.0.10';
    actual.spec!.ports![0]!.nodePort = 31000;
    actual.status = { loadBalancer: {} };
    assert.equal(isSubset(desired, actual), true);
    actual.spec!.ports!.pop();
    assert.equal(isSubset(desired, actual), false);
  });
});

describe('Gateway status', () => {
  const reading = readGateway(gateway({ generation: 3 }), 'n');
  const statusOf = (r = reading, observed: Parameters<typeof computeGatewayStatus>[1] = {}, previous?: unknown, now = NOW) => computeGatewayStatus(r, observed, previous, now);

  it('waits for a LoadBalancer address', () => {
    const status = statusOf(reading, { deployment: readyDeployment(1) });
    assert.deepEqual(status.addresses, []);
    assert.deepEqual(condition(status.conditions, 'Accepted'), {
      type: 'Accepted',
      status: 'True',
      reason: 'Accepted',
      message: `accepted by ${EAST_WEST_CONTROLLER_NAME}`,
      observedGeneration: 3,
      lastTransitionTime: '2025-03-01T10:00:00Z',
    });
    const programmed = condition(status.conditions, 'Programmed')!;
    assert.equal(brief(programmed), 'False/AddressNotAssigned');
    assert.equal(programmed.message, 'waiting for a LoadBalancer address for Service istio-system/istio-eastwestgateway');
    const listener = status.listeners[0]!;
    assert.deepEqual([listener.name, listener.supportedKinds, listener.attachedRoutes], ['mesh', [], 0]);
    assert.deepEqual(listener.conditions.map(brief), ['True/Accepted', 'False/Pending', 'True/ResolvedRefs']);
  });

  it('publishes the address, and is programmed once a replica is ready', () => {
    const pending = statusOf(reading, { service: loadBalanced('198.18.4.1'), deployment: readyDeployment(0) });
    assert.deepEqual(pending.addresses, [{ type: 'IPAddress', value: '198.18.4.1' }]);
    assert.equal(brief(condition(pending.conditions, 'Programmed')), 'False/Pending');
    assert.match(condition(pending.conditions, 'Programmed')!.message, /waiting for a ready replica of Deployment istio-system\/istio-eastwestgateway/);
    const ready = statusOf(reading, { service: loadBalanced('198.18.4.1'), deployment: readyDeployment(1) });
    assert.equal(brief(condition(ready.conditions, 'Programmed')), 'True/Programmed');
    assert.deepEqual(ready.listeners[0]!.conditions.map(brief), ['True/Accepted', 'True/Programmed', 'True/ResolvedRefs']);
    assert.ok(ready.listeners[0]!.conditions.every((c) => c.observedGeneration === 3));
    const named = statusOf(reading, { service: loadBalanced(undefined, 'lb.example.com'), deployment: readyDeployment(1) });
    assert.deepEqual(named.addresses, [{ type: 'Hostname', value: 'lb.example.com' }]);
  });

  it('rejects a Passthrough-only Gateway with UnsupportedProtocol, on the listener and the Gateway', () => {
    const passthrough = readGateway(withListeners({ ...MESH_LISTENER, tls: { mode: 'Passthrough' } }), 'n');
    const status = statusOf(passthrough, { service: loadBalanced('198.18.4.1'), deployment: readyDeployment(1) });
    assert.deepEqual(status.addresses, []);
    const accepted = condition(status.conditions, 'Accepted')!;
    assert.equal(brief(accepted), 'False/UnsupportedProtocol');
    assert.match(accepted.message, /^no listener can be served: listener "mesh": tls\.mode is "Passthrough", expected Terminate/);
    assert.equal(brief(condition(status.conditions, 'Programmed')), 'False/Invalid');
    const listener = status.listeners[0]!;
    assert.deepEqual(listener.conditions.map(brief), ['False/UnsupportedProtocol', 'False/Invalid', 'True/ResolvedRefs']);
    assert.match(listener.conditions[0]!.message, /tls\.mode is "Passthrough", expected Terminate.*\(an east-west gateway listener is protocol HBONE, port 15008/);
  });

  it('accepts a Gateway with a valid listener beside an invalid one', () => {
    const mixed = readGateway(withListeners(MESH_LISTENER, { ...MESH_LISTENER, name: 'web', protocol: 'HTTP', port: 80 }), 'n');
    const status = statusOf(mixed, { service: loadBalanced('198.18.4.1'), deployment: readyDeployment(1) });
    assert.equal(brief(condition(status.conditions, 'Accepted')), 'True/Accepted');
    assert.match(condition(status.conditions, 'Accepted')!.message, /listeners not served: "web"/);
    assert.deepEqual(status.listeners.map((l) => brief(l.conditions[0])), ['True/Accepted', 'False/UnsupportedProtocol']);
  });

  it('says InvalidParameters for a malformed Gateway, and Invalid when its objects are taken', () => {
    const malformed = statusOf(readGateway(gateway({ spec: { gatewayClassName: 'istio-east-west' } }), 'n'));
    assert.equal(brief(condition(malformed.conditions, 'Accepted')), 'False/InvalidParameters');
    assert.match(condition(malformed.conditions, 'Accepted')!.message, /^spec\.listeners: expected a list/);
    assert.deepEqual(malformed.listeners, []);
    const blocked = statusOf(reading, { blocked: 'Service istio-system/istio-eastwestgateway already exists and is not owned by this Gateway', service: loadBalanced('198.18.4.1') });
    assert.equal(brief(condition(blocked.conditions, 'Programmed')), 'False/Invalid');
    assert.deepEqual(blocked.addresses, []);
  });

  it('keeps transition times while a condition holds, and compares without them', () => {
    const first = statusOf(reading, {});
    const same = statusOf(reading, {}, first, LATER);
    assert.equal(condition(same.conditions, 'Programmed')!.lastTransitionTime, '2025-03-01T10:00:00Z');
    assert.equal(same.listeners[0]!.conditions[1]!.lastTransitionTime, '2025-03-01T10:00:00Z');
    assert.equal(sameStatus(first, same), true);
    const flipped = statusOf(reading, { service: loadBalanced('198.18.4.1'), deployment: readyDeployment(1) }, first, LATER);
    assert.equal(condition(flipped.conditions, 'Programmed')!.lastTransitionTime, '2025-03-01T11:00:00Z');
    assert.equal(condition(flipped.conditions, 'Accepted')!.lastTransitionTime, '2025-03-01T10:00:00Z');
    assert.equal(sameStatus(first, flipped), false);
    // Same status, other reason: still a change to write.
    const pending = statusOf(reading, { service: loadBalanced('198.18.4.1') }, first, LATER);
    assert.equal(condition(pending.conditions, 'Programmed')!.lastTransitionTime, '2025-03-01T10:00:00Z');
    assert.equal(sameStatus(first, pending), false);
    const stored = JSON.parse(JSON.stringify({ ...first, addresses: undefined })) as unknown;
    assert.equal(sameStatus(stored, first), true, 'no addresses stored equals an empty list');
    assert.equal(sameStatus(undefined, first), false);
  });
});

// ---------------------------------------------------------------------------------------------
// The controller against an in-memory API server
// ---------------------------------------------------------------------------------------------

const keyOf = (kind: string, namespace: string | undefined, name: string | undefined) => `${kind}:${namespace ?? ''}/${name ?? ''}`;

class FakeStore<T extends KubernetesObject> implements ObjectStore<T> {
  readonly objects = new Map<string, T>();
  constructor(
    private readonly kind: string,
    private readonly labelSelected: boolean,
  ) {}
  get(name: string, namespace?: string): T | undefined {
    const object = this.objects.get(keyOf(this.kind, namespace, name));
    // The informers select on the controller's label: objects without it are invisible there.
    if (object && this.labelSelected && object.metadata?.labels?.['app.kubernetes.io/managed-by'] !== 'ambit-eastwest-controller') return undefined;
    return object;
  }
  list(): readonly T[] {
    return [...this.objects.values()];
  }
}

/** An API server in memory: GatewayApi plus informer-like stores that report every change. */
class FakeCluster implements GatewayApi, GatewaySources {
  readonly gatewayStore = new FakeStore<GatewayObject>('Gateway', false);
  readonly stores: Record<OwnedKind, FakeStore<KubernetesObject>> = {
    ServiceAccount: new FakeStore('ServiceAccount', true),
    Deployment: new FakeStore('Deployment', true),
    Service: new FakeStore('Service', true),
  };
  gatewayClass: GatewayClassObject | undefined;
  /** Calls that would write to the API server, in order. */
  readonly writes: string[] = [];
  /** Errors the next calls of a method throw. */
  readonly failNext: Partial<Record<keyof GatewayApi, unknown[]>> = {};
  private events: SourceEvents | undefined;
  private uids = 0;

  get gateways() {
    return this.gatewayStore;
  }
  get owned() {
    return this.stores;
  }
  start(events: SourceEvents): void {
    this.events = events;
    for (const kind of ['Gateway', 'ServiceAccount', 'Deployment', 'Service'] as WatchedKind[]) events.listed(kind);
  }
  async stop(): Promise<void> {
    this.events = undefined;
  }

  private failure(method: keyof GatewayApi): void {
    const err = this.failNext[method]?.shift();
    if (err) throw err;
  }

  private inFlight = 0;

  /** Delivered on a later turn of the event loop, as a watch event is. */
  private emit(kind: WatchedKind, object: KubernetesObject): void {
    this.inFlight++;
    setImmediate(() => {
      this.inFlight--;
      this.events?.changed(kind, object);
    });
  }

  /** Resolves once every event is delivered and the controller has nothing left to do. */
  async settle(controller: EastWestGatewayController): Promise<void> {
    do {
      await new Promise((resolve) => setImmediate(resolve));
      await controller.idle();
    } while (this.inFlight > 0);
  }

  putGateway(object: GatewayObject): void {
    this.gatewayStore.objects.set(keyOf('Gateway', object.metadata?.namespace, object.metadata?.name), object);
    this.emit('Gateway', object);
  }
  deleteGateway(namespace: string, name: string): void {
    const object = this.gatewayStore.objects.get(keyOf('Gateway', namespace, name))!;
    this.gatewayStore.objects.delete(keyOf('Gateway', namespace, name));
    this.emit('Gateway', object);
  }
  gatewayStatus(namespace = 'istio-system', name = 'istio-eastwestgateway'): GatewayStatus | undefined {
    return this.gatewayStore.objects.get(keyOf('Gateway', namespace, name))?.status as GatewayStatus | undefined;
  }
  object(kind: OwnedKind, namespace = 'istio-system', name = 'istio-eastwestgateway'): Json | undefined {
    return this.stores[kind].objects.get(keyOf(kind, namespace, name)) as Json | undefined;
  }
  /** What another party does: the LB controller assigns an address, the kubelet reports readiness. */
  setStatus(kind: OwnedKind, status: unknown, namespace = 'istio-system', name = 'istio-eastwestgateway'): void {
    const object = { ...this.object(kind, namespace, name)!, status } as KubernetesObject;
    this.stores[kind].objects.set(keyOf(kind, namespace, name), object);
    this.emit(kind, object);
  }
  putForeign(kind: OwnedKind, namespace: string, name: string): void {
    this.stores[kind].objects.set(keyOf(kind, namespace, name), { apiVersion: 'v1', kind, metadata: { name, namespace, uid: `foreign-${++this.uids}` } });
  }

  async read(kind: OwnedKind, namespace: string, name: string) {
    this.failure('read');
    return structuredClone(this.stores[kind].objects.get(keyOf(kind, namespace, name)));
  }
  async apply(object: OwnedObject) {
    this.failure('apply');
    this.writes.push(`apply ${keyOf(object.kind, object.metadata?.namespace, object.metadata?.name)}`);
    const key = keyOf(object.kind, object.metadata?.namespace, object.metadata?.name);
    const existing = this.stores[object.kind].objects.get(key) as Json | undefined;
    const stored = structuredClone(object) as Json & KubernetesObject;
    stored.metadata = { ...stored.metadata, uid: (existing?.metadata as { uid?: string } | undefined)?.uid ?? `uid-${++this.uids}` };
    // Defaults the API server adds, which must not make the controller apply again.
    if (object.kind === 'Service') {
      const spec = stored.spec as V1Service['spec'];
      spec!.clusterIP = '10.96.0.20';
      for (const port of spec!.ports ?? []) port.nodePort = 30000 + port.port;
    }
    if (object.kind === 'Deployment') {
      const spec = stored.spec as V1Deployment['spec'];
      spec!.strategy = { type: 'RollingUpdate' };
      spec!.template.spec!.containers[0]!.terminationMessagePath = '/dev/termination-log';
    }
    if (existing?.status) stored.status = existing.status;
    this.stores[object.kind].objects.set(key, stored);
    this.emit(object.kind, stored);
  }
  async remove(kind: OwnedKind, namespace: string, name: string, uid: string) {
    this.failure('remove');
    this.writes.push(`delete ${keyOf(kind, namespace, name)}`);
    const key = keyOf(kind, namespace, name);
    const existing = this.stores[kind].objects.get(key);
    if (existing?.metadata?.uid !== uid) return;
    this.stores[kind].objects.delete(key);
    this.emit(kind, existing);
  }
  async patchGatewayStatus(namespace: string, name: string, status: GatewayStatus) {
    this.failure('patchGatewayStatus');
    this.writes.push(`status Gateway:${namespace}/${name}`);
    const key = keyOf('Gateway', namespace, name);
    const updated = { ...this.gatewayStore.objects.get(key)!, status: structuredClone(status) };
    this.gatewayStore.objects.set(key, updated);
    this.emit('Gateway', updated);
  }
  async readGatewayClass(name: string) {
    this.failure('readGatewayClass');
    return this.gatewayClass?.metadata?.name === name ? structuredClone(this.gatewayClass) : undefined;
  }
  async createGatewayClass(object: GatewayClassObject) {
    this.failure('createGatewayClass');
    if (this.gatewayClass) return undefined;
    this.writes.push(`create GatewayClass:${object.metadata?.name}`);
    this.gatewayClass = { ...structuredClone(object), metadata: { ...object.metadata, generation: 1 } };
    return structuredClone(this.gatewayClass);
  }
  async patchGatewayClassStatus(name: string, status: { conditions: unknown[] }) {
    this.failure('patchGatewayClassStatus');
    this.writes.push(`status GatewayClass:${name}`);
    this.gatewayClass = { ...this.gatewayClass!, status };
  }
}

function notFound(): ApiException<unknown> {
  return new ApiException(404, 'Not Found', { message: 'the server could not find the requested resource' }, {});
}

function startController(cluster: FakeCluster) {
  const logs: Json[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Json) });
  const controller = new EastWestGatewayController(
    {
      kube: new KubeConfig(),
      clusterId: 'cluster1',
      network: 'network1',
      trustDomain: 'cluster.local',
      systemNamespace: 'istio-system',
      image: 'registry.example/ambit/ambit:dev',
      imagePullPolicy: 'Always',
      log,
      registry: new Registry(),
    },
    { api: cluster, sources: cluster, now: () => NOW, retry: { baseDelayMs: 1, maxDelayMs: 5 } },
  );
  controller.start();
  return { controller, logs };
}

/** Waits (without a deadline of its own: the test runner's timeout bounds it) until `check` holds. */
async function eventually(check: () => boolean, cluster: FakeCluster, controller: EastWestGatewayController): Promise<void> {
  while (!check()) {
    await cluster.settle(controller);
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

// A controller that never settles (writing in a loop) fails by timeout instead of hanging the run.
describe('east-west gateway controller', { timeout: 20_000 }, () => {
  it('creates the GatewayClass, the gateway objects, and programs the Gateway once it has an address and a ready replica', async () => {
    const cluster = new FakeCluster();
    cluster.putGateway(gateway());
    const { controller } = startController(cluster);
    try {
      await cluster.settle(controller);
      const classSpec = cluster.gatewayClass?.spec as { controllerName: string; description: string };
      assert.equal(classSpec.controllerName, 'istio.io/eastwest-controller');
      assert.ok(classSpec.description.length <= 64, 'within the upstream schema limit');
      assert.equal(brief(condition((cluster.gatewayClass?.status as { conditions: Condition[] }).conditions, 'Accepted')), 'True/Accepted');
      assert.deepEqual(cluster.writes, [
        'create GatewayClass:istio-east-west',
        'status GatewayClass:istio-east-west',
        'apply ServiceAccount:istio-system/istio-eastwestgateway',
        'apply Deployment:istio-system/istio-eastwestgateway',
        'apply Service:istio-system/istio-eastwestgateway',
        'status Gateway:istio-system/istio-eastwestgateway',
      ]);
      const deployment = cluster.object('Deployment') as V1Deployment;
      assert.equal(deployment.spec?.template.spec?.containers[0]!.imagePullPolicy, 'Always');
      assert.equal(deployment.metadata?.ownerReferences?.[0]?.uid, 'gw-uid-1');
      assert.equal(brief(condition(cluster.gatewayStatus()?.conditions, 'Programmed')), 'False/AddressNotAssigned');

      cluster.setStatus('Service', { loadBalancer: { ingress: [{ ip: '198.18.4.1' }] } });
      await cluster.settle(controller);
      assert.deepEqual(cluster.gatewayStatus()?.addresses, [{ type: 'IPAddress', value: '198.18.4.1' }]);
      assert.equal(brief(condition(cluster.gatewayStatus()?.conditions, 'Programmed')), 'False/Pending');

      cluster.setStatus('Deployment', { replicas: 1, readyReplicas: 1 });
      await cluster.settle(controller);
      assert.equal(brief(condition(cluster.gatewayStatus()?.conditions, 'Programmed')), 'True/Programmed');
      assert.equal(cluster.writes.length, 8, cluster.writes.join('\n'));

      // Nothing changed: events cause no writes.
      cluster.putGateway(cluster.gatewayStore.objects.get('Gateway:istio-system/istio-eastwestgateway')!);
      cluster.setStatus('Deployment', { replicas: 1, readyReplicas: 1 });
      await cluster.settle(controller);
      assert.equal(cluster.writes.length, 8, cluster.writes.join('\n'));
    } finally {
      await controller.stop();
    }
  });

  it('re-applies an object that was changed or deleted behind its back, and follows Gateway label changes', async () => {
    const cluster = new FakeCluster();
    cluster.putGateway(gateway());
    const { controller } = startController(cluster);
    try {
      await cluster.settle(controller);
      const service = cluster.object('Service') as V1Service;
      cluster.setStatus('Service', service.status);
      const edited = { ...service, spec: { ...service.spec, type: 'ClusterIP' } } as KubernetesObject;
      cluster.stores.Service.objects.set('Service:istio-system/istio-eastwestgateway', edited);
      cluster.setStatus('Service', undefined);
      await cluster.settle(controller);
      assert.equal((cluster.object('Service') as V1Service).spec?.type, 'LoadBalancer');

      await cluster.remove('Deployment', 'istio-system', 'istio-eastwestgateway', (cluster.object('Deployment') as KubernetesObject).metadata!.uid!);
      await cluster.settle(controller);
      assert.ok(cluster.object('Deployment'), 'the deleted Deployment is made again');

      cluster.putGateway(gateway({ labels: { 'topology.istio.io/network': 'network9' } }));
      await cluster.settle(controller);
      const env = envOf((cluster.object('Deployment') as V1Deployment).spec!.template.spec!.containers[0]!.env);
      assert.equal(env.NETWORK, 'network9');
      assert.equal((cluster.object('Service') as V1Service).metadata?.labels?.['topology.istio.io/network'], 'network9');
    } finally {
      await controller.stop();
    }
  });

  it('reports a Passthrough Gateway in its status, logs it once, and makes nothing for it', async () => {
    const cluster = new FakeCluster();
    cluster.putGateway(withListeners({ ...MESH_LISTENER, tls: { mode: 'Passthrough' } }));
    const { controller, logs } = startController(cluster);
    try {
      await cluster.settle(controller);
      const status = cluster.gatewayStatus()!;
      assert.equal(brief(condition(status.conditions, 'Accepted')), 'False/UnsupportedProtocol');
      assert.equal(brief(condition(status.listeners[0]!.conditions, 'Accepted')), 'False/UnsupportedProtocol');
      assert.equal(cluster.object('Deployment'), undefined);
      assert.equal(cluster.object('Service'), undefined);
      cluster.putGateway({ ...cluster.gatewayStore.objects.get('Gateway:istio-system/istio-eastwestgateway')!, metadata: { ...gateway().metadata, resourceVersion: '2' } });
      await cluster.settle(controller);
      const warnings = logs.filter((l) => l.msg === 'Gateway is not fully accepted');
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0]!.gateway, 'istio-system/istio-eastwestgateway');
      assert.match(String((warnings[0]!.invalidListeners as Json).mesh), /tls\.mode is "Passthrough", expected Terminate/);
    } finally {
      await controller.stop();
    }
  });

  it('removes the objects of a Gateway that stops being valid or changes class', async () => {
    const cluster = new FakeCluster();
    cluster.putGateway(gateway());
    const { controller } = startController(cluster);
    try {
      await cluster.settle(controller);
      assert.ok(cluster.object('Deployment'));
      cluster.putGateway(withListeners({ ...MESH_LISTENER, protocol: 'TCP' }));
      await cluster.settle(controller);
      assert.equal(cluster.object('Deployment'), undefined);
      assert.equal(cluster.object('Service'), undefined);
      assert.equal(brief(condition(cluster.gatewayStatus()?.conditions, 'Programmed')), 'False/Invalid');

      cluster.putGateway(gateway());
      await cluster.settle(controller);
      assert.ok(cluster.object('Service'));
      cluster.putGateway(gateway({ spec: { gatewayClassName: 'istio', listeners: [MESH_LISTENER] } }));
      await cluster.settle(controller);
      assert.equal(cluster.object('Service'), undefined);
      assert.equal(cluster.object('ServiceAccount'), undefined);
    } finally {
      await controller.stop();
    }
  });

  it('survives malformed Gateways and leaves other classes alone', async () => {
    const cluster = new FakeCluster();
    cluster.putGateway(gateway({ name: 'broken', spec: { gatewayClassName: 'istio-east-west', listeners: 'mesh' } }));
    cluster.putGateway(gateway({ name: 'ingress', spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } }));
    cluster.putGateway({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'bare', namespace: 'default', uid: 'u-bare' } });
    cluster.putGateway(gateway());
    const { controller } = startController(cluster);
    try {
      await cluster.settle(controller);
      const broken = cluster.gatewayStatus('istio-system', 'broken')!;
      assert.equal(brief(condition(broken.conditions, 'Accepted')), 'False/InvalidParameters');
      assert.match(condition(broken.conditions, 'Accepted')!.message, /spec\.listeners: expected a list of at least one listener, got "mesh"/);
      assert.equal(cluster.gatewayStatus('istio-system', 'ingress'), undefined, 'another class: no status written');
      assert.equal(cluster.gatewayStatus('default', 'bare'), undefined);
      assert.ok(cluster.object('Deployment'), 'the valid Gateway is served all the same');
    } finally {
      await controller.stop();
    }
  });

  it('does not take over objects it does not own', async () => {
    const cluster = new FakeCluster();
    cluster.putForeign('Service', 'istio-system', 'istio-eastwestgateway');
    cluster.putForeign('ServiceAccount', 'istio-system', 'istio-eastwestgateway');
    cluster.putGateway(gateway());
    const { controller } = startController(cluster);
    try {
      await cluster.settle(controller);
      assert.ok(!cluster.writes.some((w) => w.startsWith('apply Service:') || w.startsWith('apply ServiceAccount:')), cluster.writes.join('\n'));
      const programmed = condition(cluster.gatewayStatus()?.conditions, 'Programmed')!;
      assert.equal(brief(programmed), 'False/Invalid');
      assert.equal(programmed.message, 'Service istio-system/istio-eastwestgateway already exists and is not owned by this Gateway; delete it or rename the Gateway');
      assert.ok(cluster.object('Deployment'), 'an existing ServiceAccount serves as the identity as it is');
    } finally {
      await controller.stop();
    }
  });

  it('leaves Gateways alone when GatewayClass istio-east-west belongs to another controller', async () => {
    const cluster = new FakeCluster();
    cluster.gatewayClass = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'istio-east-west', generation: 1 }, spec: { controllerName: 'example.com/other' } };
    cluster.putGateway(gateway());
    const { controller, logs } = startController(cluster);
    try {
      await cluster.settle(controller);
      assert.deepEqual(cluster.writes, []);
      assert.ok(logs.some((l) => l.msg === 'GatewayClass belongs to another controller; leaving its Gateways alone' && l.controllerName === 'example.com/other'));
    } finally {
      await controller.stop();
    }
  });

  it('retries quietly while the Gateway API CRDs are missing, and retries failed writes', async () => {
    const cluster = new FakeCluster();
    cluster.failNext.readGatewayClass = [notFound(), notFound(), notFound()];
    cluster.failNext.createGatewayClass = [notFound(), notFound()];
    cluster.failNext.apply = [new ApiException(500, 'Internal Server Error', { message: 'etcd timeout' }, {})];
    cluster.putGateway(gateway());
    const { controller, logs } = startController(cluster);
    try {
      await eventually(() => brief(condition(cluster.gatewayStatus()?.conditions, 'Programmed')) === 'False/AddressNotAssigned', cluster, controller);
      assert.ok(cluster.gatewayClass, 'the class is created once the CRD answers');
      const classLogs = logs.filter((l) => String(l.msg).startsWith('cannot ensure GatewayClass yet'));
      assert.equal(classLogs.length, 1, 'a missing CRD is logged once, not on every retry');
      assert.equal(classLogs[0]!.level, 30, 'at info level');
      const failed = logs.filter((l) => l.msg === 'Gateway reconcile failed; retrying');
      assert.equal(failed.length, 1);
      assert.match(String(failed[0]!.reason), /HTTP 500: etcd timeout/);
      assert.ok(cluster.object('Deployment'));
    } finally {
      await controller.stop();
    }
  });

  it('does nothing for a deleted Gateway (its objects go by ownerReference)', async () => {
    const cluster = new FakeCluster();
    cluster.putGateway(gateway());
    const { controller } = startController(cluster);
    try {
      await cluster.settle(controller);
      const before = cluster.writes.length;
      cluster.deleteGateway('istio-system', 'istio-eastwestgateway');
      await cluster.settle(controller);
      assert.equal(cluster.writes.length, before);
    } finally {
      await controller.stop();
    }
  });
});

describe('work queue', () => {
  it('merges repeated keys, reruns a key added while running, and retries failures', async () => {
    const runs: string[] = [];
    let failOnce = true;
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => (release = resolve));
    let retried!: () => void;
    const retriedDone = new Promise<void>((resolve) => (retried = resolve));
    const errors: Array<[string, number]> = [];
    const queue = new WorkQueue(
      async (key) => {
        runs.push(key);
        if (key === 'a' && runs.filter((k) => k === 'a').length === 1) await blocked;
        if (key === 'b' && failOnce) {
          failOnce = false;
          throw new Error('boom');
        }
        if (key === 'b') retried();
      },
      { onError: (key, _err, attempt) => errors.push([key, attempt]), baseDelayMs: 1, maxDelayMs: 2 },
    );
    queue.add('a');
    queue.add('a');
    queue.add('b');
    queue.add('b');
    queue.add('a');
    release();
    await queue.idle();
    // 'a' queued again while running runs once more, in the order first queued.
    assert.deepEqual(runs, ['a', 'a', 'b']);
    await retriedDone;
    assert.deepEqual(runs, ['a', 'a', 'b', 'b']);
    assert.deepEqual(errors, [['b', 1]]);
    await queue.stop();
    queue.add('c');
    await queue.idle();
    assert.equal(runs.includes('c'), false, 'a stopped queue takes nothing');
  });
});

describe('ownImage', () => {
  const core = (pod: V1Pod | Error) =>
    ({
      readNamespacedPod: async ({ name, namespace }: { name: string; namespace: string }) => {
        if (pod instanceof Error) throw pod;
        assert.deepEqual([name, namespace], ['ambit-controlplane-abc', 'istio-system']);
        return pod;
      },
    }) as unknown as CoreV1Api;

  it('reads the image of container controlplane from its own pod', async () => {
    const pod: V1Pod = { spec: { containers: [{ name: 'sidecar', image: 'other' }, { name: 'controlplane', image: 'ghcr.io/x/ambit:1.2', imagePullPolicy: 'Always' }] } };
    assert.deepEqual(await ownImage(core(pod), 'istio-system', 'ambit-controlplane-abc', {}), { image: 'ghcr.io/x/ambit:1.2', imagePullPolicy: 'Always', source: 'pod' });
  });

  it('falls back to AMBIT_IMAGE, and says why when neither tells', async () => {
    const noContainer: V1Pod = { spec: { containers: [{ name: 'other', image: 'x' }] } };
    assert.deepEqual(await ownImage(core(noContainer), 'istio-system', 'ambit-controlplane-abc', { AMBIT_IMAGE: 'ambit/ambit:dev' }), { image: 'ambit/ambit:dev', source: 'env' });
    await assert.rejects(
      ownImage(core(notFound() as unknown as Error), 'istio-system', 'ambit-controlplane-abc', {}),
      /cannot tell the control plane's image for gateway Deployments: cannot read pod istio-system\/ambit-controlplane-abc: HTTP 404: .*, and AMBIT_IMAGE is not set/,
    );
    await assert.rejects(ownImage(core(noContainer), 'istio-system', 'ambit-controlplane-abc', {}), /pod istio-system\/ambit-controlplane-abc has no container "controlplane"/);
  });
});

// ---------------------------------------------------------------------------------------------
// The real client against a stand-in API server on localhost: the requests it makes
// ---------------------------------------------------------------------------------------------

describe('API server requests', { timeout: 20_000 }, () => {
  interface Seen {
    method: string;
    url: string;
    contentType: string | undefined;
    body: string;
  }
  const seen: Seen[] = [];
  const watches = new Set<http.ServerResponse>();
  /** Canned answers by "METHOD path" (path without query); anything else: 200 echoing the body. */
  const answers = new Map<string, { code: number; body: unknown }>();
  let server: http.Server;
  let config: KubeConfig;

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, contentType: req.headers['content-type'], body });
        const url = new URL(req.url!, 'http://x');
        if (url.searchParams.get('watch') === 'true') {
          res.writeHead(200, { 'content-type': 'application/json' });
          watches.add(res);
          res.on('close', () => watches.delete(res));
          return;
        }
        const answer = answers.get(`${req.method} ${url.pathname}`);
        res.writeHead(answer?.code ?? 200, { 'content-type': 'application/json' });
        res.end(answer ? JSON.stringify(answer.body) : body || '{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    config = new KubeConfig();
    const server_ = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    config.loadFromOptions({ clusters: [{ name: 'c', server: server_, skipTLSVerify: true }], users: [{ name: 'u' }], contexts: [{ name: 'c', cluster: 'c', user: 'u' }], currentContext: 'c' });
  });
  after(async () => {
    for (const res of watches) res.end();
    // The client keeps connections alive; close them, or the server (and the test run) would wait for them.
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const status = (code: number, message: string) => ({ code, body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', code, message } });

  it('applies server-side with the controller as field manager, and patches status by merge', async () => {
    seen.length = 0;
    answers.set('GET /api/v1/namespaces/istio-system/services/gw', status(404, 'services "gw" not found'));
    answers.set('DELETE /apis/apps/v1/namespaces/istio-system/deployments/gw', status(409, 'Precondition failed: UID in precondition: u1, UID in object meta: u2'));
    answers.set('POST /apis/gateway.networking.k8s.io/v1/gatewayclasses', status(409, 'gatewayclasses "istio-east-west" already exists'));
    const api = kubeGatewayApi(config);
    const reading = readGateway(gateway({ name: 'gw' }), 'n');
    assert.equal(await api.read('Service', 'istio-system', 'gw'), undefined);
    await api.apply(renderService(reading));
    await api.apply(renderDeployment(reading, SETTINGS));
    await api.remove('Deployment', 'istio-system', 'gw', 'u1');
    await api.patchGatewayStatus('istio-system', 'gw', computeGatewayStatus(reading, {}, undefined, NOW));
    assert.equal(await api.createGatewayClass({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'istio-east-west' } }), undefined);
    assert.deepEqual(
      seen.map((r) => `${r.method} ${r.url} ${r.contentType ?? ''}`.trim()),
      [
        'GET /api/v1/namespaces/istio-system/services/gw',
        'PATCH /api/v1/namespaces/istio-system/services/gw?fieldManager=ambit-eastwest-controller&force=true application/apply-patch+yaml',
        'PATCH /apis/apps/v1/namespaces/istio-system/deployments/gw?fieldManager=ambit-eastwest-controller&force=true application/apply-patch+yaml',
        'DELETE /apis/apps/v1/namespaces/istio-system/deployments/gw application/json',
        'PATCH /apis/gateway.networking.k8s.io/v1/namespaces/istio-system/gateways/gw/status application/merge-patch+json',
        'POST /apis/gateway.networking.k8s.io/v1/gatewayclasses?fieldManager=ambit-eastwest-controller application/json',
      ],
    );
    assert.deepEqual(JSON.parse(seen[1]!.body), JSON.parse(JSON.stringify(renderService(reading))));
    assert.deepEqual(JSON.parse(seen[3]!.body), { preconditions: { uid: 'u1' } });
    assert.deepEqual(Object.keys((JSON.parse(seen[4]!.body) as { status: Json }).status), ['addresses', 'conditions', 'listeners']);
    answers.set('PATCH /api/v1/namespaces/istio-system/services/gw', status(403, 'services "gw" is forbidden'));
    await assert.rejects(api.apply(renderService(reading)), /forbidden/);
  });

  it('watches its own objects by label, and Gateways quietly while their CRD is missing', async () => {
    seen.length = 0;
    answers.set('GET /apis/gateway.networking.k8s.io/v1/gateways', status(404, 'the server could not find the requested resource'));
    const owned = { ...renderService(readGateway(gateway({ name: 'gw' }), 'n')), metadata: { ...renderService(readGateway(gateway({ name: 'gw' }), 'n')).metadata, resourceVersion: '5' } };
    answers.set('GET /api/v1/services', { code: 200, body: { apiVersion: 'v1', kind: 'ServiceList', metadata: { resourceVersion: '10' }, items: [owned] } });
    for (const path of ['/api/v1/serviceaccounts', '/apis/apps/v1/deployments']) answers.set(`GET ${path}`, { code: 200, body: { kind: 'List', metadata: { resourceVersion: '10' }, items: [] } });
    const logs: Json[] = [];
    const sources = informerSources(config, pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Json) }));
    const listed = new Set<WatchedKind>();
    const changed: string[] = [];
    let allListed!: () => void;
    const ready = new Promise<void>((resolve) => (allListed = resolve));
    sources.start({
      listed: (kind) => {
        listed.add(kind);
        if (listed.size === 3) allListed();
      },
      changed: (kind, object) => changed.push(`${kind} ${object.metadata?.namespace}/${object.metadata?.name}`),
    });
    try {
      await ready;
      while (!logs.some((l) => l.kind === 'Gateway') || changed.length === 0) await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual([...listed].sort(), ['Deployment', 'Service', 'ServiceAccount']);
      assert.deepEqual(changed, ['Service istio-system/gw']);
      assert.equal(sources.owned.Service.get('gw', 'istio-system')?.metadata?.resourceVersion, '5');
      const lists = seen.filter((r) => r.method === 'GET' && !r.url.includes('watch=true')).map((r) => r.url);
      assert.ok(lists.includes('/api/v1/services?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dambit-eastwest-controller'), lists.join('\n'));
      assert.ok(lists.includes('/apis/gateway.networking.k8s.io/v1/gateways'));
      const gatewayLog = logs.find((l) => l.kind === 'Gateway')!;
      assert.equal(gatewayLog.level, 30, 'a missing Gateway CRD is no warning');
      assert.match(String(gatewayLog.reason), /404/);
    } finally {
      await sources.stop();
    }
  });
});
