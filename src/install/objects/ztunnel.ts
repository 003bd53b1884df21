import type { V1DaemonSet } from '@kubernetes/client-node';
import {
  controlPlaneAddress,
  ENV,
  PORT_NAMES,
  ROOT_CERT_CONFIGMAP,
  ROOT_CERT_DIR,
  TOKEN_AUDIENCE,
  TOKEN_DIR,
  TOKEN_EXPIRATION_SECONDS,
  TOKEN_FILE,
  ZTUNNEL_CONTAINER,
  ZTUNNEL_METRICS_PATH,
  ZTUNNEL_METRICS_PORT,
  ZTUNNEL_NAME,
  ZTUNNEL_READY_PATH,
  ZTUNNEL_READY_PORT,
} from '../names.js';
import type { InstallValues } from '../values-schema.js';
import { envField, envValue, meta, resourcesOf, scrapeAnnotations } from './common.js';

const TOKEN_VOLUME = 'istio-token';
const ROOT_CERT_VOLUME = 'istiod-ca-cert';

/**
 * One ztunnel per node, in the node's network namespace (hostNetwork), where it programs
 * nftables capture rules (NET_ADMIN) and opens transparent sockets (NET_RAW).
 */
export function ztunnelDaemonSet(values: InstallValues): V1DaemonSet {
  const namespace = values.systemNamespace;
  const address = controlPlaneAddress(namespace);
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: meta(ZTUNNEL_NAME, namespace, ZTUNNEL_NAME),
    spec: {
      selector: { matchLabels: { app: ZTUNNEL_NAME } },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
      template: {
        metadata: {
          labels: { ...meta(ZTUNNEL_NAME, undefined, ZTUNNEL_NAME).labels },
          annotations: scrapeAnnotations(ZTUNNEL_METRICS_PORT, ZTUNNEL_METRICS_PATH),
        },
        spec: {
          serviceAccountName: ZTUNNEL_NAME,
          automountServiceAccountToken: false,
          hostNetwork: true,
          // hostNetwork pods resolve with the node's resolver unless told otherwise; ztunnel needs cluster DNS to find the control plane.
          dnsPolicy: 'ClusterFirstWithHostNet',
          priorityClassName: 'system-node-critical',
          tolerations: [{ operator: 'Exists' }],
          terminationGracePeriodSeconds: 30,
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          containers: [
            {
              name: ZTUNNEL_CONTAINER,
              image: values.image,
              imagePullPolicy: values.imagePullPolicy,
              args: ['ztunnel'],
              ports: [
                { name: PORT_NAMES.metrics, containerPort: ZTUNNEL_METRICS_PORT, protocol: 'TCP' },
                { name: PORT_NAMES.ready, containerPort: ZTUNNEL_READY_PORT, protocol: 'TCP' },
              ],
              env: [
                envField(ENV.nodeName, 'spec.nodeName'),
                envField(ENV.podName, 'metadata.name'),
                envField(ENV.podNamespace, 'metadata.namespace'),
                envField(ENV.instanceIp, 'status.podIP'),
                envValue(ENV.clusterId, values.clusterName),
                envValue(ENV.network, values.network),
                envValue(ENV.trustDomain, values.trustDomain),
                envValue(ENV.systemNamespace, namespace),
                envValue(ENV.xdsAddress, address),
                envValue(ENV.caAddress, address),
                envValue(ENV.logLevel, values.ztunnel.logLevel),
              ],
              readinessProbe: {
                httpGet: { path: ZTUNNEL_READY_PATH, port: ZTUNNEL_READY_PORT },
                initialDelaySeconds: 1,
                periodSeconds: 3,
                timeoutSeconds: 5,
              },
              resources: resourcesOf(values.ztunnel.resources),
              securityContext: {
                privileged: false,
                allowPrivilegeEscalation: false,
                runAsNonRoot: false,
                runAsUser: 0,
                capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] },
              },
              volumeMounts: [
                { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
                { name: ROOT_CERT_VOLUME, mountPath: ROOT_CERT_DIR, readOnly: true },
              ],
            },
          ],
          volumes: [
            {
              name: TOKEN_VOLUME,
              projected: { sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: TOKEN_EXPIRATION_SECONDS, path: TOKEN_FILE } }] },
            },
            // Published by the control plane; until it exists the kubelet retries the mount, so ztunnel starts after the CA is up.
            { name: ROOT_CERT_VOLUME, configMap: { name: ROOT_CERT_CONFIGMAP } },
          ],
        },
      },
    },
  };
}
