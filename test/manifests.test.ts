import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { KubernetesObject, V1ClusterRole, V1DaemonSet, V1Deployment, V1EnvVar, V1Role, V1Service } from '@kubernetes/client-node';
import { Command } from 'commander';
import { parseAllDocuments } from 'yaml';
import { parseTimeout, registerMeshCommands } from '../src/cli/mesh-commands.js';
import { formatDuration, parseDuration, requireDuration } from '../src/install/duration.js';
import { installMesh, isManagedByAmbit, selectSharedCrds } from '../src/install/install.js';
import { checkReachable, cleanOutput, resolveContext } from '../src/install/kubectl.js';
import { renderManifests, renderYaml, toYaml } from '../src/install/manifests.js';
import { gatewayApiCrds } from '../src/install/objects/crds.js';
import { ENV, ROOT_CERT_CONFIGMAP, TOKEN_AUDIENCE, TOKEN_DIR, TOKEN_FILE, ROOT_CERT_DIR } from '../src/api/names.js';
import { parseConfigDump } from '../src/install/proxy-config/config-dump.js';
import { certsTable, parseView, renderView, servicesTable, viewJson, workloadsTable } from '../src/install/proxy-config/tables.js';
import { AMBIT_VERSION, loadValues, parseValuesText, resolveValues, setLayers, ValuesError, type InstallValues } from '../src/install/values.js';
import type { ConfigDump } from '../src/ztunnel/admin/types.js';

const dir = mkdtempSync(join(tmpdir(), 'ambit-manifests-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function problemsOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ValuesError, `expected a ValuesError, got ${String(err)}`);
    return err.problems.join('\n');
  }
  assert.fail('expected a ValuesError');
}

const fromText = (text: string, source = 'values.yaml') => resolveValues([parseValuesText(text, source)]);

