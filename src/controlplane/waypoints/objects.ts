// Reading a waypoint Gateway (class istio-waypoint, or seed 004's istio-mesh) and the ServiceAccount, Deployment and Service made for it.
import type { KubernetesObject, V1Deployment, V1Service, V1ServiceAccount } from '@kubernetes/client-node';

import { ingressPodTemplate } from '../../api/ingress-template.js';
import { GATEWAY_API_GROUP, MANAGED_BY_LABEL } from '../../api/names.js';
import {
  GATEWAY_MANAGED_LABEL,
  HBONE_PORT,
  MESH_GATEWAY_CLASS,
  READINESS_PORT,
  WAYPOINT_FOR,
  WAYPOINT_FOR_LABEL,
  WAYPOINT_GATEWAY_CLASS,
  WAYPOINT_LISTENER_NAME,
  WAYPOINT_MANAGED_VALUE,
  WAYPOINT_SERVICE_ACCOUNT_ANNOTATION,
  type WaypointFor,
} from '../../api/resources.js';
import type { GatewayWorkloadSettings } from '../gateways/render.js';

export const WAYPOINT_CONTROLLER_NAME = 'istio.io/mesh-controller';
export const WAYPOINT_MANAGED_BY = 'ambit-waypoint-controller';
const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

export interface WaypointGateway {
  namespace: string;
  name: string;
  uid: string;
  generation: number;
  className: typeof WAYPOINT_GATEWAY_CLASS | typeof MESH_GATEWAY_CLASS;
  /** Deployment and Service name: the Gateway's, or `<sa>-waypoint-proxy` for istio-mesh. */
  objectName: string;
  /** The ServiceAccount the waypoint runs as (made for istio-waypoint; the workloads' own for istio-mesh). */
  serviceAccount: string;
  waypointFor: WaypointFor;
  /** What is wrong with the Gateway, by field; empty when it is served. */
  problems: string[];
}

const shown = (value: unknown) => (value === undefined ? 'not set' : JSON.stringify(value));
const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function isWaypointClass(className: unknown): className is WaypointGateway['className'] {
  return className === WAYPOINT_GATEWAY_CLASS || className === MESH_GATEWAY_CLASS;
}

/** Reads a Gateway of a waypoint class; every field is checked, nothing trusted. */
export function readWaypointGateway(object: KubernetesObject & { spec?: unknown }): WaypointGateway | undefined {
  const spec = isRecord(object.spec) ? object.spec : {};
  const className = spec.gatewayClassName;
  if (!isWaypointClass(className)) return undefined;
  const metadata = object.metadata ?? {};
  const name = metadata.name ?? '';
  const problems: string[] = [];
  if (!DNS_LABEL.test(name)) problems.push(`metadata.name: ${shown(name)} cannot name the waypoint's objects (a DNS-1123 label)`);
  const forLabel = metadata.labels?.[WAYPOINT_FOR_LABEL] ?? WAYPOINT_FOR.service;
  const waypointFor = (Object.values(WAYPOINT_FOR) as string[]).includes(forLabel) ? (forLabel as WaypointFor) : WAYPOINT_FOR.service;
  if (waypointFor !== forLabel) problems.push(`metadata.labels["${WAYPOINT_FOR_LABEL}"]: ${shown(forLabel)} is not one of ${Object.values(WAYPOINT_FOR).join(', ')}`);
  let serviceAccount = name;
  let objectName = name;
  if (className === MESH_GATEWAY_CLASS) {
    const account = metadata.annotations?.[WAYPOINT_SERVICE_ACCOUNT_ANNOTATION];
    if (!account || !DNS_LABEL.test(account)) problems.push(`metadata.annotations["${WAYPOINT_SERVICE_ACCOUNT_ANNOTATION}"]: ${shown(account)}: an istio-mesh waypoint names the service account it serves`);
    else {
      serviceAccount = account;
      objectName = `${account}-waypoint-proxy`;
    }
  } else {
    const listeners = Array.isArray(spec.listeners) ? (spec.listeners as unknown[]) : [];
    const mesh = listeners.find((l) => isRecord(l) && l.protocol === 'HBONE' && l.port === HBONE_PORT);
    if (!mesh) problems.push(`spec.listeners: expected a listener {name: ${WAYPOINT_LISTENER_NAME}, port: ${HBONE_PORT}, protocol: HBONE}, got ${shown(spec.listeners)}`);
  }
  return {
    namespace: metadata.namespace ?? 'default',
    name,
    uid: metadata.uid ?? '',
    generation: typeof metadata.generation === 'number' ? metadata.generation : 0,
    className,
    objectName,
    serviceAccount,
    waypointFor,
    problems,
  };
}

/** The objects of a waypoint: owned by the Gateway; the ServiceAccount only for istio-waypoint. */
export function renderWaypointObjects(gateway: WaypointGateway, settings: GatewayWorkloadSettings, network: string) {
  const labels = { [GATEWAY_NAME_LABEL]: gateway.name, [GATEWAY_MANAGED_LABEL]: WAYPOINT_MANAGED_VALUE, [MANAGED_BY_LABEL]: WAYPOINT_MANAGED_BY };
  const metadata = (name: string) => ({
    name,
    namespace: gateway.namespace,
    labels,
    ownerReferences: [{ apiVersion: `${GATEWAY_API_GROUP}/v1`, kind: 'Gateway', name: gateway.name, uid: gateway.uid, controller: true }],
  });
  const serviceAccount: (V1ServiceAccount & { kind: 'ServiceAccount' }) | undefined =
    gateway.className === WAYPOINT_GATEWAY_CLASS ? { apiVersion: 'v1', kind: 'ServiceAccount', metadata: metadata(gateway.serviceAccount), automountServiceAccountToken: false } : undefined;
  const deployment: V1Deployment & { kind: 'Deployment' } = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metadata(gateway.objectName),
    spec: {
      selector: { matchLabels: { [GATEWAY_NAME_LABEL]: gateway.name } },
      template: ingressPodTemplate({
        name: gateway.name,
        serviceAccount: gateway.serviceAccount,
        labels,
        image: settings.image,
        imagePullPolicy: settings.imagePullPolicy,
        ports: [{ name: 'mesh', port: HBONE_PORT }],
        mesh: { clusterId: settings.clusterId, network, trustDomain: settings.trustDomain, systemNamespace: settings.systemNamespace },
        role: 'waypoint-proxy',
        env: { SERVICE_ACCOUNT: gateway.serviceAccount, WAYPOINT_FOR: gateway.waypointFor },
        ...(settings.logLevel ? { logLevel: settings.logLevel } : {}),
      }),
    },
  };
  const service: V1Service & { kind: 'Service' } = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(gateway.objectName),
    spec: {
      type: 'ClusterIP',
      selector: { [GATEWAY_NAME_LABEL]: gateway.name },
      ports: [
        { name: 'mesh', port: HBONE_PORT, targetPort: HBONE_PORT, protocol: 'TCP' },
        { name: 'status-port', port: READINESS_PORT, targetPort: READINESS_PORT, protocol: 'TCP' },
      ],
    },
  };
  return { serviceAccount, deployment, service };
}
