import type { V1DaemonSet } from '@kubernetes/client-node';
import {
  ENV,
  PORT_NAMES,
  ZTUNNEL_CONTAINER,
  ZTUNNEL_METRICS_PATH,
  ZTUNNEL_METRICS_PORT,
  ZTUNNEL_NAME,
  ZTUNNEL_READY_PATH,
  ZTUNNEL_READY_PORT,
} from '../../api/names.js';
import type { InstallValues } from '../values-schema.js';
import { controlPlaneClientEnv, controlPlaneCredentialVolumes, envValue, podIdentityEnv, readinessProbe, scrapeAnnotations } from '../../api/pod-template.js';
import { meta, resourcesOf } from './common.js';

/**
 * One ztunnel per node, in the node's network namespace (hostNetwork), where it programs
 * nftables capture rules (NET_ADMIN) and opens transparent sockets (NET_RAW).
 */
export function ztunnelDaemonSet(values: InstallValues): V1DaemonSet {
  const namespace = values.systemNamespace;
  const { volumes, volumeMounts } = controlPlaneCredentialVolumes();
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
          // The API token reads only ztunnel's own DaemonSet (see ZTUNNEL_RULES); xDS and the CA get the projected istio-ca token.
          automountServiceAccountToken: true,
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
                ...podIdentityEnv(),
                ...controlPlaneClientEnv({ clusterId: values.clusterName, network: values.network, trustDomain: values.trustDomain, systemNamespace: namespace }),
                envValue(ENV.logLevel, values.ztunnel.logLevel),
              ],
              readinessProbe: readinessProbe(ZTUNNEL_READY_PATH, ZTUNNEL_READY_PORT),
              resources: resourcesOf(values.ztunnel.resources),
              securityContext: {
                privileged: false,
                allowPrivilegeEscalation: false,
                runAsNonRoot: false,
                runAsUser: 0,
                capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] },
              },
              volumeMounts,
            },
          ],
          volumes,
        },
      },
    },
  };
}
