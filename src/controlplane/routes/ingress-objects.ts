/** The ServiceAccount, Deployment and LoadBalancer Service `<name>-istio` of a Gateway API Gateway of class istio. */
import type { V1Deployment, V1Service, V1ServiceAccount } from '@kubernetes/client-node';
import { INGRESS_STATUS_SERVICE_PORT, ingressPodTemplate, ingressTargetPort } from '../../api/ingress-template.js';
import { GATEWAY_API_GROUP, MANAGED_BY_LABEL } from '../../api/names.js';
import type { GatewayWorkloadSettings } from '../gateways/render.js';
import type { K8sGateway } from './gateway-api.js';

export const INGRESS_CONTROLLER_NAME = 'istio.io/gateway-controller';
export const INGRESS_MANAGED_BY = 'ambit-ingress-controller';
const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

export const ingressDeploymentName = (gateway: string) => `${gateway}-istio`;

export function ingressLabels(gateway: string): Record<string, string> {
  return { [GATEWAY_NAME_LABEL]: gateway, 'istio.io/gateway-name': gateway };
}

export function renderIngressObjects(gateway: K8sGateway & { uid: string }, settings: GatewayWorkloadSettings, network: string) {
  const name = ingressDeploymentName(gateway.name);
  const labels = { ...ingressLabels(gateway.name), [MANAGED_BY_LABEL]: INGRESS_MANAGED_BY };
  const metadata = {
    name,
    namespace: gateway.namespace,
    labels,
    ownerReferences: [{ apiVersion: `${GATEWAY_API_GROUP}/v1`, kind: 'Gateway', name: gateway.name, uid: gateway.uid, controller: true }],
  };
  const ports = [...new Map(gateway.listeners.filter((l) => l.protocol === 'HTTP').map((l) => [l.port, l])).values()];
  const serviceAccount: V1ServiceAccount & { kind: 'ServiceAccount' } = { apiVersion: 'v1', kind: 'ServiceAccount', metadata, automountServiceAccountToken: false };
  const deployment: V1Deployment & { kind: 'Deployment' } = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata,
    spec: {
      selector: { matchLabels: { [GATEWAY_NAME_LABEL]: gateway.name } },
      template: ingressPodTemplate({
        name,
        serviceAccount: name,
        labels,
        image: settings.image,
        imagePullPolicy: settings.imagePullPolicy,
        ports: ports.map((l) => ({ name: `http-${ingressTargetPort(l.port)}`, port: ingressTargetPort(l.port) })),
        mesh: { clusterId: settings.clusterId, network, trustDomain: settings.trustDomain, systemNamespace: settings.systemNamespace },
        ...(settings.logLevel ? { logLevel: settings.logLevel } : {}),
      }),
    },
  };
  const service: V1Service & { kind: 'Service' } = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: {
      type: 'LoadBalancer',
      selector: { [GATEWAY_NAME_LABEL]: gateway.name },
      ports: [INGRESS_STATUS_SERVICE_PORT, ...ports.map((l) => ({ name: `http-${l.port}`, port: l.port, targetPort: ingressTargetPort(l.port), protocol: 'TCP' }))],
    },
  };
  return { serviceAccount, deployment, service };
}
