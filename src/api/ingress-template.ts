/**
 * The pod template of an ingress gateway (`ambit ingress`) and of a waypoint (`ambit waypoint-proxy`), shared by the installer (the
 * `istio-ingressgateway` Deployment) and the control plane (Deployments `<name>-istio` for Gateway
 * API Gateways of class istio).
 */
import type { V1Container, V1PodTemplateSpec, V1ResourceRequirements, V1ServicePort } from '@kubernetes/client-node';
import { ENV, ZTUNNEL_METRICS_PATH, ZTUNNEL_METRICS_PORT, ZTUNNEL_READY_PATH, ZTUNNEL_READY_PORT } from './names.js';
import { controlPlaneClientEnv, HTTP_PROXY_NODE_OPTIONS, controlPlaneCredentialVolumes, envValue, podIdentityEnv, readinessProbe, scrapeAnnotations, unprivilegedSecurityContext } from './pod-template.js';
import { DATAPLANE_MODE_LABEL, DATAPLANE_MODE_NONE } from './resources.js';

export const INGRESS_CONTAINER = 'istio-proxy';
/** The port an ingress pod listens on for a Service (or listener) port: below 1024 it is moved up by 8000, as Istio's 80→8080. */
export function ingressTargetPort(port: number): number {
  return port < 1024 ? port + 8000 : port;
}

export interface IngressTemplateInput {
  /** Deployment name: the pod's GATEWAY_NAME, and with its namespace the name of its route resource. */
  name: string;
  serviceAccount: string;
  /** Pod labels (the Deployment's selector among them). */
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  image: string;
  imagePullPolicy: string;
  /** Traffic ports of the pod (container ports), with names. */
  ports: Array<{ name: string; port: number }>;
  mesh: { clusterId: string; network: string; trustDomain: string; systemNamespace: string };
  logLevel?: string;
  resources?: V1ResourceRequirements;
  /** The ambit role the pod runs: `ingress` (default) or `waypoint-proxy` (the same pod shape). */
  role?: 'ingress' | 'waypoint-proxy';
  /** Further environment (a waypoint's SERVICE_ACCOUNT and WAYPOINT_FOR). */
  env?: Record<string, string>;
}

export function ingressPodTemplate(input: IngressTemplateInput): V1PodTemplateSpec {
  const { volumes, volumeMounts } = controlPlaneCredentialVolumes();
  const container: V1Container = {
    name: INGRESS_CONTAINER,
    image: input.image,
    imagePullPolicy: input.imagePullPolicy,
    args: [input.role ?? 'ingress'],
    ports: [
      ...input.ports.map((p) => ({ name: p.name, containerPort: p.port, protocol: 'TCP' })),
      { name: 'http-envoy-prom', containerPort: ZTUNNEL_METRICS_PORT, protocol: 'TCP' },
      { name: 'status-port', containerPort: ZTUNNEL_READY_PORT, protocol: 'TCP' },
    ],
    env: [
      envValue(ENV.gatewayName, input.name),
      ...podIdentityEnv(),
      ...controlPlaneClientEnv(input.mesh),
      ...(input.logLevel ? [envValue(ENV.logLevel, input.logLevel)] : []),
      envValue('NODE_OPTIONS', HTTP_PROXY_NODE_OPTIONS),
      ...Object.entries(input.env ?? {}).map(([name, value]) => envValue(name, value)),
    ],
    readinessProbe: readinessProbe(ZTUNNEL_READY_PATH, ZTUNNEL_READY_PORT),
    resources: input.resources ?? { requests: { cpu: '100m', memory: '128Mi' } },
    securityContext: unprivilegedSecurityContext(),
    volumeMounts,
  };
  return {
    metadata: {
      // The ingress speaks HBONE itself: its own traffic is never captured.
      labels: { ...input.labels, [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE_NONE },
      annotations: { ...input.annotations, ...scrapeAnnotations(ZTUNNEL_METRICS_PORT, ZTUNNEL_METRICS_PATH) },
    },
    spec: {
      serviceAccountName: input.serviceAccount,
      // It shows its projected token to the control plane only; it never calls the API server.
      automountServiceAccountToken: false,
      nodeSelector: { 'kubernetes.io/os': 'linux' },
      terminationGracePeriodSeconds: 30,
      containers: [container],
      volumes,
    },
  };
}

/** The status port every ingress Service carries (readiness, as Istio's `status-port`). */
export const INGRESS_STATUS_SERVICE_PORT: V1ServicePort = { name: 'status-port', port: ZTUNNEL_READY_PORT, targetPort: ZTUNNEL_READY_PORT, protocol: 'TCP' };
