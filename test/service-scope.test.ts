import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';

import { KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';

import { MeshConfigWatcher } from '../src/controlplane/mesh-config.js';
import { KubeClusterView, type ClusterViewChange } from '../src/controlplane/multicluster/index.js';
import { GlobalServiceIndex } from '../src/controlplane/multicluster/global-services.js';
import { MeshConfigError, parseMeshConfig, type ServiceScopeConfig } from '../src/api/mesh-config.js';
import { isGlobalService, labelSelectorMatches, serviceScope, ServiceScopePolicy } from '../src/controlplane/multicluster/service-scope.js';
import { renderManifests } from '../src/install/manifests.js';
import { parseValuesText, resolveValues, setLayers, ValuesError } from '../src/install/values.js';

type Labels = Record<string, string>;

const namespace = (name: string, labels: Labels = {}) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const service = (name: string, ns: string, labels: Labels = {}) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns, labels },
  spec: { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 80, protocol: 'TCP' }] },
});
const key = (name: string, ns: string) => `${ns}/${name}.${ns}.svc.cluster.local`;

/** Istio's own multi-network test config. */
const ISTIO_TEST_CONFIG: ServiceScopeConfig[] = [{ servicesSelector: { matchExpressions: [{ key: 'istio.io/global', operator: 'Exists' }] }, scope: 'GLOBAL' }];

describe('label selectors', () => {
  it('matches like Kubernetes: matchLabels and every operator, all ANDed; absent or empty selects everything', () => {
    const labels = { app: 'web', tier: 'front' };
    assert.equal(labelSelectorMatches(undefined, labels), true);
    assert.equal(labelSelectorMatches(null, labels), true);
    assert.equal(labelSelectorMatches({}, labels), true);
    assert.equal(labelSelectorMatches({ matchLabels: { app: 'web' } }, labels), true);
    assert.equal(labelSelectorMatches({ matchLabels: { app: 'web', tier: 'back' } }, labels), false);
    const one = (operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist', key: string, values?: string[]) =>
      labelSelectorMatches({ matchExpressions: [{ key, operator, values }] }, labels);
    assert.equal(one('In', 'app', ['web', 'api']), true);
    assert.equal(one('In', 'app', ['api']), false);
    assert.equal(one('In', 'missing', ['web']), false);
    assert.equal(one('NotIn', 'app', ['api']), true);
    assert.equal(one('NotIn', 'app', ['web']), false);
    assert.equal(one('NotIn', 'missing', ['web']), true, 'NotIn holds when the label is absent');
    assert.equal(one('Exists', 'tier'), true);
    assert.equal(one('Exists', 'missing'), false);
    assert.equal(one('DoesNotExist', 'missing'), true);
    assert.equal(one('DoesNotExist', 'tier'), false);
    assert.equal(
      labelSelectorMatches({ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'Exists' }, { key: 'tier', operator: 'In', values: ['back'] }] }, labels),
      false,
      'every requirement must hold',
    );
  });
});

describe('service scope', () => {
  const configs: ServiceScopeConfig[] = [
    { namespaceSelector: { matchLabels: { shared: 'true' } }, scope: 'GLOBAL' },
    { servicesSelector: { matchLabels: { private: 'true' } }, scope: 'LOCAL' },
  ];

  it('takes the last entry whose selectors both match; an entry without scope means LOCAL', () => {
    assert.equal(serviceScope(configs, { shared: 'true' }, {}), 'GLOBAL');
    assert.equal(serviceScope(configs, { shared: 'true' }, { private: 'true' }), 'LOCAL', 'the later entry wins');
    assert.equal(serviceScope([...configs, { namespaceSelector: { matchLabels: { shared: 'true' } }, scope: 'GLOBAL' }], { shared: 'true' }, { private: 'true' }), 'GLOBAL');
    assert.equal(serviceScope(configs, {}, {}), undefined, 'nothing matches');
    assert.equal(serviceScope([{ servicesSelector: { matchLabels: { a: 'b' } } }], {}, { a: 'b' }), 'LOCAL');
    assert.equal(serviceScope([{ scope: 'GLOBAL' }], {}, {}), 'GLOBAL', 'no selector at all matches everything');
  });

  it('needs both selectors of an entry to match', () => {
    const both: ServiceScopeConfig[] = [{ namespaceSelector: { matchLabels: { team: 'a' } }, servicesSelector: { matchLabels: { expose: 'yes' } }, scope: 'GLOBAL' }];
    assert.equal(serviceScope(both, { team: 'a' }, { expose: 'yes' }), 'GLOBAL');
    assert.equal(serviceScope(both, { team: 'b' }, { expose: 'yes' }), undefined);
    assert.equal(serviceScope(both, { team: 'a' }, {}), undefined);
  });

  it('falls back to the istio.io/global=true label only when no entry matches; LOCAL beats the label', () => {
    assert.equal(isGlobalService([], {}, { 'istio.io/global': 'true' }), true);
    assert.equal(isGlobalService([], {}, { 'istio.io/global': 'yes' }), false);
    assert.equal(isGlobalService(configs, {}, { 'istio.io/global': 'true' }), true, 'no entry matches: the label decides');
    assert.equal(isGlobalService(configs, {}, { 'istio.io/global': 'true', private: 'true' }), false, 'LOCAL overrides the label');
    assert.equal(isGlobalService(configs, { shared: 'true' }, {}), true, 'the namespace selector makes it global without the label');
    assert.equal(isGlobalService(ISTIO_TEST_CONFIG, {}, { 'istio.io/global': 'false' }), true, "Istio's test config: the key's presence is enough");
  });
});

