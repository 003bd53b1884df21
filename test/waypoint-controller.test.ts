/** Waypoint Gateways read and rendered (classes istio-waypoint and istio-mesh), and the services a Waypoint resource lists, fed objects directly. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { create } from '@bufbuild/protobuf';

import { ipToBytes } from '../src/api/ip.js';
import { AddressSchema, GatewayAddressSchema, NamespacedHostnameSchema, NetworkAddressSchema, ServiceSchema, type Address } from '../src/gen/istio/workload/workload_pb.js';
import { servicesOf } from '../src/controlplane/waypoints/controller.js';
import { readWaypointGateway, renderWaypointObjects } from '../src/controlplane/waypoints/objects.js';
import { placePolicies, readTargetedPolicy } from '../src/controlplane/waypoints/policies.js';

const settings = { clusterId: 'cluster1', trustDomain: 'cluster.local', systemNamespace: 'istio-system', image: 'ambit/ambit:test', imagePullPolicy: 'IfNotPresent' };
const gateway = (name: string, spec: object, metadata: object = {}) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: 'default', uid: 'u1', generation: 2, ...metadata }, spec });

describe('waypoint Gateways', () => {
  test('istio-waypoint: its own ServiceAccount, Deployment and Service named like the Gateway, running waypoint-proxy, never captured', () => {
    const reading = readWaypointGateway(gateway('waypoint', { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] }))!;
    assert.deepEqual([reading.problems, reading.serviceAccount, reading.objectName, reading.waypointFor], [[], 'waypoint', 'waypoint', 'service']);
    const objects = renderWaypointObjects(reading, settings, '');
    assert.equal(objects.serviceAccount?.metadata?.name, 'waypoint');
    const pod = objects.deployment.spec!.template;
    assert.deepEqual(pod.spec?.containers[0]?.args, ['waypoint-proxy']);
    assert.equal(pod.spec?.serviceAccountName, 'waypoint');
    assert.equal(pod.metadata?.labels?.['istio.io/dataplane-mode'], 'none');
    assert.equal(pod.metadata?.labels?.['gateway.istio.io/managed'], 'istio.io-mesh-controller');
    const env = Object.fromEntries((pod.spec?.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    assert.deepEqual([env.GATEWAY_NAME, env.SERVICE_ACCOUNT, env.WAYPOINT_FOR], ['waypoint', 'waypoint', 'service']);
    assert.deepEqual(objects.service.spec?.ports?.map((p) => p.port), [15008, 15021]);
    assert.equal(objects.service.metadata?.labels?.['gateway.istio.io/managed'], 'istio.io-mesh-controller');
    assert.equal(objects.deployment.metadata?.ownerReferences?.[0]?.name, 'waypoint');
  });

  test("istio-mesh (seed 004): a Deployment <sa>-waypoint-proxy running as the annotated service account, no ServiceAccount made", () => {
    const reading = readWaypointGateway(gateway('productpage', { gatewayClassName: 'istio-mesh' }, { annotations: { 'istio.io/service-account': 'bookinfo-productpage' } }))!;
    assert.deepEqual([reading.problems, reading.objectName, reading.serviceAccount], [[], 'bookinfo-productpage-waypoint-proxy', 'bookinfo-productpage']);
    const objects = renderWaypointObjects(reading, settings, '');
    assert.equal(objects.serviceAccount, undefined);
    assert.equal(objects.deployment.metadata?.name, 'bookinfo-productpage-waypoint-proxy');
    assert.equal(objects.deployment.spec?.template.spec?.serviceAccountName, 'bookinfo-productpage');
  });

  test('bad input is named by field; other classes are not waypoints', () => {
    assert.match(readWaypointGateway(gateway('productpage', { gatewayClassName: 'istio-mesh' }))!.problems.join(), /istio\.io\/service-account/);
    assert.match(readWaypointGateway(gateway('w', { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] }))!.problems.join(), /spec\.listeners: expected a listener \{name: mesh, port: 15008, protocol: HBONE\}/);
    assert.match(readWaypointGateway(gateway('w', { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] }, { labels: { 'istio.io/waypoint-for': 'everything' } }))!.problems.join(), /waypoint-for.*not one of service, workload, all, none/);
    assert.equal(readWaypointGateway(gateway('ew', { gatewayClassName: 'istio-east-west' })), undefined);
  });

  test('the Waypoint resource lists exactly the services whose Service.waypoint names it', () => {
    const reading = readWaypointGateway(gateway('waypoint', { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] }))!;
    const svc = (name: string, waypointHost?: string, ns = 'default'): [string, Address] => [
      `${ns}/${name}.${ns}.svc.cluster.local`,
      create(AddressSchema, {
        type: {
          case: 'service',
          value: create(ServiceSchema, {
            name,
            namespace: ns,
            hostname: `${name}.${ns}.svc.cluster.local`,
            addresses: [create(NetworkAddressSchema, { address: ipToBytes('10.96.0.1') })],
            waypoint: waypointHost ? create(GatewayAddressSchema, { destination: { case: 'hostname', value: create(NamespacedHostnameSchema, { namespace: 'default', hostname: waypointHost }) }, hboneMtlsPort: 15008 }) : undefined,
          }),
        },
      }),
    ];
    const addresses = new Map([svc('web', 'waypoint.default.svc.cluster.local'), svc('api'), svc('other', 'other-waypoint.default.svc.cluster.local'), svc('remote', 'waypoint.default.svc.cluster.local', 'apps')]);
    assert.deepEqual(servicesOf(reading, addresses, 'cluster.local'), ['apps/remote.apps.svc.cluster.local', 'default/web.default.svc.cluster.local']);
  });
});

describe('AuthorizationPolicies for waypoints', () => {
  const policy = (spec: object, name = 'p') => ({ metadata: { name, namespace: 'default' }, spec });
  const reading = () => readWaypointGateway(gateway('waypoint', { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] }))!;

  test("translates every field with Istio's string forms, and places targetRefs on the Gateway (all traffic) or served Services", () => {
    const onGateway = readTargetedPolicy(policy({
      targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }],
      action: 'DENY',
      rules: [{ from: [{ source: { principals: ['*/sa/evil'], notNamespaces: ['trusted*'], ipBlocks: ['10.0.0.0/8'] } }], to: [{ operation: { methods: ['POST'], paths: ['/admin*'], ports: ['8080'] } }], when: [{ key: 'request.headers[x-token]', values: ['*'] }] }],
    }, 'deny-evil'))!;
    const [rule] = onGateway.policy.rules;
    assert.equal(rule!.from[0]!.principals[0]!.match.case, 'suffix');
    assert.equal(rule!.from[0]!.notNamespaces[0]!.match.case, 'prefix');
    assert.deepEqual([rule!.from[0]!.ipBlocks[0]!.length, rule!.to[0]!.ports, rule!.when[0]!.values[0]!.match.case], [8, [8080], 'presence']);
    const onService = readTargetedPolicy(policy({ targetRefs: [{ kind: 'Service', name: 'web' }], rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }, 'web-get'))!;
    const elsewhere = readTargetedPolicy(policy({ targetRefs: [{ kind: 'Service', name: 'not-served' }] }, 'other'))!;
    const placed = placePolicies(reading(), [onGateway, onService, elsewhere], ['default/web.default.svc.cluster.local'], 'cluster.local');
    assert.deepEqual(placed.map((p) => [p.name, p.allTraffic, p.services]), [['deny-evil', true, []], ['web-get', false, ['default/web.default.svc.cluster.local']]]);
  });

  test('selector policies are not waypoint policies; bad fields are named', () => {
    assert.equal(readTargetedPolicy(policy({ selector: { matchLabels: { app: 'web' } } })), undefined);
    assert.throws(() => readTargetedPolicy(policy({ targetRefs: [{ kind: 'Pod', name: 'x' }] })), /spec\.targetRefs\[0\]\.kind/);
    assert.throws(() => readTargetedPolicy(policy({ targetRefs: [{ kind: 'Service', name: 'web' }], action: 'CUSTOM' })), /spec\.action/);
    assert.throws(() => readTargetedPolicy(policy({ targetRefs: [{ kind: 'Service', name: 'web' }], rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/99'] } }] }] })), /spec\.rules\[0\]\.from\[0\]\.source\.ipBlocks\[0\]/);
    assert.throws(() => readTargetedPolicy(policy({ targetRefs: [{ kind: 'Service', name: 'web' }], rules: [{ to: [{ operation: { ports: ['http'] } }] }] })), /ports\[0\]/);
  });
});
