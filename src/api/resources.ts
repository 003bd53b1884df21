/** Names and type URLs of the workload API resources (DESIGN §3). */
export const ADDRESS_TYPE_URL = 'type.googleapis.com/istio.workload.Address';
export const AUTHORIZATION_TYPE_URL = 'type.googleapis.com/istio.security.Authorization';
/** ambit's own: one waypoint's served services and L7 policies (proto/ambit/waypoint), named `<ns>/<gateway>`. */
export const WAYPOINT_TYPE_URL = 'type.googleapis.com/ambit.waypoint.Waypoint';
/** ambit's own: the HTTP routes of one ingress (proto/ambit/route), named `<ns>/<ingress deployment>`. */
export const ROUTE_TYPE_URL = 'type.googleapis.com/ambit.route.RouteConfig';

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

/** Resource name of a waypoint's configuration: `<namespace>/<gateway name>`. */
export function waypointResourceName(namespace: string, gateway: string): string {
  return `${namespace}/${gateway}`;
}

/** Resource name of an ingress's routes: `<namespace>/<deployment name>`. */
export function routeResourceName(namespace: string, deployment: string): string {
  return `${namespace}/${deployment}`;
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

/** Waypoints and enrolment in them (DESIGN §7). */
export const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint';
/** Seed 004's older waypoint class: a waypoint for the workloads of one service account. */
export const MESH_GATEWAY_CLASS = 'istio-mesh';
export const WAYPOINT_SERVICE_ACCOUNT_ANNOTATION = 'istio.io/service-account';
export const USE_WAYPOINT_LABEL = 'istio.io/use-waypoint';
export const USE_WAYPOINT_NAMESPACE_LABEL = 'istio.io/use-waypoint-namespace';
export const WAYPOINT_FOR_LABEL = 'istio.io/waypoint-for';
export const WAYPOINT_FOR = { service: 'service', workload: 'workload', all: 'all', none: 'none' } as const;
export type WaypointFor = (typeof WAYPOINT_FOR)[keyof typeof WAYPOINT_FOR];
/** `istio.io/use-waypoint: none` opts a Service or Pod out of its namespace's waypoint. */
export const USE_WAYPOINT_NONE = 'none';
/** Label Istio puts on waypoint pods and Services. */
export const GATEWAY_MANAGED_LABEL = 'gateway.istio.io/managed';
export const WAYPOINT_MANAGED_VALUE = 'istio.io-mesh-controller';
/** The waypoint listener (port 15008, protocol HBONE, name mesh). */
export const WAYPOINT_LISTENER_NAME = 'mesh';
/** Name of the waypoint `istioctl waypoint apply` (and `ambit waypoint apply`) makes when none is given. */
export const DEFAULT_WAYPOINT_NAME = 'waypoint';
/** Istio's control-plane revision label; ambit has no revisions and only shows it. */
export const REVISION_LABEL = 'istio.io/rev';

/** A DNS-1123 label (RFC 1123): what names a namespace, Service or Deployment. */
export function isDnsLabel(name: string): boolean {
  return /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name);
}

/** The ingress gateway install creates (DESIGN §7). */
export const INGRESS_GATEWAY_NAME = 'istio-ingressgateway';
export const INGRESS_SERVICE_ACCOUNT = 'istio-ingressgateway-service-account';
export const INGRESS_LABELS = { istio: 'ingressgateway', app: 'istio-ingressgateway' } as const;
/** Gateway API class whose Gateways get an ingress Deployment/Service `<name>-istio`. */
export const INGRESS_GATEWAY_CLASS = 'istio';
