/**
 * The deploy manifests of one cluster: the same objects in the lab and on real clusters, in the
 * order they can be applied (namespace and CRD first, workloads last).
 */
import { gatewayApiCrds } from './objects/crds.js';
import type { KubernetesObject, V1Namespace } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { NETWORK_LABEL } from '../api/resources.js';
import { authorizationPolicyCrd, istioNetworkingCrds } from './objects/crds.js';
import { meta } from './objects/common.js';
import { controlPlaneDeployment, controlPlaneService, meshConfigMap } from './objects/controlplane.js';
import { rbacObjects, serviceAccounts } from './objects/rbac.js';
import { ztunnelDaemonSet } from './objects/ztunnel.js';
import { ingressObjects } from './objects/ingress.js';
import { AMBIT_VERSION, type InstallValues } from './values-schema.js';

export function systemNamespace(values: InstallValues): V1Namespace {
  const metadata = meta(values.systemNamespace);
  if (values.network) metadata.labels![NETWORK_LABEL] = values.network;
  return { apiVersion: 'v1', kind: 'Namespace', metadata };
}

export function renderManifests(values: InstallValues): KubernetesObject[] {
  const namespace = values.systemNamespace;
  return [
    systemNamespace(values),
    authorizationPolicyCrd(),
    ...istioNetworkingCrds(),
    ...serviceAccounts(namespace),
    ...rbacObjects(namespace),
    meshConfigMap(values),
    controlPlaneService(values),
    controlPlaneDeployment(values),
    ztunnelDaemonSet(values),
    ...ingressObjects(values),
  ];
}

/** `kind/name` (with namespace when namespaced) of an object, as kubectl prints it. */
export function describeObject(object: KubernetesObject): string {
  const ns = object.metadata?.namespace;
  return `${object.kind}/${object.metadata?.name}${ns ? ` (namespace ${ns})` : ''}`;
}

export function toYaml(objects: readonly KubernetesObject[], header?: string): string {
  const docs = objects.map((object) => stringify(object, { lineWidth: 0, aliasDuplicateObjects: false }));
  return `${header ? `${header.split('\n').map((line) => `# ${line}`).join('\n')}\n` : ''}${docs.map((doc) => `---\n${doc}`).join('')}`;
}

/** Multi-document YAML of renderManifests, with a comment saying what it was rendered for. */
export function renderYaml(values: InstallValues): string {
  const header = [
    `ambit ${AMBIT_VERSION}: cluster "${values.clusterName}", network "${values.network}", mesh "${values.meshId}", trust domain "${values.trustDomain}"`,
    `apply with: kubectl apply --server-side -f <this file>   (or: ambit install --context <context>)`,
    'The Gateway API CRDs at the end are for clusters that lack them; skip them where Gateway API is installed',
    '(ambit install does that by itself).',
  ].join('\n');
  return toYaml([...renderManifests(values), ...gatewayApiCrds()], header);
}