describe('mesh config', () => {
  it('reads serviceScopeConfigs and ignores the other MeshConfig fields', () => {
    const text = 'trustDomain: cluster.local\ndefaultConfig:\n  discoveryAddress: istiod:15012\nserviceScopeConfigs:\n  - servicesSelector:\n      matchExpressions:\n        - key: istio.io/global\n          operator: Exists\n    scope: GLOBAL\n';
    assert.deepEqual(parseMeshConfig(text).serviceScopeConfigs, ISTIO_TEST_CONFIG);
    assert.deepEqual(parseMeshConfig('').serviceScopeConfigs, []);
    assert.deepEqual(parseMeshConfig('trustDomain: x\n').serviceScopeConfigs, []);
  });

  it('names the field of every problem', () => {
    const message = (text: string) => {
      try {
        parseMeshConfig(text);
      } catch (err) {
        assert.ok(err instanceof MeshConfigError);
        return err.message;
      }
      return assert.fail('expected a MeshConfigError');
    };
    assert.match(message('serviceScopeConfigs: ['), /^not valid YAML/);
    assert.equal(message('- a\n'), 'expected a mapping, got a list');
    assert.equal(message('serviceScopeConfigs:\n  - scope: global\n'), 'serviceScopeConfigs[0].scope: expected LOCAL or GLOBAL, got "global"');
    assert.equal(
      message('serviceScopeConfigs:\n  - scope: GLOBAL\n  - serviceSelector: {}\n'),
      'serviceScopeConfigs[1]: unknown key "serviceSelector"; expected one of: namespaceSelector, servicesSelector, scope',
    );
    assert.equal(
      message('serviceScopeConfigs:\n  - namespaceSelector:\n      matchExpressions:\n        - {key: a, operator: In}\n'),
      'serviceScopeConfigs[0].namespaceSelector.matchExpressions[0].values: operator In needs at least one value',
    );
  });
});

function watcher(policy = new ServiceScopePolicy()) {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const metrics = new Registry();
  return { policy, lines, metrics, watcher: new MeshConfigWatcher({ systemNamespace: 'istio-system', policy, metrics, log }) };
}

const configMap = (mesh: string): V1ConfigMap => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh } });

async function metricValue(metrics: Registry, name: string): Promise<number | undefined> {
  return (await metrics.getSingleMetric(name)?.get())?.values[0]?.value;
}

describe('MeshConfigWatcher', () => {
  it('applies valid content; invalid content is logged and counted and the previous config stays in force', async () => {
    const { policy, lines, metrics, watcher: meshConfig } = watcher();
    const global = 'serviceScopeConfigs:\n  - scope: GLOBAL\n';
    assert.equal(meshConfig.apply(configMap(global)), true);
    assert.deepEqual(policy.configs(), [{ scope: 'GLOBAL' }]);

    assert.equal(meshConfig.apply(configMap('serviceScopeConfigs:\n  - scope: SOMETIMES\n')), false);
    assert.deepEqual(policy.configs(), [{ scope: 'GLOBAL' }], 'the previous config stays');
    const rejected = lines.filter((line) => line.msg === 'mesh config rejected; the previous one stays in force');
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0]!.problem, 'serviceScopeConfigs[0].scope: expected LOCAL or GLOBAL, got "SOMETIMES"');
    assert.equal(rejected[0]!.configMap, 'istio-system/istio');
    assert.equal(await metricValue(metrics, 'ambit_mesh_config_rejected_total'), 1);
    assert.equal(await metricValue(metrics, 'ambit_mesh_config_valid'), 0);

    meshConfig.apply(configMap('serviceScopeConfigs:\n  - scope: SOMETIMES\n'));
    assert.equal(await metricValue(metrics, 'ambit_mesh_config_rejected_total'), 1, 'the same content re-delivered (a re-list) is judged once');

    assert.equal(meshConfig.apply(configMap('serviceScopeConfigs:\n  - scope: LOCAL\n')), true);
    assert.deepEqual(policy.configs(), [{ scope: 'LOCAL' }]);
    assert.equal(await metricValue(metrics, 'ambit_mesh_config_valid'), 1);

    assert.equal(meshConfig.apply(undefined), true, 'a deleted ConfigMap means the defaults');
    assert.deepEqual(policy.configs(), []);
    assert.equal(meshConfig.apply({ ...configMap(''), data: {} }), true, 'so does a ConfigMap without the mesh key');
  });
});