describe('install values', () => {
  it('has Istio-like defaults, the mesh ID following the trust domain', () => {
    const { values, notes } = loadValues();
    assert.equal(values.clusterName, 'Kubernetes');
    assert.equal(values.network, '');
    assert.equal(values.trustDomain, 'cluster.local');
    assert.equal(values.meshId, 'cluster.local');
    assert.equal(values.systemNamespace, 'istio-system');
    assert.equal(values.image, `ambit/ambit:${AMBIT_VERSION}`);
    assert.equal(values.imagePullPolicy, 'IfNotPresent');
    assert.deepEqual({ ...values.controlPlane, resources: undefined }, { replicas: 1, logLevel: 'info', workloadCertTtl: '24h', maxWorkloadCertTtl: '90d', resources: undefined });
    assert.deepEqual(notes, []);
    assert.equal(loadValues({ flags: { trustDomain: 'corp.example' } }).values.meshId, 'corp.example');
    assert.equal(loadValues({ flags: { trustDomain: 'corp.example', meshId: 'mesh1' } }).values.meshId, 'mesh1');
  });

  it('applies defaults < files (in order) < flags < --set (in order)', () => {
    const first = file('first.yaml', 'clusterName: from-first\nnetwork: net-first\nmeshId: mesh-first\ncontrolPlane: {replicas: 2, logLevel: debug}\n');
    const second = file('second.json', JSON.stringify({ network: 'net-second', controlPlane: { replicas: 3 } }));
    const { values } = loadValues({
      files: [first, second],
      flags: { meshId: 'mesh-flag', clusterName: 'cluster-flag' },
      set: ['clusterName=cluster-set', 'controlPlane.replicas=4', 'controlPlane.replicas=5'],
    });
    assert.equal(values.network, 'net-second', 'the later file wins');
    assert.equal(values.meshId, 'mesh-flag', 'a flag beats files');
    assert.equal(values.clusterName, 'cluster-set', '--set beats flags');
    assert.equal(values.controlPlane.replicas, 5, 'the later --set wins');
    assert.equal(values.controlPlane.logLevel, 'debug', 'untouched fields of a file survive');
    assert.equal(values.controlPlane.workloadCertTtl, '24h', 'untouched defaults survive');
  });

  it('merges resources key by key and types --set values', () => {
    const { values } = resolveValues(setLayers(['ztunnel.resources.limits.memory=1Gi', 'ztunnel.resources.requests.cpu=1', 'network=42']));
    assert.deepEqual(values.ztunnel.resources, { requests: { cpu: '1', memory: '128Mi' }, limits: { memory: '1Gi' } });
    assert.equal(values.network, '42');
  });

  it('maps the Istio Helm values of the istiod and ztunnel charts, with notes for settings without effect', () => {
    const istiod = `
meshConfig:
  trustDomain: "corp.local"
global:
  meshID: mesh1
  multiCluster:
    clusterName: cluster1
  network: network1
  istioNamespace: mesh-system
env:
  PILOT_ENABLE_IP_AUTOALLOCATE: "true"
  AMBIENT_ENABLE_MULTI_NETWORK: "true"
platforms:
  peering:
    enabled: true
`;
    const ztunnel = 'multiCluster:\n  clusterName: cluster1\nenv:\n  SKIP_VALIDATE_TRUST_DOMAIN: "true"\nnetwork: network1\nlogLevel: debug\n';
    const { values, notes } = resolveValues([parseValuesText(istiod, 'istiod.yaml'), parseValuesText(ztunnel, 'ztunnel.yaml')]);
    assert.equal(values.clusterName, 'cluster1');
    assert.equal(values.network, 'network1');
    assert.equal(values.meshId, 'mesh1');
    assert.equal(values.trustDomain, 'corp.local');
    assert.equal(values.systemNamespace, 'mesh-system');
    assert.equal(values.ztunnel.logLevel, 'debug');
    assert.ok(notes.some((n) => n.startsWith('istiod.yaml: env.PILOT_ENABLE_IP_AUTOALLOCATE: ')), notes.join('\n'));
    assert.ok(notes.some((n) => n.startsWith('istiod.yaml: platforms.peering.enabled: ')));
    assert.ok(notes.some((n) => n.startsWith('ztunnel.yaml: env.SKIP_VALIDATE_TRUST_DOMAIN: ')));
    assert.equal(notes.length, 4);
  });

  it('reads an IstioOperator and istioctl-style --set paths', () => {
    const operator = 'apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  profile: ambient\n  values:\n    global:\n      meshID: mesh1\n      multiCluster: {clusterName: cluster2}\n      network: network2\n';
    const { values, notes } = fromText(operator, 'cluster2.yaml');
    assert.deepEqual([values.clusterName, values.network, values.meshId], ['cluster2', 'network2', 'mesh1']);
    assert.deepEqual(notes, []);
    assert.equal(values.ingressGateway.enabled, true, 'profile ambient installs the ingress gateway');
    const set = resolveValues(setLayers(['values.global.meshID=m2', 'spec.values.global.network=n2', 'meshConfig.trustDomain=td.example'])).values;
    assert.deepEqual([set.meshId, set.network, set.trustDomain], ['m2', 'n2', 'td.example']);
  });

  it('names the file and field of a bad duration', () => {
    assert.equal(problemsOf(() => fromText('controlPlane:\n  workloadCertTtl: soon\n')), 'values.yaml: controlPlane.workloadCertTtl: expected a duration like 24h, got "soon"');
    assert.match(problemsOf(() => resolveValues(setLayers(['controlPlane.maxWorkloadCertTtl=90']))), /^--set: controlPlane\.maxWorkloadCertTtl: expected a duration like 24h, got "90"$/);
  });

  it('rejects unknown keys by name, with a suggestion', () => {
    assert.match(problemsOf(() => fromText('netwrok: n1\n')), /^values\.yaml: netwrok: unknown key \(did you mean "network"\?\)$/);
    assert.match(problemsOf(() => fromText('controlPlane: {replica: 2}\n')), /^values\.yaml: controlPlane\.replica: unknown key \(did you mean "replicas"\?\); expected one of: replicas, logLevel/);
    assert.match(problemsOf(() => fromText('global: {meshId: m}\n')), /values\.yaml: global\.meshId: unknown key \(did you mean "meshID"\?\)/);
    assert.match(problemsOf(() => fromText('colour: red\n')), /values\.yaml: colour: unknown key$/);
    assert.match(problemsOf(() => fromText('kind: IstioOperator\nspec: {valuez: {}}\n')), /spec\.valuez: unknown IstioOperator field \(did you mean "values"\?\)/);
  });

  it('reports every problem of every layer, naming Istio keys as written', () => {
    const problems = problemsOf(() =>
      resolveValues([
        parseValuesText('global:\n  multiCluster:\n    clusterName: "bad name"\n', 'a.yaml'),
        parseValuesText('ztunnel: {logLevel: loud}\ncontrolPlane: {replicas: 0}\nimagePullPolicy: Sometimes\n', 'b.yaml'),
      ]),
    );
    assert.match(problems, /a\.yaml: global\.multiCluster\.clusterName: expected a label value .*got "bad name"/);
    assert.match(problems, /b\.yaml: ztunnel\.logLevel: expected one of trace, debug, info, warn, error, fatal, got "loud"/);
    assert.match(problems, /b\.yaml: controlPlane\.replicas: at least 1 replica/);
    assert.match(problems, /b\.yaml: imagePullPolicy: expected one of Always, IfNotPresent, Never, got "Sometimes"/);
  });

  it('rejects conflicting Istio and ambit keys, and a TTL beyond the maximum', () => {
    assert.match(problemsOf(() => fromText('global: {network: a}\nnetwork: b\n')), /values\.yaml: network: "b" conflicts with global\.network: "a"/);
    assert.equal(fromText('global: {network: a}\nnetwork: a\n').values.network, 'a');
    assert.match(
      problemsOf(() => resolveValues([parseValuesText('controlPlane: {workloadCertTtl: 100d}\n', 'v.yaml')])),
      /v\.yaml: controlPlane\.workloadCertTtl: 100d is longer than controlPlane\.maxWorkloadCertTtl 90d \(set by defaults\)/,
    );
  });

  it('reports unreadable files, bad YAML, non-mappings and malformed --set', () => {
    assert.match(problemsOf(() => loadValues({ files: [join(dir, 'missing.yaml')] })), /missing\.yaml: cannot read the values file: ENOENT/);
    assert.match(problemsOf(() => parseValuesText('a: [', 'bad.yaml')), /^bad\.yaml: not valid YAML/);
    assert.match(problemsOf(() => parseValuesText('a: 1\n---\nb: 2\n', 'two.yaml')), /two\.yaml: holds 2 YAML documents/);
    assert.match(problemsOf(() => fromText('- a\n', 'list.yaml')), /list\.yaml: expected a mapping of values at the top level/);
    assert.match(problemsOf(() => setLayers(['novalue'])), /--set novalue: expected key=value/);
    assert.match(problemsOf(() => setLayers(['a..b=1'])), /--set a\.\.b=1: expected key=value/);
  });
});

