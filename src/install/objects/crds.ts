import type { KubernetesObject } from '@kubernetes/client-node';
import {
  API_APPROVED_ANNOTATION,
  AUTHORIZATION_POLICY_CRD,
  GATEWAY_API_APPROVAL,
  GATEWAY_API_GROUP,
  GATEWAY_CLASS_CRD,
  GATEWAY_CRD,
  GRPC_ROUTE_CRD,
  HTTP_ROUTE_CRD,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  PART_OF_LABEL,
  PART_OF_VALUE,
} from '../../api/names.js';

/** Typed as a plain object: client-node's CRD model renames `x-kubernetes-*` fields. */
export type CrdObject = KubernetesObject & { spec: unknown };

interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  description?: string;
  priority?: number;
}

/**
 * Spec and status are kept as written (preserve-unknown-fields): the control plane validates
 * them and reports problems per object in its status, so one bad object never blocks the API
 * server from storing others.
 */
const PRESERVING_SCHEMA = {
  openAPIV3Schema: {
    type: 'object',
    properties: {
      spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
      status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
    },
  },
};

/** `storage` is the first version; every version is served with the same schema and a status subresource. */
function versions(names: string[], columns: PrinterColumn[]) {
  return names.map((name, index) => ({
    name,
    served: true,
    storage: index === 0,
    schema: PRESERVING_SCHEMA,
    subresources: { status: {} },
    additionalPrinterColumns: columns,
  }));
}

const AGE_COLUMN: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

/** `security.istio.io` AuthorizationPolicy, served as v1 (stored) and v1beta1 as Istio serves it. */
export function authorizationPolicyCrd(): CrdObject {
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
      versions: versions(['v1', 'v1beta1'], [{ name: 'Action', type: 'string', description: 'The operation to take.', jsonPath: '.spec.action' }, AGE_COLUMN]),
    },
  };
}

/** The `networking.istio.io` versions Istio serves: v1 stored, v1beta1 and v1alpha3 served (same schema). */
const ISTIO_NETWORKING_VERSIONS = ['v1', 'v1beta1', 'v1alpha3'];

