/** The `istio-ingressgateway` install objects: ServiceAccount, Deployment running `ambit ingress`, LoadBalancer Service. */
import type { V1Deployment, V1Service, V1ServiceAccount } from '@kubernetes/client-node';
import { INGRESS_STATUS_SERVICE_PORT, ingressPodTemplate, ingressTargetPort } from '../../api/ingress-template.js';
import { INGRESS_GATEWAY_NAME, INGRESS_LABELS, INGRESS_SERVICE_ACCOUNT } from '../../api/resources.js';
import type { InstallValues } from '../values-schema.js';
import { meta, resourcesOf } from './common.js';

/** Service ports as Istio's ingress gateway has them: 80→8080 (http2), 443→8443 (https). */
export const INGRESS_SERVICE_PORTS = [
  { name: 'http2', port: 80 },
  { name: 'https', port: 443 },
] as const;

function ingressMeta(name: string, namespace: string) {
  const metadata = meta(name, namespace, INGRESS_LABELS.app);
  metadata.labels = { ...metadata.labels, ...INGRESS_LABELS };
  return metadata;
}

export function ingressObjects(values: InstallValues): Array<V1ServiceAccount | V1Deployment | V1Service> {
  if (!values.ingressGateway.enabled) return [];
  const namespace = values.systemNamespace;
  const serviceAccount: V1ServiceAccount = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: ingressMeta(INGRESS_SERVICE_ACCOUNT, namespace), automountServiceAccountToken: false };
  const podLabels = { ...INGRESS_LABELS, ...meta(INGRESS_GATEWAY_NAME).labels };
  const deployment: V1Deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: ingressMeta(INGRESS_GATEWAY_NAME, namespace),
    spec: {
      selector: { matchLabels: { ...INGRESS_LABELS } },
      template: ingressPodTemplate({
        name: INGRESS_GATEWAY_NAME,
        serviceAccount: INGRESS_SERVICE_ACCOUNT,
        labels: podLabels,
        image: values.image,
        imagePullPolicy: values.imagePullPolicy,
        ports: INGRESS_SERVICE_PORTS.map((p) => ({ name: p.name, port: ingressTargetPort(p.port) })),
        mesh: { clusterId: values.clusterName, network: values.network, trustDomain: values.trustDomain, systemNamespace: namespace },
        resources: resourcesOf(values.ingressGateway.resources),
      }),
    },
  };
  const service: V1Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ingressMeta(INGRESS_GATEWAY_NAME, namespace),
    spec: {
      type: 'LoadBalancer',
      selector: { ...INGRESS_LABELS },
      ports: [
        INGRESS_STATUS_SERVICE_PORT,
        ...INGRESS_SERVICE_PORTS.map((p) => ({ name: p.name, port: p.port, targetPort: ingressTargetPort(p.port), protocol: 'TCP' })),
      ],
    },
  };
  return [serviceAccount, service, deployment];
}
