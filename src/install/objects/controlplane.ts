import type { V1ConfigMap, V1Deployment, V1Service } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { MESH_CONFIG_KEY, MESH_CONFIG_MAP } from '../../api/mesh-config.js';
import {
  CONTROL_PLANE_CONTAINER,
  CONTROL_PLANE_METRICS_PATH,
  CONTROL_PLANE_MONITORING_PORT,
  CONTROL_PLANE_NAME,
  CONTROL_PLANE_READY_PATH,
  CONTROL_PLANE_READY_PORT,
  ENV,
  PORT_NAMES,
  XDS_PORT,
} from '../../api/names.js';
import type { InstallValues } from '../values-schema.js';
import { DATAPLANE_MODE_LABEL, DATAPLANE_MODE_NONE } from '../../api/resources.js';
import { envField, envValue, readinessProbe, scrapeAnnotations, unprivilegedSecurityContext } from '../../api/pod-template.js';
import { meta, resourcesOf } from './common.js';

export function controlPlaneDeployment(values: InstallValues): V1Deployment {
  const namespace = values.systemNamespace;
  const cp = values.controlPlane;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: meta(CONTROL_PLANE_NAME, namespace, CONTROL_PLANE_NAME),
    spec: {
      replicas: cp.replicas,
      selector: { matchLabels: { app: CONTROL_PLANE_NAME } },
      template: {
        metadata: {
          labels: {
            ...meta(CONTROL_PLANE_NAME, undefined, CONTROL_PLANE_NAME).labels,
            // Its own traffic (xDS, CA, API server) must never be captured, even in an enrolled namespace.
            [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE_NONE,
          },
          annotations: scrapeAnnotations(CONTROL_PLANE_MONITORING_PORT, CONTROL_PLANE_METRICS_PATH),
        },
        spec: {
          serviceAccountName: CONTROL_PLANE_NAME,
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          containers: [
            {
              name: CONTROL_PLANE_CONTAINER,
              image: values.image,
              imagePullPolicy: values.imagePullPolicy,
              args: ['controlplane'],
              ports: [
                { name: PORT_NAMES.xds, containerPort: XDS_PORT, protocol: 'TCP' },
                { name: PORT_NAMES.monitoring, containerPort: CONTROL_PLANE_MONITORING_PORT, protocol: 'TCP' },
                { name: PORT_NAMES.ready, containerPort: CONTROL_PLANE_READY_PORT, protocol: 'TCP' },
              ],
              env: [
                envValue(ENV.clusterId, values.clusterName),
                envValue(ENV.network, values.network),
                envValue(ENV.meshId, values.meshId),
                envValue(ENV.trustDomain, values.trustDomain),
                envValue(ENV.systemNamespace, namespace),
                envField(ENV.podName, 'metadata.name'),
                envField(ENV.podNamespace, 'metadata.namespace'),
                envValue(ENV.workloadCertTtl, cp.workloadCertTtl),
                envValue(ENV.maxWorkloadCertTtl, cp.maxWorkloadCertTtl),
                envValue(ENV.logLevel, cp.logLevel),
              ],
              readinessProbe: readinessProbe(CONTROL_PLANE_READY_PATH, CONTROL_PLANE_READY_PORT),
              resources: resourcesOf(cp.resources),
              securityContext: unprivilegedSecurityContext(),
            },
          ],
        },
      },
    },
  };
}

export function controlPlaneService(values: InstallValues): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(CONTROL_PLANE_NAME, values.systemNamespace, CONTROL_PLANE_NAME),
    spec: {
      type: 'ClusterIP',
      selector: { app: CONTROL_PLANE_NAME },
      ports: [
        { name: PORT_NAMES.xds, port: XDS_PORT, targetPort: XDS_PORT, protocol: 'TCP' },
        { name: PORT_NAMES.monitoring, port: CONTROL_PLANE_MONITORING_PORT, targetPort: CONTROL_PLANE_MONITORING_PORT, protocol: 'TCP' },
      ],
    },
  };
}

/**
 * The mesh config, where istiod keeps it: ConfigMap `istio`, key `mesh`. The control plane watches
 * it, so `kubectl edit cm istio` applies at once (a re-install writes the values back).
 */
export function meshConfigMap(values: InstallValues): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: meta(MESH_CONFIG_MAP, values.systemNamespace),
    data: { [MESH_CONFIG_KEY]: stringify({ serviceScopeConfigs: values.meshConfig.serviceScopeConfigs }, { lineWidth: 0 }) },
  };
}
