/** Pieces of the installed objects that only the installer uses: metadata and resource requirements. */
import type { V1ObjectMeta, V1ResourceRequirements } from '@kubernetes/client-node';
import { PART_OF_LABEL, PART_OF_VALUE } from '../../api/names.js';
import type { ResourceRequirements } from '../values-schema.js';

/** Metadata every installed object carries; `app` is also the pod selector of the workloads. */
export function meta(name: string, namespace?: string, app?: string): V1ObjectMeta {
  return {
    name,
    ...(namespace ? { namespace } : {}),
    labels: { ...(app ? { app } : {}), [PART_OF_LABEL]: PART_OF_VALUE },
  };
}

/** Copies so that rendered objects never alias the values they came from. */
export function resourcesOf(resources: ResourceRequirements): V1ResourceRequirements {
  return {
    ...(resources.requests && Object.keys(resources.requests).length ? { requests: { ...resources.requests } } : {}),
    ...(resources.limits && Object.keys(resources.limits).length ? { limits: { ...resources.limits } } : {}),
  };
}
