/**
 * Names shared by the deploy manifests and the processes they start: the control plane and
 * ztunnel read their settings from these environment variables and files, and find each other
 * through these Service names and ports.
 */
import { ADMIN_PORT, CONTROL_PLANE_PORT, METRICS_PORT, READINESS_PORT } from './resources.js';

/** Deployment, Service, ServiceAccount and pod label `app` of the control plane. */
export const CONTROL_PLANE_NAME = 'ambit-controlplane';
/** DaemonSet, ServiceAccount and pod label `app` of ztunnel. */
export const ZTUNNEL_NAME = 'ztunnel';
/** Container names inside those pods. */
export const CONTROL_PLANE_CONTAINER = 'controlplane';
export const ZTUNNEL_CONTAINER = 'ztunnel';
/**
 * Service account that remote control planes use to read this cluster (named as Istio names it,
 * so remote-secret recipes written for Istio find it).
 */
export const READER_SERVICE_ACCOUNT = 'istio-reader-service-account';
export const READER_CLUSTER_ROLE = 'ambit-reader';

/** Label every installed object carries, so `kubectl get -l` and uninstall can find them. */
export const PART_OF_LABEL = 'app.kubernetes.io/part-of';
export const PART_OF_VALUE = 'ambit';

export const AUTHORIZATION_POLICY_CRD = 'authorizationpolicies.security.istio.io';

/**
 * Gateway API CRDs (Gateway, GatewayClass). Clusters often have them already, installed by
 * someone else: ambit installs or updates them only when absent or labelled as its own
 * (MANAGED_BY_LABEL=MANAGED_BY_VALUE), and never overwrites another owner's.
 */
export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';
export const GATEWAY_CRD = `gateways.${GATEWAY_API_GROUP}`;
export const GATEWAY_CLASS_CRD = `gatewayclasses.${GATEWAY_API_GROUP}`;
export const HTTP_ROUTE_CRD = `httproutes.${GATEWAY_API_GROUP}`;
export const GRPC_ROUTE_CRD = `grpcroutes.${GATEWAY_API_GROUP}`;
/** kube-apiserver refuses CRDs in `*.k8s.io` groups without this annotation; the value is the Gateway API's approval. */
export const API_APPROVED_ANNOTATION = 'api-approved.kubernetes.io';
export const GATEWAY_API_APPROVAL = 'https://github.com/kubernetes-sigs/gateway-api/pull/2466';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'ambit';

/** Ports of the control plane (xDS + CA over TLS; metrics; readiness). */
export const XDS_PORT = CONTROL_PLANE_PORT;
export const CONTROL_PLANE_MONITORING_PORT = 15014;
export const CONTROL_PLANE_READY_PORT = 8080;
export const CONTROL_PLANE_READY_PATH = '/ready';
export const CONTROL_PLANE_METRICS_PATH = '/metrics';

/** ztunnel's admin (localhost only), metrics and readiness ports, as in Istio. */
export const ZTUNNEL_ADMIN_PORT = ADMIN_PORT;
export const ZTUNNEL_METRICS_PORT = METRICS_PORT;
export const ZTUNNEL_READY_PORT = READINESS_PORT;
export const ZTUNNEL_READY_PATH = '/healthz/ready';
export const ZTUNNEL_METRICS_PATH = '/stats/prometheus';
export const ZTUNNEL_CONFIG_DUMP_PATH = '/config_dump';

/** Named ports of the control plane Service and containers. */
export const PORT_NAMES = {
  xds: 'grpc-xds',
  monitoring: 'http-monitoring',
  ready: 'http-ready',
  metrics: 'http-metrics',
} as const;

/**
 * The service-account token ztunnel presents to the control plane (xDS and CA), with the audience
 * Istio uses. Mounted as `<TOKEN_DIR>/<TOKEN_FILE>`.
 */
export const TOKEN_AUDIENCE = 'istio-ca';
export const TOKEN_EXPIRATION_SECONDS = 43200;
export const TOKEN_DIR = '/var/run/secrets/tokens';
export const TOKEN_FILE = 'istio-token';
export const TOKEN_PATH = `${TOKEN_DIR}/${TOKEN_FILE}`;
/** Pod volume holding that token, in ztunnel and gateway pods. */
export const TOKEN_VOLUME = 'istio-token';

/**
 * The mesh root certificate: the control plane publishes it as ConfigMap `istio-ca-root-cert`
 * (key `root-cert.pem`) in every namespace, as istiod does; ztunnel mounts it to verify the control plane.
 */
export const ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert';
export const ROOT_CERT_KEY = 'root-cert.pem';
export const ROOT_CERT_DIR = '/var/run/secrets/istio';
export const ROOT_CERT_PATH = `${ROOT_CERT_DIR}/${ROOT_CERT_KEY}`;
/** Pod volume holding the root certificate, in ztunnel and gateway pods. */
export const ROOT_CERT_VOLUME = 'istiod-ca-cert';

/** Plug-in CA secret (user-provided), and the secret holding the self-signed root otherwise (Istio's names). */
export const PLUGIN_CA_SECRET = 'cacerts';
export const SELF_SIGNED_CA_SECRET = 'istio-ca-secret';

/** Environment variables the manifests set; the processes read exactly these. */
export const ENV = {
  clusterId: 'CLUSTER_ID',
  network: 'NETWORK',
  meshId: 'MESH_ID',
  trustDomain: 'TRUST_DOMAIN',
  systemNamespace: 'SYSTEM_NAMESPACE',
  podName: 'POD_NAME',
  podNamespace: 'POD_NAMESPACE',
  nodeName: 'NODE_NAME',
  instanceIp: 'INSTANCE_IP',
  /** Default lifetime of workload certificates, a duration such as `24h` (see duration.ts). */
  workloadCertTtl: 'WORKLOAD_CERT_TTL',
  /** Longest lifetime a CSR may ask for, a duration such as `90d`. */
  maxWorkloadCertTtl: 'MAX_WORKLOAD_CERT_TTL',
  /** `host:port` of the control plane's xDS server (ztunnel). */
  xdsAddress: 'XDS_ADDRESS',
  /** Name of the Gateway an east-west gateway pod serves (its namespace is POD_NAMESPACE). */
  gatewayName: 'GATEWAY_NAME',
  /** `host:port` of the control plane's CA (ztunnel). */
  caAddress: 'CA_ADDRESS',
  logLevel: 'AMBIT_LOG_LEVEL',
} as const;

/** `host:port` at which ztunnels reach the control plane of their cluster. */
export function controlPlaneAddress(systemNamespace: string): string {
  return `${CONTROL_PLANE_NAME}.${systemNamespace}.svc:${XDS_PORT}`;
}
