// The ingress gateway's install objects and the CRDs they need, from profiles and IstioOperator components.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubernetesObject, V1Deployment, V1Service, V1ServiceAccount } from '@kubernetes/client-node';
import { renderManifests } from '../src/install/manifests.js';
import { istioNetworkingCrds } from '../src/install/objects/crds.js';
import { parseValuesText, resolveValues, setLayers, ValuesError } from '../src/install/values.js';

const rendered = (set: string[]) => renderManifests(resolveValues(setLayers(set)).values);
const find = <T extends KubernetesObject>(objects: KubernetesObject[], kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata?.name === name) as T | undefined;

describe('ingress gateway install objects', () => {
  for (const profile of ['ambient', 'default']) {
    it(`--set profile=${profile} creates istio-ingressgateway in istio-system`, () => {
      const objects = rendered([`profile=${profile}`]);
      const sa = find<V1ServiceAccount>(objects, 'ServiceAccount', 'istio-ingressgateway-service-account');
      const deployment = find<V1Deployment>(objects, 'Deployment', 'istio-ingressgateway');
      const service = find<V1Service>(objects, 'Service', 'istio-ingressgateway');
      assert.ok(sa && deployment && service);
      for (const o of [sa, deployment, service]) assert.equal(o.metadata?.namespace, 'istio-system');
      assert.deepEqual(deployment.spec?.selector.matchLabels, { istio: 'ingressgateway', app: 'istio-ingressgateway' });
      const pod = deployment.spec!.template;
      assert.equal(pod.metadata?.labels?.istio, 'ingressgateway');
      assert.equal(pod.metadata?.labels?.app, 'istio-ingressgateway');
      assert.equal(pod.metadata?.labels?.['istio.io/dataplane-mode'], 'none', 'never captured');
      assert.equal(pod.spec?.serviceAccountName, 'istio-ingressgateway-service-account');
      const container = pod.spec!.containers[0]!;
      assert.deepEqual(container.args, ['ingress']);
      assert.equal(container.image, find<V1Deployment>(objects, 'Deployment', 'ambit-controlplane')!.spec!.template.spec!.containers[0]!.image, 'the control plane\'s image');
      assert.equal(container.env?.find((e) => e.name === 'GATEWAY_NAME')?.value, 'istio-ingressgateway');
      assert.ok(container.env?.some((e) => e.name === 'XDS_ADDRESS'));
      assert.deepEqual(container.readinessProbe?.httpGet, { path: '/healthz/ready', port: 15021 });
      assert.deepEqual(
        container.ports?.map((p) => p.containerPort),
        [8080, 8443, 15020, 15021],
      );
      assert.equal(service.spec?.type, 'LoadBalancer');
      assert.deepEqual(service.spec?.selector, { istio: 'ingressgateway', app: 'istio-ingressgateway' });
      const ports = service.spec!.ports!.map((p) => [p.name, p.port, p.targetPort]);
      assert.deepEqual(new Set(ports.map((p) => JSON.stringify(p))), new Set([['status-port', 15021, 15021], ['http2', 80, 8080], ['https', 443, 8443]].map((p) => JSON.stringify(p))));
    });
  }

  it('profile=minimal, no profile, and an IstioOperator that disables it create none', () => {
    const none = (objects: KubernetesObject[]) => assert.ok(!objects.some((o) => o.metadata?.name?.startsWith('istio-ingressgateway')), objects.map((o) => o.metadata?.name).join(','));
    none(rendered(['profile=minimal']));
    none(rendered([]));
    const operator = 'apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  components:\n    ingressGateways:\n    - name: istio-ingressgateway\n      enabled: false\n  profile: ambient\n';
    const values = resolveValues([parseValuesText(operator, 'op.yaml')]).values;
    assert.equal(values.ingressGateway.enabled, false, 'components decide over the profile, in any order');
    none(renderManifests(values));
    const on = resolveValues([parseValuesText('apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  profile: minimal\n  components:\n    ingressGateways: [{name: istio-ingressgateway, enabled: true}]\n', 'op.yaml')]).values;
    assert.equal(on.ingressGateway.enabled, true);
  });

  it('an unknown profile is an error naming it', () => {
    assert.throws(() => resolveValues(setLayers(['profile=ambinet'])), (err: unknown) => err instanceof ValuesError && /profile: unknown profile "ambinet" \(did you mean "ambient"\?\)/.test(err.message));
  });
});

describe('networking.istio.io CRDs', () => {
  it('serve v1 (stored), v1beta1 and v1alpha3 with Istio\'s names and columns', () => {
    type Crd = { metadata: { name: string }; spec: { group: string; names: { kind: string; shortNames: string[] }; versions: Array<{ name: string; served: boolean; storage: boolean; additionalPrinterColumns: Array<{ name: string; jsonPath: string }> }> } };
    const crds = istioNetworkingCrds() as unknown as Crd[];
    assert.deepEqual(crds.map((c) => c.metadata.name), ['gateways.networking.istio.io', 'virtualservices.networking.istio.io', 'destinationrules.networking.istio.io', 'serviceentries.networking.istio.io']);
    assert.deepEqual(crds.map((c) => c.spec.names.shortNames[0]), ['gw', 'vs', 'dr', 'se']);
    for (const crd of crds) {
      assert.equal(crd.spec.group, 'networking.istio.io');
      assert.deepEqual(crd.spec.versions.map((v) => [v.name, v.served, v.storage]), [['v1', true, true], ['v1beta1', true, false], ['v1alpha3', true, false]]);
    }
    const columns = (i: number) => crds[i]!.spec.versions[0]!.additionalPrinterColumns.map((c) => `${c.name}=${c.jsonPath}`);
    assert.deepEqual(columns(1), ['Gateways=.spec.gateways', 'Hosts=.spec.hosts', 'Age=.metadata.creationTimestamp']);
    assert.deepEqual(columns(2), ['Host=.spec.host', 'Age=.metadata.creationTimestamp']);
    assert.deepEqual(columns(3), ['Hosts=.spec.hosts', 'Location=.spec.location', 'Resolution=.spec.resolution', 'Age=.metadata.creationTimestamp']);
    assert.ok(renderManifests(resolveValues([]).values).some((o) => o.metadata?.name === 'virtualservices.networking.istio.io'), 'always installed');
  });
});