function istioNetworkingCrd(kind: string, plural: string, shortName: string, columns: PrinterColumn[]): CrdObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.networking.istio.io`, labels: { [PART_OF_LABEL]: PART_OF_VALUE } },
    spec: {
      group: 'networking.istio.io',
      names: {
        kind,
        listKind: `${kind}List`,
        plural,
        singular: kind.toLowerCase(),
        shortNames: [shortName],
        categories: ['istio-io', 'networking-istio-io'],
      },
      scope: 'Namespaced',
      versions: versions(ISTIO_NETWORKING_VERSIONS, [...columns, AGE_COLUMN]),
    },
  };
}

/** `networking.istio.io` Gateway, VirtualService, DestinationRule and ServiceEntry, with Istio's printer columns. */
export function istioNetworkingCrds(): CrdObject[] {
  return [
    istioNetworkingCrd('Gateway', 'gateways', 'gw', []),
    istioNetworkingCrd('VirtualService', 'virtualservices', 'vs', [
      { name: 'Gateways', type: 'string', description: 'The names of gateways and sidecars that should apply these routes', jsonPath: '.spec.gateways' },
      { name: 'Hosts', type: 'string', description: 'The destination hosts to which traffic is being sent', jsonPath: '.spec.hosts' },
    ]),
    istioNetworkingCrd('DestinationRule', 'destinationrules', 'dr', [
      { name: 'Host', type: 'string', description: 'The name of a service from the service registry', jsonPath: '.spec.host' },
    ]),
    istioNetworkingCrd('ServiceEntry', 'serviceentries', 'se', [
      { name: 'Hosts', type: 'string', description: 'The hosts associated with the ServiceEntry', jsonPath: '.spec.hosts' },
      { name: 'Location', type: 'string', description: 'Whether the service is external to the mesh or part of the mesh (MESH_EXTERNAL or MESH_INTERNAL)', jsonPath: '.spec.location' },
      { name: 'Resolution', type: 'string', description: 'Service resolution mode for the hosts (NONE, STATIC, or DNS)', jsonPath: '.spec.resolution' },
    ]),
  ];
}

function gatewayApiMetadata(name: string) {
  return {
    name,
    labels: { [PART_OF_LABEL]: PART_OF_VALUE, [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
    annotations: { [API_APPROVED_ANNOTATION]: GATEWAY_API_APPROVAL },
  };
}

/** Gateway API `Gateway` (v1 stored, v1beta1 served), with the upstream CRD's names and columns. */
export function gatewayCrd(): CrdObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: gatewayApiMetadata(GATEWAY_CRD),
    spec: {
      group: GATEWAY_API_GROUP,
      names: { kind: 'Gateway', listKind: 'GatewayList', plural: 'gateways', singular: 'gateway', shortNames: ['gtw'], categories: ['gateway-api'] },
      scope: 'Namespaced',
      versions: versions(
        ['v1', 'v1beta1'],
        [
          { name: 'Class', type: 'string', jsonPath: '.spec.gatewayClassName' },
          { name: 'Address', type: 'string', jsonPath: '.status.addresses[*].value' },
          { name: 'Programmed', type: 'string', jsonPath: '.status.conditions[?(@.type=="Programmed")].status' },
          AGE_COLUMN,
        ],
      ),
    },
  };
}

/** Gateway API `GatewayClass` (cluster-scoped; v1 stored, v1beta1 served). */
export function gatewayClassCrd(): CrdObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: gatewayApiMetadata(GATEWAY_CLASS_CRD),
    spec: {
      group: GATEWAY_API_GROUP,
      names: { kind: 'GatewayClass', listKind: 'GatewayClassList', plural: 'gatewayclasses', singular: 'gatewayclass', shortNames: ['gc'], categories: ['gateway-api'] },
      scope: 'Cluster',
      versions: versions(
        ['v1', 'v1beta1'],
        [
          { name: 'Controller', type: 'string', jsonPath: '.spec.controllerName' },
          { name: 'Accepted', type: 'string', jsonPath: '.status.conditions[?(@.type=="Accepted")].status' },
          AGE_COLUMN,
          { name: 'Description', type: 'string', jsonPath: '.spec.description', priority: 1 },
        ],
      ),
    },
  };
}

/** Gateway API `HTTPRoute` (v1 stored, v1beta1 served). */
export function httpRouteCrd(): CrdObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: gatewayApiMetadata(HTTP_ROUTE_CRD),
    spec: {
      group: GATEWAY_API_GROUP,
      names: { kind: 'HTTPRoute', listKind: 'HTTPRouteList', plural: 'httproutes', singular: 'httproute', categories: ['gateway-api'] },
      scope: 'Namespaced',
      versions: versions(['v1', 'v1beta1'], [{ name: 'Hostnames', type: 'string', jsonPath: '.spec.hostnames' }, AGE_COLUMN]),
    },
  };
}

/** Gateway API `GRPCRoute` (v1). */
export function grpcRouteCrd(): CrdObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: gatewayApiMetadata(GRPC_ROUTE_CRD),
    spec: {
      group: GATEWAY_API_GROUP,
      names: { kind: 'GRPCRoute', listKind: 'GRPCRouteList', plural: 'grpcroutes', singular: 'grpcroute', categories: ['gateway-api'] },
      scope: 'Namespaced',
      versions: versions(['v1'], [{ name: 'Hostnames', type: 'string', jsonPath: '.spec.hostnames' }, AGE_COLUMN]),
    },
  };
}

/**
 * The Gateway API CRDs, kept apart from the other manifests: the installer applies each only if
 * it is absent or already ambit's (see install.ts), since clusters often carry the upstream ones.
 */
export function gatewayApiCrds(): CrdObject[] {
  return [gatewayClassCrd(), gatewayCrd(), httpRouteCrd(), grpcRouteCrd()];
}
