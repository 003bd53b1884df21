/**
 * Pod-template pieces every ambit workload shares, whoever renders it: the installer (control plane,
 * ztunnel) and the control plane's gateway controller (east-west gateway Deployments).
 */
import type { V1EnvVar, V1Probe, V1SecurityContext, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import {
  controlPlaneAddress,
  ENV,
  ROOT_CERT_CONFIGMAP,
  ROOT_CERT_DIR,
  ROOT_CERT_VOLUME,
  TOKEN_AUDIENCE,
  TOKEN_DIR,
  TOKEN_EXPIRATION_SECONDS,
  TOKEN_FILE,
  TOKEN_VOLUME,
} from './names.js';

export const envValue = (name: string, value: string): V1EnvVar => ({ name, value });
export const envField = (name: string, fieldPath: string): V1EnvVar => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });

/**
 * Node options of the HTTP proxies (waypoints, ingress gateways). Their garbage is short-lived
 * per-request objects: a small young generation keeps the resident set low at a steady request
 * rate (measured in bench/README.md, the waypoint case) for a few more, cheap scavenges.
 */
export const HTTP_PROXY_NODE_OPTIONS = '--max-semi-space-size=2';

/** Prometheus scrape annotations, as Istio puts them on istiod and ztunnel pods. */
export function scrapeAnnotations(port: number, path: string): Record<string, string> {
  return { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': path };
}

/** The pod's own identity from the downward API: node, pod name and namespace, pod IP. */
export function podIdentityEnv(): V1EnvVar[] {
  return [
    envField(ENV.nodeName, 'spec.nodeName'),
    envField(ENV.podName, 'metadata.name'),
    envField(ENV.podNamespace, 'metadata.namespace'),
    envField(ENV.instanceIp, 'status.podIP'),
  ];
}

/** Where a data-plane process (ztunnel, an east-west gateway) is, and where it finds the control plane for xDS and certificates. */
export function controlPlaneClientEnv(mesh: { clusterId: string; network: string; trustDomain: string; systemNamespace: string }): V1EnvVar[] {
  const address = controlPlaneAddress(mesh.systemNamespace);
  return [
    envValue(ENV.clusterId, mesh.clusterId),
    envValue(ENV.network, mesh.network),
    envValue(ENV.trustDomain, mesh.trustDomain),
    envValue(ENV.systemNamespace, mesh.systemNamespace),
    envValue(ENV.xdsAddress, address),
    envValue(ENV.caAddress, address),
  ];
}

/** The control-plane credentials of a data-plane pod: a projected token (audience istio-ca) and the mesh root. */
export function controlPlaneCredentialVolumes(): { volumes: V1Volume[]; volumeMounts: V1VolumeMount[] } {
  return {
    volumes: [
      { name: TOKEN_VOLUME, projected: { sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: TOKEN_EXPIRATION_SECONDS, path: TOKEN_FILE } }] } },
      // Published by the control plane; until it exists the kubelet retries the mount, so the pod starts after the CA is up.
      { name: ROOT_CERT_VOLUME, configMap: { name: ROOT_CERT_CONFIGMAP } },
    ],
    volumeMounts: [
      { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
      { name: ROOT_CERT_VOLUME, mountPath: ROOT_CERT_DIR, readOnly: true },
    ],
  };
}

/** The readiness probe of every ambit container: an HTTP GET, checked every 3 s. */
export function readinessProbe(path: string, port: number): V1Probe {
  return { httpGet: { path, port }, initialDelaySeconds: 1, periodSeconds: 3, timeoutSeconds: 5 };
}

/** A container that needs no privilege at all (the control plane, east-west gateways). */
export function unprivilegedSecurityContext(): V1SecurityContext {
  return {
    allowPrivilegeEscalation: false,
    privileged: false,
    runAsNonRoot: true,
    runAsUser: 1337,
    runAsGroup: 1337,
    capabilities: { drop: ['ALL'] },
  };
}
