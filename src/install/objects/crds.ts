import type { KubernetesObject } from '@kubernetes/client-node';
import { AUTHORIZATION_POLICY_CRD, PART_OF_LABEL, PART_OF_VALUE } from '../names.js';

/**
 * `security.istio.io` AuthorizationPolicy, served as v1 (stored) and v1beta1 as Istio serves it.
 * The spec is kept as written (preserve-unknown-fields): the control plane validates it and
 * reports problems per policy, so one bad policy never blocks the API server from storing others.
 * Typed as a plain object: client-node's CRD model renames `x-kubernetes-*` fields.
 */
export function authorizationPolicyCrd(): KubernetesObject & { spec: unknown } {
  const schema = {
    openAPIV3Schema: {
      type: 'object',
      properties: {
        spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
        status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
      },
    },
  };
  const version = (name: string, storage: boolean) => ({
    name,
    served: true,
    storage,
    schema,
    subresources: { status: {} },
    additionalPrinterColumns: [
      { name: 'Action', type: 'string', description: 'The operation to take.', jsonPath: '.spec.action' },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  });
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: AUTHORIZATION_POLICY_CRD, labels: { [PART_OF_LABEL]: PART_OF_VALUE } },
    spec: {
      group: 'security.istio.io',
      names: {
        kind: 'AuthorizationPolicy',
        listKind: 'AuthorizationPolicyList',
        plural: 'authorizationpolicies',
        singular: 'authorizationpolicy',
        shortNames: ['ap'],
        categories: ['istio-io', 'security-istio-io'],
      },
      scope: 'Namespaced',
      versions: [version('v1', true), version('v1beta1', false)],
    },
  };
}
