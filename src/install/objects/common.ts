import type { V1EnvVar, V1ObjectMeta, V1ResourceRequirements } from '@kubernetes/client-node';
import { PART_OF_LABEL, PART_OF_VALUE } from '../names.js';
import type { ResourceRequirements } from '../values-schema.js';

/** Metadata every installed object carries; `app` is also the pod selector of the workloads. */
export function meta(name: string, namespace?: string, app?: string): V1ObjectMeta {
  return {
    name,
    ...(namespace ? { namespace } : {}),
    labels: { ...(app ? { app } : {}), [PART_OF_LABEL]: PART_OF_VALUE },
  };
}

export const envValue = (name: string, value: string): V1EnvVar => ({ name, value });
export const envField = (name: string, fieldPath: string): V1EnvVar => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });

/** Copies so that rendered objects never alias the values they came from. */
export function resourcesOf(resources: ResourceRequirements): V1ResourceRequirements {
  return {
    ...(resources.requests && Object.keys(resources.requests).length ? { requests: { ...resources.requests } } : {}),
    ...(resources.limits && Object.keys(resources.limits).length ? { limits: { ...resources.limits } } : {}),
  };
}

/** Prometheus scrape annotations, as Istio puts them on istiod and ztunnel pods. */
export function scrapeAnnotations(port: number, path: string): Record<string, string> {
  return { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': path };
}
