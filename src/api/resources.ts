/** Names and type URLs of the workload API resources (DESIGN §3). */
export const ADDRESS_TYPE_URL = 'type.googleapis.com/istio.workload.Address';
export const AUTHORIZATION_TYPE_URL = 'type.googleapis.com/istio.security.Authorization';

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const DEFAULT_SERVICE_ACCOUNT = 'default';
export const DEFAULT_SYSTEM_NAMESPACE = 'istio-system';

export const HBONE_PORT = 15008;
export const OUTBOUND_CAPTURE_PORT = 15001;
export const INBOUND_PLAINTEXT_PORT = 15006;
export const DNS_PROXY_PORT = 15053;
export const ADMIN_PORT = 15000;
export const METRICS_PORT = 15020;
export const READINESS_PORT = 15021;
export const CONTROL_PLANE_PORT = 15012;

/** Resource name of a pod workload: `<cluster>//Pod/<namespace>/<name>`. */
export function podWorkloadUid(cluster: string, namespace: string, name: string): string {
  return `${cluster}//Pod/${namespace}/${name}`;
}

/** Resource name of a service: `<namespace>/<hostname>`. */
export function serviceResourceName(namespace: string, hostname: string): string {
  return `${namespace}/${hostname}`;
}

export function serviceHostname(name: string, namespace: string, domainSuffix = 'cluster.local'): string {
  return `${name}.${namespace}.svc.${domainSuffix}`;
}

/** Resource name of an authorization policy: `<namespace>/<name>`. */
export function authorizationResourceName(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** Labels and annotations ambit honours, with Istio's names. */
export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
export const DATAPLANE_MODE_AMBIENT = 'ambient';
export const DATAPLANE_MODE_NONE = 'none';
export const NETWORK_LABEL = 'topology.istio.io/network';
export const REGION_LABEL = 'topology.kubernetes.io/region';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const SUBZONE_LABEL = 'topology.istio.io/subzone';