/** Just enough of an API server for ConfigMap `istio`: a list and a watch whose events the test sends. */
async function fakeConfigMapApi(initial: V1ConfigMap[]) {
  const path = '/api/v1/namespaces/istio-system/configmaps';
  const watches = new Set<ServerResponse>();
  const selectors: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== path) {
      res.writeHead(404).end();
      return;
    }
    selectors.push(url.searchParams.get('fieldSelector') ?? '');
    res.writeHead(200, { 'content-type': 'application/json' });
    if (url.searchParams.get('watch') === 'true') {
      res.flushHeaders();
      watches.add(res);
      res.on('close', () => watches.delete(res));
      return;
    }
    res.end(JSON.stringify({ kind: 'ConfigMapList', apiVersion: 'v1', metadata: { resourceVersion: '1' }, items: initial }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kubeConfig = new KubeConfig();
  const cluster = { name: 'fake', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true };
  kubeConfig.loadFromOptions({ clusters: [cluster], users: [{ name: 'u', token: 't' }], contexts: [{ name: 'c', cluster: 'fake', user: 'u' }], currentContext: 'c' });
  let version = 1;
  return {
    kubeConfig,
    selectors,
    watching: () => watches.size > 0,
    emit(type: 'MODIFIED' | 'DELETED', object: V1ConfigMap) {
      const event = { type, object: { ...object, metadata: { ...object.metadata, resourceVersion: String(++version) } } };
      for (const res of watches) res.write(`${JSON.stringify(event)}\n`);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function eventually(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail(`never happened: ${what}`);
}

describe('MeshConfigWatcher against an API server', () => {
  it('reads ConfigMap istio at start and follows its edits and deletion', async () => {
    const api = await fakeConfigMapApi([configMap('serviceScopeConfigs:\n  - scope: GLOBAL\n')]);
    const { policy, watcher: meshConfig } = watcher();
    const watch = meshConfig.watch(api.kubeConfig);
    try {
      await watch.synced;
      assert.deepEqual(policy.configs(), [{ scope: 'GLOBAL' }], 'in force once synced');
      assert.ok(api.selectors.every((selector) => selector === 'metadata.name=istio'), 'reads only ConfigMap istio');
      await eventually('the watch is open', api.watching);

      api.emit('MODIFIED', configMap('serviceScopeConfigs: oops\n'));
      api.emit('MODIFIED', configMap('serviceScopeConfigs:\n  - scope: LOCAL\n'));
      await eventually('the edit applies', () => policy.configs()[0]?.scope === 'LOCAL');
      api.emit('DELETED', configMap(''));
      await eventually('the deletion restores the defaults', () => policy.configs().length === 0);
    } finally {
      watch.stop();
      await api.close();
    }
  });
});

describe('GlobalServiceIndex', () => {
  it('re-judges services when the config or a namespace changes, reporting exactly the services that flipped', () => {
    const index = new GlobalServiceIndex('cluster.local');
    assert.deepEqual(index.upsertNamespace(namespace('shop', { team: 'shop' })), []);
    assert.deepEqual(index.upsertService(service('cart', 'shop', { 'istio.io/global': 'true' })), [key('cart', 'shop')]);
    assert.deepEqual(index.upsertService(service('orders', 'shop')), []);
    assert.deepEqual(index.upsertService(service('db', 'shop', { private: 'true' })), []);
    assert.deepEqual(index.upsertService(service('web', 'front')), [], 'its namespace is not known yet: no namespace labels');

    // The shop namespace becomes global, except private services; cart was global already.
    const changed = index.setConfigs([
      { namespaceSelector: { matchLabels: { team: 'shop' } }, scope: 'GLOBAL' },
      { servicesSelector: { matchLabels: { private: 'true' } }, scope: 'LOCAL' },
    ]);
    assert.deepEqual(changed.sort(), [key('orders', 'shop')]);
    assert.deepEqual([...index.all()].sort(), [key('cart', 'shop'), key('orders', 'shop')]);

    assert.deepEqual(index.setConfigs([...ISTIO_TEST_CONFIG]).sort(), [key('orders', 'shop')], 'orders goes back to local; cart keeps its label');
    assert.deepEqual(index.upsertNamespace(namespace('front', { team: 'shop' })), [], 'namespace labels no longer matter');

    assert.deepEqual(index.setConfigs([{ namespaceSelector: { matchLabels: { team: 'shop' } }, scope: 'GLOBAL' }]).sort(), [key('web', 'front'), key('db', 'shop'), key('orders', 'shop')]);
    assert.deepEqual(index.upsertNamespace(namespace('front', { team: 'web' })), [key('web', 'front')], 'a namespace relabel flips its services');
    assert.deepEqual(index.upsertNamespace(namespace('front', { team: 'web' })), [], 'an unchanged namespace flips nothing');
    assert.deepEqual(index.removeService(service('db', 'shop')), [key('db', 'shop')]);
    assert.deepEqual(index.removeNamespace(namespace('shop')).sort(), [key('orders', 'shop')], 'cart keeps its label');
  });
});

describe('KubeClusterView with the mesh config', () => {
  function view(clusterId: string, policy: ServiceScopePolicy) {
    const cluster = new KubeClusterView({ clusterId, trustDomain: 'cluster.local', systemNamespace: 'istio-system', serviceScope: policy, log: pino({ level: 'silent' }) });
    const changes: ClusterViewChange[] = [];
    cluster.onChange((change) => changes.push(change));
    return { cluster, changes, globalChanges: () => changes.flatMap((change) => change.globalServices).sort() };
  }

  it('applies the local mesh config to every cluster, with namespace labels of each cluster, and emits the flipped keys', () => {
    const policy = new ServiceScopePolicy();
    const local = view('cluster1', policy);
    const remote = view('cluster2', policy);
    local.cluster.sink.upsert('Namespace', namespace('sample'));
    local.cluster.sink.upsert('Service', service('helloworld', 'sample', { 'istio.io/global': 'true' }));
    local.cluster.sink.upsert('Service', service('other', 'sample'));
    remote.cluster.sink.upsert('Namespace', namespace('sample', { shared: 'true' }));
    remote.cluster.sink.upsert('Service', service('helloworld', 'sample'));
    remote.cluster.sink.upsert('Service', service('other', 'sample'));
    assert.deepEqual([...local.cluster.globalServices()], [key('helloworld', 'sample')]);
    assert.deepEqual([...remote.cluster.globalServices()], []);
    local.changes.length = 0;
    remote.changes.length = 0;

    policy.set([{ namespaceSelector: { matchLabels: { shared: 'true' } }, scope: 'GLOBAL' }]);
    assert.deepEqual(local.globalChanges(), [], 'cluster1 has no shared namespace; the label still decides there');
    assert.deepEqual(remote.globalChanges(), [key('helloworld', 'sample'), key('other', 'sample')]);
    assert.ok(remote.changes.every((change) => !change.reset && change.addresses.upserted.length === 0));

    remote.changes.length = 0;
    remote.cluster.sink.upsert('Namespace', namespace('sample'));
    assert.deepEqual(remote.globalChanges(), [key('helloworld', 'sample'), key('other', 'sample')], 'unlabelling the namespace makes both local again');
    assert.deepEqual([...remote.cluster.globalServices()], []);

    local.changes.length = 0;
    policy.set([{ servicesSelector: { matchLabels: { app: 'helloworld' } }, scope: 'LOCAL' }]);
    assert.deepEqual(local.globalChanges(), [], 'the service has no app label');
    policy.set([{ scope: 'LOCAL' }]);
    assert.deepEqual(local.globalChanges(), [key('helloworld', 'sample')], 'LOCAL overrides the label');
    assert.deepEqual([...local.cluster.globalServices()], []);

    remote.cluster.close();
    remote.changes.length = 0;
    policy.set([{ scope: 'GLOBAL' }]);
    assert.deepEqual(remote.changes, [], 'a closed view no longer follows the mesh config');
    assert.equal(local.cluster.globalServices().size, 2);
  });
});

describe('install values: meshConfig.serviceScopeConfigs', () => {
  const problemsOf = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof ValuesError, String(err));
      return err.problems.join('\n');
    }
    return assert.fail('expected a ValuesError');
  };
  const fromText = (text: string, source = 'values.yaml') => resolveValues([parseValuesText(text, source)]);
  const istioSnippet = (indent: string) =>
    ['serviceScopeConfigs:', '  - servicesSelector:', '      matchExpressions:', '        - key: istio.io/global', '          operator: Exists', '    scope: GLOBAL']
      .map((line) => indent + line)
      .join('\n');

  it("accepts Istio's Helm values, an IstioOperator (spec.meshConfig or spec.values.meshConfig) and ambit's own key", () => {
    for (const text of [
      `meshConfig:\n${istioSnippet('  ')}\n`,
      `apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  meshConfig:\n${istioSnippet('    ')}\n`,
      `apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  values:\n    meshConfig:\n${istioSnippet('      ')}\n`,
    ]) {
      const { values, notes } = fromText(text);
      assert.deepEqual(values.meshConfig.serviceScopeConfigs, ISTIO_TEST_CONFIG, text);
      assert.deepEqual(notes, []);
    }
    assert.deepEqual(fromText('meshConfig:\n  trustDomain: corp.local\n').values.meshConfig.serviceScopeConfigs, [], 'default: none');
  });

  it('replaces the whole list in a later layer', () => {
    const { values } = resolveValues([
      parseValuesText(`meshConfig:\n${istioSnippet('  ')}\n`, 'a.yaml'),
      parseValuesText('meshConfig:\n  serviceScopeConfigs:\n    - scope: LOCAL\n', 'b.yaml'),
    ]);
    assert.deepEqual(values.meshConfig.serviceScopeConfigs, [{ scope: 'LOCAL' }]);
  });

  it('renders ConfigMap istio with the mesh key, which the control plane reads back', () => {
    const { values } = fromText(`meshConfig:\n${istioSnippet('  ')}\n`);
    const rendered = renderManifests(values).find((object) => object.kind === 'ConfigMap' && object.metadata?.name === 'istio') as V1ConfigMap | undefined;
    assert.ok(rendered);
    assert.equal(rendered.metadata?.namespace, 'istio-system');
    assert.deepEqual(parseMeshConfig(rendered.data!.mesh!).serviceScopeConfigs, ISTIO_TEST_CONFIG);
    const plain = renderManifests(fromText('{}').values).find((object) => object.kind === 'ConfigMap') as V1ConfigMap;
    assert.deepEqual(parseMeshConfig(plain.data!.mesh!).serviceScopeConfigs, []);
  });

  it('rejects bad entries, naming the field as written', () => {
    assert.equal(
      problemsOf(() => fromText('meshConfig:\n  serviceScopeConfigs:\n    - scope: global\n')),
      'values.yaml: meshConfig.serviceScopeConfigs[0].scope: expected LOCAL or GLOBAL, got "global"',
    );
    assert.equal(
      problemsOf(() => fromText('kind: IstioOperator\nspec:\n  meshConfig:\n    serviceScopeConfigs:\n      - scope: GLOBAL\n      - serviceSelector: {}\n')),
      'values.yaml: spec.meshConfig.serviceScopeConfigs[1].serviceSelector: unknown key (did you mean "servicesSelector"?); expected one of: namespaceSelector, servicesSelector, scope',
    );
    const problems = problemsOf(() =>
      fromText('meshConfig:\n  serviceScopeConfigs:\n    - servicesSelector:\n        matchExpressions:\n          - {key: a, operator: Is}\n          - {key: b, operator: Exists, values: [x]}\n      scope: GLOBAL\n'),
    );
    assert.match(problems, /meshConfig\.serviceScopeConfigs\[0\]\.servicesSelector\.matchExpressions\[0\]\.operator: expected one of In, NotIn, Exists, DoesNotExist, got "Is"/);
    assert.match(problems, /meshConfig\.serviceScopeConfigs\[0\]\.servicesSelector\.matchExpressions\[1\]\.values: operator Exists takes no values/);
    assert.match(problemsOf(() => fromText('meshConfig:\n  serviceScopeConfigs: GLOBAL\n')), /meshConfig\.serviceScopeConfigs: expected a list of \{namespaceSelector, servicesSelector, scope\}, got "GLOBAL"/);
    assert.match(problemsOf(() => setLayers(['meshConfig.serviceScopeConfigs[0].scope=GLOBAL'])), /list items cannot be set one by one/);
  });

  it('points out a near miss of the key instead of ignoring it silently', () => {
    const { notes } = fromText('meshConfig:\n  serviceScopeConfig: []\n');
    assert.deepEqual(notes, ['values.yaml: meshConfig.serviceScopeConfig: Istio setting with no effect in ambit, ignored (did you mean "serviceScopeConfigs"?)']);
  });
});
