/**
 * The objects an east-west Gateway gets: a ServiceAccount (its identity), a Deployment running
 * `ambit gateway` with the control plane's image, and a LoadBalancer Service for port 15008. All
 * are owned by the Gateway (deleting it deletes them) and carry a hash of their desired content.
 */
import { createHash } from 'node:crypto';
import type { V1Deployment, V1OwnerReference, V1Service, V1ServiceAccount } from '@kubernetes/client-node';
import { DATAPLANE_MODE_LABEL, DATAPLANE_MODE_NONE, HBONE_PORT, NETWORK_LABEL } from '../../api/resources.js';
import {
  ENV,
  ZTUNNEL_METRICS_PATH,
  ZTUNNEL_METRICS_PORT,
  ZTUNNEL_READY_PATH,
  ZTUNNEL_READY_PORT,
} from '../../api/names.js';
import {
  controlPlaneClientEnv,
  controlPlaneCredentialVolumes,
  envValue,
  podIdentityEnv,
  readinessProbe,
  scrapeAnnotations,
  unprivilegedSecurityContext,
} from '../../api/pod-template.js';
import {
  DESIRED_HASH_ANNOTATION,
  EAST_WEST_CONTROLLER_NAME,
  EAST_WEST_GATEWAY_CLASS,
  GATEWAY_API_GROUP_VERSION,
  GATEWAY_CONTAINER,
  GATEWAY_NAME_LABEL,
  HBONE_PORT_NAME,
  MANAGED_BY_CONTROLLER,
  MANAGED_BY_LABEL,
  METRICS_PORT_NAME,
  STATUS_PORT_NAME,
} from './constants.js';
import type { GatewayReading } from './gateway.js';

/** What every gateway Deployment shares: the cluster's identity and the control plane's image. */
export interface GatewayWorkloadSettings {
  clusterId: string;
  trustDomain: string;
  systemNamespace: string;
  image: string;
  imagePullPolicy: string;
  /** AMBIT_LOG_LEVEL of the gateway pods; unset leaves the program's default. */
  logLevel?: string;
}

export interface GatewayResources {
  serviceAccount: V1ServiceAccount & { kind: 'ServiceAccount' };
  deployment: V1Deployment & { kind: 'Deployment' };
  service: V1Service & { kind: 'Service' };
}

export function ownerReference(reading: GatewayReading): V1OwnerReference {
  return { apiVersion: GATEWAY_API_GROUP_VERSION, kind: 'Gateway', name: reading.name, uid: reading.uid, controller: true };
}

/** JSON with object keys sorted, so that equal content always hashes alike. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function withDesiredHash<T extends { metadata?: { annotations?: Record<string, string> } }>(object: T): T {
  const hash = createHash('sha256').update(canonicalJson(object)).digest('hex').slice(0, 16);
  object.metadata!.annotations = { ...object.metadata!.annotations, [DESIRED_HASH_ANNOTATION]: hash };
  return object;
}

/** The labels identifying the objects of one Gateway; the controller's own win over infrastructure labels. */
function objectLabels(reading: GatewayReading): Record<string, string> {
  return {
    ...reading.infrastructure.labels,
    ...(reading.networkLabel ? { [NETWORK_LABEL]: reading.networkLabel } : {}),
    [GATEWAY_NAME_LABEL]: reading.name,
    [MANAGED_BY_LABEL]: MANAGED_BY_CONTROLLER,
  };
}

function objectMetadata(reading: GatewayReading) {
  return {
    name: reading.name,
    namespace: reading.namespace,
    labels: objectLabels(reading),
    annotations: { ...reading.infrastructure.annotations },
    ownerReferences: [ownerReference(reading)],
  };
}

export function renderServiceAccount(reading: GatewayReading): GatewayResources['serviceAccount'] {
  // The gateway shows only its projected token, to the control plane; it never calls the API server.
  return withDesiredHash({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: objectMetadata(reading), automountServiceAccountToken: false });
}

export function renderDeployment(reading: GatewayReading, settings: GatewayWorkloadSettings): GatewayResources['deployment'] {
  const { volumes, volumeMounts } = controlPlaneCredentialVolumes();
  return withDesiredHash({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: objectMetadata(reading),
    spec: {
      // No replicas: the Deployment starts with one, and `kubectl scale` or an HPA own the count.
      selector: { matchLabels: { [GATEWAY_NAME_LABEL]: reading.name } },
      template: {
        metadata: {
          labels: {
            ...objectLabels(reading),
            // The gateway carries HBONE itself: its own traffic is never captured, even in an enrolled namespace.
            [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE_NONE,
          },
          annotations: { ...reading.infrastructure.annotations, ...scrapeAnnotations(ZTUNNEL_METRICS_PORT, ZTUNNEL_METRICS_PATH) },
        },
        spec: {
          serviceAccountName: reading.name,
          automountServiceAccountToken: false,
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: GATEWAY_CONTAINER,
              image: settings.image,
              imagePullPolicy: settings.imagePullPolicy,
              args: ['gateway'],
              ports: [
                { name: HBONE_PORT_NAME, containerPort: HBONE_PORT, protocol: 'TCP' },
                { name: METRICS_PORT_NAME, containerPort: ZTUNNEL_METRICS_PORT, protocol: 'TCP' },
                { name: STATUS_PORT_NAME, containerPort: ZTUNNEL_READY_PORT, protocol: 'TCP' },
              ],
              env: [
                envValue(ENV.gatewayName, reading.name),
                ...podIdentityEnv(),
                ...controlPlaneClientEnv({ clusterId: settings.clusterId, network: reading.network, trustDomain: settings.trustDomain, systemNamespace: settings.systemNamespace }),
                ...(settings.logLevel ? [envValue(ENV.logLevel, settings.logLevel)] : []),
              ],
              readinessProbe: readinessProbe(ZTUNNEL_READY_PATH, ZTUNNEL_READY_PORT),
              resources: { requests: { cpu: '100m', memory: '128Mi' } },
              securityContext: unprivilegedSecurityContext(),
              volumeMounts,
            },
          ],
          volumes,
        },
      },
    },
  });
}

export function renderService(reading: GatewayReading): GatewayResources['service'] {
  return withDesiredHash({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: objectMetadata(reading),
    spec: {
      type: 'LoadBalancer',
      selector: { [GATEWAY_NAME_LABEL]: reading.name },
      ports: [
        { name: HBONE_PORT_NAME, port: HBONE_PORT, targetPort: HBONE_PORT, protocol: 'TCP' },
        { name: STATUS_PORT_NAME, port: ZTUNNEL_READY_PORT, targetPort: ZTUNNEL_READY_PORT, protocol: 'TCP' },
      ],
    },
  });
}

export function renderGatewayResources(reading: GatewayReading, settings: GatewayWorkloadSettings): GatewayResources {
  return { serviceAccount: renderServiceAccount(reading), deployment: renderDeployment(reading, settings), service: renderService(reading) };
}

/** GatewayClass istio-east-west, as the control plane creates it when missing. */
export function renderGatewayClass() {
  return {
    apiVersion: GATEWAY_API_GROUP_VERSION,
    kind: 'GatewayClass',
    metadata: { name: EAST_WEST_GATEWAY_CLASS, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_CONTROLLER } },
    // The upstream GatewayClass schema limits the description to 64 characters.
    spec: { controllerName: EAST_WEST_CONTROLLER_NAME, description: 'ambit east-west gateways: HBONE on port 15008 between networks' },
  };
}