describe('durations', () => {
  it('parses Go-style durations plus days', () => {
    assert.equal(parseDuration('24h'), 86_400_000);
    assert.equal(parseDuration('20s'), 20_000);
    assert.equal(parseDuration('90d'), 90 * 86_400_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1.5h'), 5_400_000);
    assert.equal(parseDuration('500ms'), 500);
    for (const bad of ['soon', '', '24', 'h', '0s', '-1h', '1 h', '1y']) assert.equal(parseDuration(bad), undefined, bad);
    assert.throws(() => requireDuration('soon', '--timeout'), /--timeout: expected a duration like 24h, 20s or 90d, got "soon"/);
    assert.equal(formatDuration(90 * 86_400_000), '90d');
    assert.equal(formatDuration(5_400_000), '1h30m');
  });

  it('accepts --timeout as a duration or plain seconds', () => {
    assert.equal(parseTimeout('180s'), 180_000);
    assert.equal(parseTimeout('5m'), 300_000);
    assert.equal(parseTimeout('90'), 90_000);
    assert.throws(() => parseTimeout('later'), /--timeout: expected a duration like 180s/);
  });
});

describe('manifests', () => {
  const values: InstallValues = resolveValues(
    setLayers(['clusterName=cluster1', 'network=network1', 'meshId=mesh1', 'image=registry.example/ambit/ambit:dev', 'controlPlane.replicas=2', 'ztunnel.logLevel=debug', 'controlPlane.workloadCertTtl=12h']),
  ).values;
  const objects = renderManifests(values);
  const find = <T extends KubernetesObject>(kind: string, name: string) => {
    const found = objects.find((o) => o.kind === kind && o.metadata?.name === name);
    assert.ok(found, `${kind}/${name} is rendered`);
    return found as T;
  };
  const envOf = (vars: V1EnvVar[] | undefined) => Object.fromEntries((vars ?? []).map((v) => [v.name, v.value ?? `fieldRef:${v.valueFrom?.fieldRef?.fieldPath}`]));

  it('renders the objects in applicable order', () => {
    assert.deepEqual(
      objects.map((o) => `${o.kind}/${o.metadata?.name}`),
      [
        'Namespace/istio-system',
        'CustomResourceDefinition/authorizationpolicies.security.istio.io',
        'CustomResourceDefinition/gateways.networking.istio.io',
        'CustomResourceDefinition/virtualservices.networking.istio.io',
        'CustomResourceDefinition/destinationrules.networking.istio.io',
        'CustomResourceDefinition/serviceentries.networking.istio.io',
        'ServiceAccount/ambit-controlplane',
        'ServiceAccount/ztunnel',
        'ServiceAccount/istio-reader-service-account',
        'ClusterRole/ambit-controlplane',
        'ClusterRole/ambit-reader',
        'ClusterRoleBinding/ambit-controlplane',
        'ClusterRoleBinding/ambit-reader',
        'Role/ambit-controlplane',
        'RoleBinding/ambit-controlplane',
        'Role/ztunnel',
        'RoleBinding/ztunnel',
        'ConfigMap/istio',
        'Service/ambit-controlplane',
        'Deployment/ambit-controlplane',
        'DaemonSet/ztunnel',
      ],
    );
    for (const object of objects) {
      assert.equal(object.metadata?.labels?.['app.kubernetes.io/part-of'], 'ambit');
      if (!['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding'].includes(object.kind!)) assert.equal(object.metadata?.namespace, 'istio-system', `${object.kind} namespace`);
    }
  });

  it('labels the namespace with the network only when one is set', () => {
    assert.equal(find('Namespace', 'istio-system').metadata?.labels?.['topology.istio.io/network'], 'network1');
    const plain = renderManifests(loadValues().values)[0]!;
    assert.equal(plain.metadata?.labels?.['topology.istio.io/network'], undefined);
    const custom = renderManifests(loadValues({ set: ['systemNamespace=mesh-system'] }).values);
    assert.ok(custom.every((o) => o.metadata?.namespace === undefined || o.metadata.namespace === 'mesh-system'));
    assert.equal(custom[0]!.metadata?.name, 'mesh-system');
  });

  it('defines the AuthorizationPolicy CRD as Istio serves it', () => {
    const crd = find<KubernetesObject & { spec: Record<string, unknown> }>('CustomResourceDefinition', 'authorizationpolicies.security.istio.io');
    assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
    const spec = crd.spec as {
      group: string;
      scope: string;
      names: { shortNames: string[]; kind: string };
      versions: Array<{ name: string; served: boolean; storage: boolean; subresources: unknown; schema: { openAPIV3Schema: { type: string; properties: Record<string, Record<string, unknown>> } } }>;
    };
    assert.equal(spec.group, 'security.istio.io');
    assert.equal(spec.scope, 'Namespaced');
    assert.equal(spec.names.kind, 'AuthorizationPolicy');
    assert.deepEqual(spec.names.shortNames, ['ap']);
    assert.deepEqual(spec.versions.map((v) => [v.name, v.served, v.storage]), [['v1', true, true], ['v1beta1', true, false]]);
    for (const version of spec.versions) {
      assert.deepEqual(version.subresources, { status: {} });
      assert.equal(version.schema.openAPIV3Schema.type, 'object');
      assert.deepEqual(version.schema.openAPIV3Schema.properties.spec, { type: 'object', 'x-kubernetes-preserve-unknown-fields': true });
      assert.deepEqual(version.schema.openAPIV3Schema.properties.status, { type: 'object', 'x-kubernetes-preserve-unknown-fields': true });
    }
  });

  it('defines the Gateway API Gateway and GatewayClass CRDs, approved and marked as ambit\'s, apart from the other manifests', () => {
    type Crd = KubernetesObject & {
      spec: {
        group: string;
        scope: string;
        names: { kind: string; plural: string; shortNames: string[] };
        versions: Array<{ name: string; served: boolean; storage: boolean; subresources: unknown; schema: { openAPIV3Schema: { properties: Record<string, unknown> } } }>;
      };
    };
    const crds = gatewayApiCrds() as Crd[];
    assert.deepEqual(crds.map((c) => c.metadata?.name), [
      'gatewayclasses.gateway.networking.k8s.io',
      'gateways.gateway.networking.k8s.io',
      'httproutes.gateway.networking.k8s.io',
      'grpcroutes.gateway.networking.k8s.io',
    ]);
    assert.ok(!objects.some((o) => o.metadata?.name?.endsWith('.gateway.networking.k8s.io')), 'not in the unconditional manifests');
    const [gatewayClass, gateway] = crds as [Crd, Crd];
    assert.deepEqual([gateway.spec.names.kind, gateway.spec.names.plural, gateway.spec.scope, gateway.spec.names.shortNames], ['Gateway', 'gateways', 'Namespaced', ['gtw']]);
    assert.deepEqual([gatewayClass.spec.names.kind, gatewayClass.spec.names.plural, gatewayClass.spec.scope], ['GatewayClass', 'gatewayclasses', 'Cluster']);
    for (const crd of crds) {
      assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
      assert.equal(crd.spec.group, 'gateway.networking.k8s.io');
      assert.equal(crd.metadata?.annotations?.['api-approved.kubernetes.io'], 'https://github.com/kubernetes-sigs/gateway-api/pull/2466');
      assert.equal(crd.metadata?.labels?.['app.kubernetes.io/managed-by'], 'ambit');
      assert.equal(crd.metadata?.labels?.['app.kubernetes.io/part-of'], 'ambit');
      assert.deepEqual(
        crd.spec.versions.map((v) => [v.name, v.served, v.storage]),
        crd.spec.names.kind === 'GRPCRoute' ? [['v1', true, true]] : [['v1', true, true], ['v1beta1', true, false]],
      );
      for (const version of crd.spec.versions) {
        assert.deepEqual(version.subresources, { status: {} });
        assert.deepEqual(version.schema.openAPIV3Schema.properties.spec, { type: 'object', 'x-kubernetes-preserve-unknown-fields': true });
        assert.deepEqual(version.schema.openAPIV3Schema.properties.status, { type: 'object', 'x-kubernetes-preserve-unknown-fields': true });
      }
    }
    const docs = parseAllDocuments(toYaml(crds));
    assert.ok(Array.isArray(docs));
    assert.deepEqual(docs.map((d) => d.toJS()), JSON.parse(JSON.stringify(crds)));
  });

  it('installs the Gateway API CRDs only where absent or already ambit\'s', () => {
    const crds = gatewayApiCrds();
    const names = (list: KubernetesObject[]) => list.map((c) => c.metadata?.name);
    assert.deepEqual(names(selectSharedCrds(crds, []).apply), names(crds));
    assert.deepEqual(selectSharedCrds(crds, []).notes, []);
    const ours = { ...crds[1]!, metadata: { ...crds[1]!.metadata, resourceVersion: '7' } };
    assert.deepEqual(names(selectSharedCrds(crds, [ours]).apply), names(crds), 'its own are updated');
    const upstream = (name: string, versions: Array<{ name: string; served: boolean }>) => ({
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name, labels: { 'gateway.networking.k8s.io/bundle-version': 'v1.4.1' } },
      spec: { versions },
    });
    const { apply, notes } = selectSharedCrds(crds, [
      upstream('gateways.gateway.networking.k8s.io', [{ name: 'v1', served: true }, { name: 'v1beta1', served: true }]),
      upstream('gatewayclasses.gateway.networking.k8s.io', [{ name: 'v1beta1', served: true }]),
    ]);
    assert.deepEqual(names(apply), ['httproutes.gateway.networking.k8s.io', 'grpcroutes.gateway.networking.k8s.io'], 'the absent ones are still applied');
    assert.deepEqual(notes, [
      'customresourcedefinition gatewayclasses.gateway.networking.k8s.io exists and is not managed by ambit: left as is',
      'warning: customresourcedefinition gatewayclasses.gateway.networking.k8s.io does not serve v1; ambit needs Gateway API v1.0 or later',
      'customresourcedefinition gateways.gateway.networking.k8s.io exists and is not managed by ambit: left as is',
    ]);
    assert.equal(isManagedByAmbit(crds[0]!), true);
    assert.equal(isManagedByAmbit(find('CustomResourceDefinition', 'authorizationpolicies.security.istio.io')), false, 'the AuthorizationPolicy CRD is always applied, not selected');
  });

  it('grants the control plane what it needs, and ztunnel nothing', () => {
    const rules = find<V1ClusterRole>('ClusterRole', 'ambit-controlplane').rules!;
    const verbsFor = (group: string, resource: string) => new Set(rules.filter((r) => r.apiGroups?.includes(group) && r.resources?.includes(resource)).flatMap((r) => r.verbs));
    for (const resource of ['namespaces', 'nodes', 'pods', 'services', 'endpoints', 'serviceaccounts', 'secrets', 'configmaps']) {
      for (const verb of ['get', 'list', 'watch']) assert.ok(verbsFor('', resource).has(verb), `${verb} ${resource}`);
    }
    for (const verb of ['create', 'update', 'patch']) assert.ok(verbsFor('', 'configmaps').has(verb), `${verb} configmaps`);
    assert.ok(!verbsFor('', 'secrets').has('create'), 'secrets are written only in the system namespace');
    assert.deepEqual([...verbsFor('authentication.k8s.io', 'tokenreviews')], ['create']);
    assert.ok(verbsFor('security.istio.io', 'authorizationpolicies').has('watch'));
    assert.ok(verbsFor('security.istio.io', 'authorizationpolicies/status').has('update'));
    assert.ok(verbsFor('gateway.networking.k8s.io', 'gateways').has('watch'));
    assert.ok(verbsFor('gateway.networking.k8s.io', 'gateways/status').has('update'));
    for (const verb of ['create', 'update', 'patch', 'delete']) {
      assert.ok(verbsFor('apps', 'deployments').has(verb), `${verb} deployments`);
      assert.ok(verbsFor('', 'services').has(verb), `${verb} services`);
      assert.ok(verbsFor('', 'serviceaccounts').has(verb), `${verb} serviceaccounts (east-west gateways)`);
    }
    assert.deepEqual([...verbsFor('gateway.networking.k8s.io', 'gatewayclasses')].sort(), ['create', 'get', 'list', 'watch']);
    assert.deepEqual([...verbsFor('gateway.networking.k8s.io', 'gateways')].sort(), ['get', 'list', 'watch'], 'Gateways themselves are the user\'s');
    assert.ok(verbsFor('gateway.networking.k8s.io', 'gateways/status').has('patch'));
    const role = find<V1Role>('Role', 'ambit-controlplane');
    assert.ok(role.rules!.some((r) => r.resources?.includes('secrets') && r.verbs.includes('create') && r.verbs.includes('update')));
    const subjects = objects.filter((o) => o.kind?.endsWith('Binding')).flatMap((o) => (o as { subjects?: Array<{ name: string }> }).subjects ?? []);
    const ztunnelBindings = objects.filter((o) => o.kind?.endsWith('Binding') && ((o as { subjects?: Array<{ name: string }> }).subjects ?? []).some((s) => s.name === 'ztunnel'));
    assert.deepEqual(ztunnelBindings.map((o) => `${o.kind}/${o.metadata?.name}`), ['RoleBinding/ztunnel'], 'ztunnel is bound to its one Role only');
    const ztunnelRole = find<V1Role>('Role', 'ztunnel');
    assert.deepEqual(ztunnelRole.rules, [{ apiGroups: ['apps'], resources: ['daemonsets'], resourceNames: ['ztunnel'], verbs: ['get'] }], 'it may read its own DaemonSet, nothing else');
    assert.ok(subjects.length > 0);
    assert.equal((find('ServiceAccount', 'ztunnel') as { automountServiceAccountToken?: boolean }).automountServiceAccountToken, false);
    const reader = find<V1ClusterRole>('ClusterRole', 'ambit-reader').rules!;
    assert.ok(!reader.some((r) => r.resources?.includes('secrets')), 'remote readers cannot read secrets');
    assert.ok(reader.every((r) => r.verbs.every((v) => ['get', 'list', 'watch'].includes(v)) || r.resources?.includes('tokenreviews')));
  });

  it('runs the control plane with its settings, ports and readiness probe', () => {
    const deployment = find<V1Deployment>('Deployment', 'ambit-controlplane');
    assert.equal(deployment.spec?.replicas, 2);
    assert.deepEqual(deployment.spec?.selector.matchLabels, { app: 'ambit-controlplane' });
    const pod = deployment.spec!.template;
    assert.equal(pod.metadata?.labels?.app, 'ambit-controlplane');
    assert.deepEqual(pod.metadata?.annotations, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15014', 'prometheus.io/path': '/metrics' });
    assert.equal(pod.spec?.serviceAccountName, 'ambit-controlplane');
    const container = pod.spec!.containers[0]!;
    assert.equal(container.name, 'controlplane');
    assert.equal(container.image, 'registry.example/ambit/ambit:dev');
    assert.deepEqual(container.args, ['controlplane']);
    assert.deepEqual(envOf(container.env), {
      [ENV.clusterId]: 'cluster1',
      [ENV.network]: 'network1',
      [ENV.meshId]: 'mesh1',
      [ENV.trustDomain]: 'cluster.local',
      [ENV.systemNamespace]: 'istio-system',
      [ENV.podName]: 'fieldRef:metadata.name',
      [ENV.podNamespace]: 'fieldRef:metadata.namespace',
      [ENV.workloadCertTtl]: '12h',
      [ENV.maxWorkloadCertTtl]: '90d',
      [ENV.logLevel]: 'info',
    });
    assert.deepEqual(container.ports?.map((p) => [p.name, p.containerPort]), [['grpc-xds', 15012], ['http-monitoring', 15014], ['http-ready', 8080]]);
    assert.deepEqual(container.readinessProbe?.httpGet, { path: '/ready', port: 8080 });
    const service = find<V1Service>('Service', 'ambit-controlplane');
    assert.equal(service.spec?.type, 'ClusterIP');
    assert.deepEqual(service.spec?.selector, { app: 'ambit-controlplane' });
    assert.deepEqual(service.spec?.ports?.map((p) => [p.name, p.port, p.targetPort]), [['grpc-xds', 15012, 15012], ['http-monitoring', 15014, 15014]]);
  });

  it('runs ztunnel on every node, in the node network, with its token and the mesh root', () => {
    const daemonSet = find<V1DaemonSet>('DaemonSet', 'ztunnel');
    assert.deepEqual(daemonSet.spec?.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    const pod = daemonSet.spec!.template;
    assert.equal(pod.metadata?.labels?.app, 'ztunnel');
    assert.equal(pod.metadata?.annotations?.['prometheus.io/port'], '15020');
    const spec = pod.spec!;
    assert.equal(spec.hostNetwork, true);
    assert.equal(spec.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.equal(spec.serviceAccountName, 'ztunnel');
    assert.equal(spec.priorityClassName, 'system-node-critical');
    assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
    assert.equal(spec.terminationGracePeriodSeconds, 30);
    const container = spec.containers[0]!;
    assert.deepEqual(container.args, ['ztunnel']);
    assert.equal(container.securityContext?.privileged, false);
    assert.equal(container.securityContext?.runAsUser, 0);
    assert.deepEqual(container.securityContext?.capabilities?.add, ['NET_ADMIN', 'NET_RAW']);
    assert.deepEqual(envOf(container.env), {
      [ENV.nodeName]: 'fieldRef:spec.nodeName',
      [ENV.podName]: 'fieldRef:metadata.name',
      [ENV.podNamespace]: 'fieldRef:metadata.namespace',
      [ENV.instanceIp]: 'fieldRef:status.podIP',
      [ENV.clusterId]: 'cluster1',
      [ENV.network]: 'network1',
      [ENV.trustDomain]: 'cluster.local',
      [ENV.systemNamespace]: 'istio-system',
      [ENV.xdsAddress]: 'ambit-controlplane.istio-system.svc:15012',
      [ENV.caAddress]: 'ambit-controlplane.istio-system.svc:15012',
      [ENV.logLevel]: 'debug',
    });
    assert.deepEqual(container.ports?.map((p) => [p.name, p.containerPort]), [['http-metrics', 15020], ['http-ready', 15021]]);
    assert.deepEqual(container.readinessProbe?.httpGet, { path: '/healthz/ready', port: 15021 });
    const mounts = Object.fromEntries((container.volumeMounts ?? []).map((m) => [m.name, m.mountPath]));
    const volumes = Object.fromEntries((spec.volumes ?? []).map((v) => [v.name, v]));
    const tokenVolume = Object.entries(volumes).find(([, v]) => v.projected)!;
    assert.deepEqual(tokenVolume[1].projected?.sources, [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: 43200, path: TOKEN_FILE } }]);
    assert.equal(mounts[tokenVolume[0]], TOKEN_DIR);
    const rootVolume = Object.entries(volumes).find(([, v]) => v.configMap)!;
    assert.equal(rootVolume[1].configMap?.name, ROOT_CERT_CONFIGMAP);
    assert.equal(mounts[rootVolume[0]], ROOT_CERT_DIR);
  });

  it('renders multi-document YAML that round-trips, without anchors', () => {
    const yaml = renderYaml(values);
    assert.ok(!/[&*]a\d/.test(yaml), 'no YAML aliases');
    assert.match(yaml, /^# ambit .*cluster "cluster1", network "network1", mesh "mesh1"/);
    const docs = parseAllDocuments(yaml);
    assert.ok(Array.isArray(docs));
    assert.deepEqual(
      docs.map((d) => d.toJS()),
      JSON.parse(JSON.stringify([...objects, ...gatewayApiCrds()])),
      'the mesh objects, then the Gateway API CRDs',
    );
  });

  it('is accepted by kubectl apply --dry-run (client, or server against AMBIT_TEST_KUBE_CONTEXT)', (t) => {
    // kubectl's client dry run still asks an API server for discovery (REST mappings and the
    // OpenAPI schema), so it only runs when one is reachable: AMBIT_TEST_KUBE_CONTEXT names a
    // context to use (a server-side dry run, which also validates against the server's schema).
    const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
    if (kubectl.error) return t.skip('kubectl is not installed');
    const context = process.env.AMBIT_TEST_KUBE_CONTEXT;
    const yaml = renderYaml(values);
    if (!context) {
      const empty = file('empty-kubeconfig', '');
      const result = spawnSync('kubectl', ['apply', '--dry-run=client', '-f', '-'], { input: yaml, encoding: 'utf8', env: { ...process.env, KUBECONFIG: empty } });
      if (result.status !== 0 && /connection refused|failed to download openapi|unable to recognize|couldn't get current server API group list/.test(result.stderr)) {
        return t.skip('kubectl --dry-run=client needs an API server for discovery; set AMBIT_TEST_KUBE_CONTEXT to check against one');
      }
      assert.equal(result.status, 0, result.stderr);
      return;
    }
    const output = execFileSync('kubectl', ['--context', context, 'apply', '--server-side', '--force-conflicts', '--field-manager=ambit-test', '--dry-run=server', '-f', '-'], { input: yaml, encoding: 'utf8' });
    assert.match(output, /customresourcedefinition.* serverside-applied \(server dry run\)/);
  });
});

describe('kubectl errors', () => {
  let saved: string | undefined;
  before(() => {
    saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = file(
      'kubeconfig',
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{name: dead, cluster: {server: "https://127.0.0.1:1"}}]',
        'users: [{name: u, user: {token: t}}]',
        'contexts: [{name: alpha, context: {cluster: dead, user: u}}, {name: beta, context: {cluster: dead, user: u}}]',
        'current-context: beta',
      ].join('\n'),
    );
  });
  after(() => {
    if (saved === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = saved;
  });

  it('lists the known contexts for an unknown one, and defaults to the current one', async () => {
    await assert.rejects(resolveContext('gamma'), /context "gamma" is not in the kubeconfig; known contexts: alpha, beta/);
    assert.equal(await resolveContext(undefined), 'beta');
    await assert.rejects(installMesh({ context: 'gamma', values: loadValues().values }), /known contexts: alpha, beta/);
  });

  it('names the address of an unreachable API server', async () => {
    await assert.rejects(checkReachable('alpha'), /cannot reach the API server of context "alpha" at https:\/\/127\.0\.0\.1:1: .*refused/);
  });

  it('drops client/server version skew warnings from kubectl output', () => {
    assert.equal(cleanOutput('WARNING: version difference between client (1.32) and server (1.20) exceeds the supported minor version skew of +/-1\nError from server: bad\n'), 'Error from server: bad');
  });
});

describe('manifest generate command', () => {
  it('prints the YAML for the given flags, and rejects bad values', async () => {
    const program = new Command('ambit').exitOverride();
    registerMeshCommands(program);
    const written: string[] = [];
    const original = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      await program.parseAsync(['manifest', 'generate', '--cluster-name', 'c9', '--set', 'network=n9'], { from: 'user' });
    } finally {
      process.stdout.write = original;
    }
    const docs = parseAllDocuments(written.join(''));
    assert.ok(Array.isArray(docs));
    const daemonSet = docs.map((d) => d.toJS() as V1DaemonSet).find((o) => o.kind === 'DaemonSet')!;
    assert.ok(daemonSet.spec?.template.spec?.containers[0]!.env?.some((e) => e.name === 'CLUSTER_ID' && e.value === 'c9'));
    await assert.rejects(program.parseAsync(['manifest', 'generate', '--set', 'controlPlane.workloadCertTtl=soon'], { from: 'user' }), /--set: controlPlane\.workloadCertTtl: expected a duration like 24h, got "soon"/);
  });
});

