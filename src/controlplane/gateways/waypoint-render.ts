/**
 * The objects of a waypoint Gateway: for istio-waypoint a ServiceAccount, Deployment and Service named
 * like the Gateway; for istio-mesh a Deployment and Service `<sa>-waypoint-proxy` running as the
 * workloads' own ServiceAccount. Pods run `ambit waypoint-proxy`, are never captured
 * (`istio.io/dataplane-mode: none`) and speak HBONE on their pod IP:15008. Owned by the Gateway, hashed.
 */
import type { V1EnvVar } from '@kubernetes/client-node';
import {
  DATAPLANE_MODE_LABEL,
  DATAPLANE_MODE_NONE,
  GATEWAY_MANAGED_LABEL,
  HBONE_PORT,
  WAYPOINT_FOR_LABEL,
  WAYPOINT_MANAGED_VALUE,
  WAYPOINT_SERVICE_ACCOUNT_ANNOTATION,
} from '../../api/resources.js';
import { ENV, ZTUNNEL_METRICS_PATH, ZTUNNEL_METRICS_PORT, ZTUNNEL_READY_PATH, ZTUNNEL_READY_PORT } from '../../api/names.js';
import {
  controlPlaneClientEnv,
  controlPlaneCredentialVolumes,
  envValue,
  podIdentityEnv,
  readinessProbe,
  scrapeAnnotations,
  unprivilegedSecurityContext,
} from '../../api/pod-template.js';
import { GATEWAY_NAME_LABEL, METRICS_PORT_NAME, STATUS_PORT_NAME } from './constants.js';
import type { GatewayReading, WaypointReading } from './gateway.js';
import type { OwnedObject } from './kube-api.js';
import { objectLabels, ownerReference, withDesiredHash, type GatewayResources, type GatewayWorkloadSettings } from './render.js';

export const WAYPOINT_CONTAINER = 'istio-proxy';
/** Port names as Istio's waypoint Service has them. */
export const WAYPOINT_MESH_PORT_NAME = 'mesh';
/** The role command of the one binary that runs a waypoint (the lead may rename it to `waypoint run`). */
export const WAYPOINT_ARGS = ['waypoint-proxy'];
export const SERVICE_ACCOUNT_ENV = 'SERVICE_ACCOUNT';
export const WAYPOINT_FOR_ENV = 'WAYPOINT_FOR';

function waypointOf(reading: GatewayReading): WaypointReading {
  if (!reading.waypoint) throw new Error(`Gateway ${reading.namespace}/${reading.name} is not a waypoint`);
  return reading.waypoint;
}

function labels(reading: GatewayReading): Record<string, string> {
  return { ...objectLabels(reading), [GATEWAY_MANAGED_LABEL]: WAYPOINT_MANAGED_VALUE };
}

function metadata(reading: GatewayReading, name: string, extra: { labels?: Record<string, string>; annotations?: Record<string, string> } = {}) {
  return {
    name,
    namespace: reading.namespace,
    labels: { ...labels(reading), ...extra.labels },
    annotations: { ...reading.infrastructure.annotations, ...extra.annotations },
    ownerReferences: [ownerReference(reading)],
  };
}

export function renderWaypointServiceAccount(reading: GatewayReading): GatewayResources['serviceAccount'] {
  return withDesiredHash({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: metadata(reading, waypointOf(reading).serviceAccount), automountServiceAccountToken: false });
}

export function renderWaypointDeployment(reading: GatewayReading, settings: GatewayWorkloadSettings): GatewayResources['deployment'] {
  const waypoint = waypointOf(reading);
  const { volumes, volumeMounts } = controlPlaneCredentialVolumes();
  const env: V1EnvVar[] = [
    envValue(ENV.gatewayName, reading.name),
    envValue(SERVICE_ACCOUNT_ENV, waypoint.serviceAccount),
    envValue(WAYPOINT_FOR_ENV, waypoint.for),
    ...podIdentityEnv(),
    ...controlPlaneClientEnv({ clusterId: settings.clusterId, network: reading.network, trustDomain: settings.trustDomain, systemNamespace: settings.systemNamespace }),
    ...(settings.logLevel ? [envValue(ENV.logLevel, settings.logLevel)] : []),
  ];
  return withDesiredHash({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metadata(reading, waypoint.workloadName),
    spec: {
      selector: { matchLabels: { [GATEWAY_NAME_LABEL]: reading.name } },
      template: {
        metadata: {
          labels: { ...labels(reading), [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE_NONE },
          annotations: { ...reading.infrastructure.annotations, ...scrapeAnnotations(ZTUNNEL_METRICS_PORT, ZTUNNEL_METRICS_PATH) },
        },
        spec: {
          serviceAccountName: waypoint.serviceAccount,
          automountServiceAccountToken: false,
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: WAYPOINT_CONTAINER,
              image: settings.image,
              imagePullPolicy: settings.imagePullPolicy,
              args: WAYPOINT_ARGS,
              ports: [
                { name: WAYPOINT_MESH_PORT_NAME, containerPort: HBONE_PORT, protocol: 'TCP' },
                { name: METRICS_PORT_NAME, containerPort: ZTUNNEL_METRICS_PORT, protocol: 'TCP' },
                { name: STATUS_PORT_NAME, containerPort: ZTUNNEL_READY_PORT, protocol: 'TCP' },
              ],
              env,
              readinessProbe: readinessProbe(ZTUNNEL_READY_PATH, ZTUNNEL_READY_PORT),
              resources: { requests: { cpu: '50m', memory: '64Mi' } },
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

/**
 * The Service carries what the registry needs to know of the waypoint without reading Gateways:
 * `gateway.istio.io/managed`, the Gateway's name, `istio.io/waypoint-for` and (istio-mesh) the
 * service account annotation.
 */
export function renderWaypointService(reading: GatewayReading): GatewayResources['service'] {
  const waypoint = waypointOf(reading);
  return withDesiredHash({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(reading, waypoint.workloadName, {
      labels: { [WAYPOINT_FOR_LABEL]: waypoint.for },
      annotations: waypoint.ownsServiceAccount ? {} : { [WAYPOINT_SERVICE_ACCOUNT_ANNOTATION]: waypoint.serviceAccount },
    }),
    spec: {
      type: 'ClusterIP',
      selector: { [GATEWAY_NAME_LABEL]: reading.name },
      ports: [
        { name: WAYPOINT_MESH_PORT_NAME, port: HBONE_PORT, targetPort: HBONE_PORT, protocol: 'TCP', appProtocol: 'all' },
        { name: STATUS_PORT_NAME, port: ZTUNNEL_READY_PORT, targetPort: ZTUNNEL_READY_PORT, protocol: 'TCP' },
      ],
    },
  });
}

/** In apply order; istio-mesh makes no ServiceAccount (its pods run as the workloads' own). */
export function renderWaypointResources(reading: GatewayReading, settings: GatewayWorkloadSettings): OwnedObject[] {
  const objects: OwnedObject[] = [];
  if (waypointOf(reading).ownsServiceAccount) objects.push(renderWaypointServiceAccount(reading));
  objects.push(renderWaypointDeployment(reading, settings), renderWaypointService(reading));
  return objects;
}
