import type { V1ClusterRole, V1ClusterRoleBinding, V1PolicyRule, V1Role, V1RoleBinding, V1ServiceAccount } from '@kubernetes/client-node';
import { CONTROL_PLANE_NAME, READER_CLUSTER_ROLE, READER_SERVICE_ACCOUNT, ZTUNNEL_NAME } from '../../api/names.js';
import { meta } from './common.js';

const READ = ['get', 'list', 'watch'];
const WRITE = ['create', 'update', 'patch'];
const rule = (apiGroups: string[], resources: string[], verbs: string[]): V1PolicyRule => ({ apiGroups, resources, verbs });

export function serviceAccounts(namespace: string): V1ServiceAccount[] {
  const account = (name: string, automount?: boolean): V1ServiceAccount => ({
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: meta(name, namespace),
    ...(automount === undefined ? {} : { automountServiceAccountToken: automount }),
  });
  return [
    account(CONTROL_PLANE_NAME),
    // ztunnel shows its projected token (audience istio-ca) only to the control plane; its API token
    // (mounted by the DaemonSet) can only read ztunnel's own DaemonSet, see ZTUNNEL_RULES.
    account(ZTUNNEL_NAME, false),
    account(READER_SERVICE_ACCOUNT),
  ];
}

/** Everything the control plane does cluster-wide: discovery, the CA's token checks, policies, Gateways. */
export const CONTROL_PLANE_RULES: V1PolicyRule[] = [
  rule([''], ['namespaces', 'nodes', 'pods', 'services', 'endpoints', 'serviceaccounts', 'secrets', 'configmaps'], READ),
  // The mesh root certificate (istio-ca-root-cert) in every namespace.
  rule([''], ['configmaps'], WRITE),
  // The ServiceAccount, Service and Deployment of each east-west Gateway, in the Gateway's namespace.
  rule([''], ['services', 'serviceaccounts'], [...WRITE, 'delete']),
  rule(['discovery.k8s.io'], ['endpointslices'], READ),
  rule(['authentication.k8s.io'], ['tokenreviews'], ['create']),
  rule(['security.istio.io'], ['authorizationpolicies'], READ),
  rule(['security.istio.io'], ['authorizationpolicies/status'], ['get', 'update', 'patch']),
  rule(['gateway.networking.k8s.io'], ['gateways', 'gatewayclasses', 'httproutes', 'grpcroutes'], READ),
  rule(['networking.istio.io'], ['gateways', 'virtualservices', 'destinationrules', 'serviceentries'], READ),
  // Route status: which routes an ingress accepted, and why not.
  rule(['gateway.networking.k8s.io'], ['httproutes/status', 'grpcroutes/status'], ['get', 'update', 'patch']),
  rule(['networking.istio.io'], ['gateways/status', 'virtualservices/status'], ['get', 'update', 'patch']),
  // GatewayClass istio-east-west, created when missing.
  rule(['gateway.networking.k8s.io'], ['gatewayclasses'], ['create']),
  rule(['gateway.networking.k8s.io'], ['gateways/status', 'gatewayclasses/status'], ['get', 'update', 'patch']),
  rule(['apps'], ['deployments'], [...READ, ...WRITE, 'delete']),
];

/** In the system namespace only: the self-signed CA secret, and leases for leader election among replicas. */
export const CONTROL_PLANE_NAMESPACED_RULES: V1PolicyRule[] = [
  rule([''], ['secrets'], WRITE),
  rule(['coordination.k8s.io'], ['leases'], [...READ, ...WRITE]),
];

/**
 * What a remote cluster's control plane needs here (through a remote secret made from
 * istio-reader-service-account's token): read the mesh's resources, and check this cluster's
 * tokens for ztunnels that it serves.
 */
export const READER_RULES: V1PolicyRule[] = [
  rule([''], ['namespaces', 'nodes', 'pods', 'services', 'endpoints', 'serviceaccounts'], READ),
  rule(['discovery.k8s.io'], ['endpointslices'], READ),
  rule(['security.istio.io'], ['authorizationpolicies'], READ),
  rule(['gateway.networking.k8s.io'], ['gateways', 'gatewayclasses'], READ),
  rule(['authentication.k8s.io'], ['tokenreviews'], ['create']),
];

/**
 * ztunnel learns the mesh from the control plane over xDS; from the API server it reads only its own
 * DaemonSet, on shutdown, to tell a restart (capture stays, traffic fails closed until the next
 * ztunnel) from an uninstall (capture is removed).
 */
export const ZTUNNEL_RULES: V1PolicyRule[] = [{ apiGroups: ['apps'], resources: ['daemonsets'], resourceNames: [ZTUNNEL_NAME], verbs: ['get'] }];

export function rbacObjects(namespace: string): Array<V1ClusterRole | V1ClusterRoleBinding | V1Role | V1RoleBinding> {
  const subject = (name: string) => [{ kind: 'ServiceAccount', name, namespace }];
  return [
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: meta(CONTROL_PLANE_NAME), rules: CONTROL_PLANE_RULES },
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: meta(READER_CLUSTER_ROLE), rules: READER_RULES },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: meta(CONTROL_PLANE_NAME),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: CONTROL_PLANE_NAME },
      subjects: subject(CONTROL_PLANE_NAME),
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: meta(READER_CLUSTER_ROLE),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: READER_CLUSTER_ROLE },
      subjects: subject(READER_SERVICE_ACCOUNT),
    },
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: meta(CONTROL_PLANE_NAME, namespace), rules: CONTROL_PLANE_NAMESPACED_RULES },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(CONTROL_PLANE_NAME, namespace),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: CONTROL_PLANE_NAME },
      subjects: subject(CONTROL_PLANE_NAME),
    },
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: meta(ZTUNNEL_NAME, namespace), rules: ZTUNNEL_RULES },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(ZTUNNEL_NAME, namespace),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: ZTUNNEL_NAME },
      subjects: subject(ZTUNNEL_NAME),
    },
  ];
}