describe('proxy-config views', () => {
  const dump: ConfigDump = {
    node: 'cluster1-node1',
    clusterId: 'cluster1',
    network: 'network1',
    controlPlane: { connected: true, address: 'ambit-controlplane.istio-system.svc:15012', lastUpdate: '2025-01-01T00:00:00Z' },
    workloads: [
      {
        uid: 'cluster1//Pod/sample/sleep-1',
        name: 'sleep-1',
        namespace: 'sample',
        addresses: ['198.19.0.5'],
        node: 'cluster1-node1',
        network: 'network1',
        clusterId: 'cluster1',
        protocol: 'HBONE',
        serviceAccount: 'sleep',
        identity: 'spiffe://cluster.local/ns/sample/sa/sleep',
        status: 'Healthy',
        canonicalName: 'sleep',
        canonicalRevision: 'latest',
        workloadType: 'pod',
        workloadName: 'sleep',
        services: [],
        locality: { region: 'region1', zone: 'zone1', subzone: '' },
        captured: true,
        capacity: 1,
        waypoint: 'sample/waypoint.sample.svc.cluster.local',
      },
      {
        uid: 'cluster2//network-gateway/helloworld',
        name: 'helloworld-remote',
        namespace: 'a-first',
        addresses: [],
        node: '',
        network: 'network2',
        clusterId: 'cluster2',
        protocol: 'HBONE',
        serviceAccount: 'default',
        identity: 'spiffe://cluster.local/ns/a-first/sa/default',
        status: 'Unhealthy',
        canonicalName: '',
        canonicalRevision: '',
        workloadType: 'deployment',
        workloadName: '',
        services: ['a-first/helloworld.a-first.svc.cluster.local'],
        locality: { region: '', zone: '', subzone: '' },
        captured: false,
        capacity: 0,
        networkGateway: 'istio-system/network2.east-west.ambit.internal',
      },
    ],
    services: [
      {
        name: 'helloworld',
        namespace: 'sample',
        hostname: 'helloworld.sample.svc.cluster.local',
        vips: ['network1/198.18.128.10'],
        ports: [
          { port: 5000, targetPort: 5000, protocol: 'HTTP' },
          { port: 80, targetPort: 8080, protocol: 'TCP' },
        ],
        endpoints: 3,
        healthyEndpoints: 2,
        waypoint: 'sample/waypoint.sample.svc.cluster.local',
      },
    ],
    certificates: [
      {
        identity: 'spiffe://cluster.local/ns/sample/sa/sleep',
        state: 'valid',
        serialNumber: '0a1b2c',
        notBefore: '2025-01-01T00:00:00Z',
        notAfter: '2025-01-02T00:00:00Z',
        renewAt: '2025-01-01T12:00:00Z',
        chain: [
          { subject: '', issuer: 'O=cluster.local', uriSans: ['spiffe://cluster.local/ns/sample/sa/sleep'], notBefore: '2025-01-01T00:00:00Z', notAfter: '2025-01-02T00:00:00Z' },
          { subject: 'O=cluster.local', issuer: 'O=cluster.local', uriSans: [], notBefore: '2024-01-01T00:00:00Z', notAfter: '2034-01-01T00:00:00Z' },
        ],
      },
      { identity: 'spiffe://cluster.local/ns/other/sa/api', state: 'error', chain: [], error: 'CA refused: not on this node' },
    ],
    policies: [{ name: 'deny-all', namespace: 'sample', scope: 'NAMESPACE', action: 'DENY', rules: 1, dryRun: false }],
  };

  it('tabulates workloads, sorted, with every column', () => {
    assert.equal(
      workloadsTable(dump.workloads),
      [
        'NAMESPACE  POD NAME           ADDRESS                                             NODE            NETWORK   PROTOCOL  CAPTURED  STATUS     CAPACITY  WAYPOINT',
        'a-first    helloworld-remote  via istio-system/network2.east-west.ambit.internal  None            network2  HBONE     no        Unhealthy  0         None',
        'sample     sleep-1            198.19.0.5                                          cluster1-node1  network1  HBONE     yes       Healthy    1         sample/waypoint.sample.svc.cluster.local',
      ].join('\n'),
    );
  });

  it('tabulates services with ports and healthy/total endpoints', () => {
    assert.equal(
      servicesTable(dump.services),
      [
        'NAMESPACE  SERVICE NAME  VIPS                    PORTS                   ENDPOINTS  WAYPOINT',
        'sample     helloworld    network1/198.18.128.10  5000/HTTP,80->8080/TCP  2/3        sample/waypoint.sample.svc.cluster.local',
      ].join('\n'),
    );
  });

  it('tabulates certificates, then each chain or error', () => {
    const text = certsTable(dump.certificates);
    const lines = text.split('\n');
    assert.match(lines[0]!, /^IDENTITY\s+STATE\s+SERIAL\s+NOT AFTER\s+RENEW AT$/);
    assert.match(lines[1]!, /^spiffe:\/\/cluster\.local\/ns\/other\/sa\/api\s+error\s+-\s+-\s+-$/);
    assert.match(lines[2]!, /^spiffe:\/\/cluster\.local\/ns\/sample\/sa\/sleep\s+valid\s+0a1b2c\s+2025-01-02T00:00:00Z\s+2025-01-01T12:00:00Z$/);
    assert.match(text, /spiffe:\/\/cluster\.local\/ns\/other\/sa\/api:\n {2}error: CA refused: not on this node/);
    assert.match(text, /\[0\] subject: \n\s+issuer: {2}O=cluster\.local\n\s+URI SANs: spiffe:\/\/cluster\.local\/ns\/sample\/sa\/sleep/);
    assert.match(text, /\[1\] subject: O=cluster\.local/);
  });

  it('shows everything for `all`, and the matching part for -o json', () => {
    const all = renderView(dump, 'all', 'ztunnel-abcde');
    assert.match(all, /^ztunnel ztunnel-abcde on node cluster1-node1 \(cluster cluster1, network network1\)\ncontrol plane ambit-controlplane\.istio-system\.svc:15012: connected, last update 2025-01-01T00:00:00Z/);
    for (const section of ['WORKLOADS', 'SERVICES', 'POLICIES', 'CERTIFICATES']) assert.match(all, new RegExp(`\n\n${section}\n`));
    assert.match(all, /sample\s+deny-all\s+DENY\s+NAMESPACE\s+1\s+no/);
    assert.deepEqual(viewJson(dump, 'services'), dump.services);
    assert.deepEqual(viewJson(dump, 'all'), dump);
    assert.equal(parseView('workload'), 'workloads');
    assert.equal(parseView('certificate'), 'certs');
    assert.equal(parseView('connections'), undefined);
  });

  it('validates what the admin endpoint returns', () => {
    assert.deepEqual(parseConfigDump(JSON.stringify(dump), 'ztunnel-x'), dump);
    assert.throws(() => parseConfigDump('<html>bad gateway</html>', 'ztunnel-x on n1'), /ztunnel-x on n1: the admin endpoint did not return JSON: <html>bad gateway/);
    assert.throws(() => parseConfigDump('', 'ztunnel-x'), /did not return JSON \(empty answer\)/);
    const broken = { ...dump, workloads: [{ ...dump.workloads[0], protocol: 'UDP' }] };
    assert.throws(() => parseConfigDump(JSON.stringify(broken), 'ztunnel-x'), /ztunnel-x: unexpected config_dump from the admin endpoint: workloads\.0\.protocol/);
  });
});
