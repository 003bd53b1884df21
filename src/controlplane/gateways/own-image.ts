import type { CoreV1Api } from '@kubernetes/client-node';
import { CONTROL_PLANE_CONTAINER } from '../../api/names.js';
import { errorMessage } from '../../kube/index.js';

export interface OwnImage {
  image: string;
  imagePullPolicy?: string;
  /** Where it was found: the control plane's own pod, or the AMBIT_IMAGE variable. */
  source: 'pod' | 'env';
}

/** Environment variable naming the image when the control plane's pod cannot tell (run outside a cluster). */
export const IMAGE_ENV = 'AMBIT_IMAGE';

/**
 * The image the control plane runs (gateway Deployments run the same one): container
 * `controlplane` of its own pod, else $AMBIT_IMAGE. Throws, naming both, when neither tells.
 */
export async function ownImage(core: CoreV1Api, namespace: string, podName: string, env: NodeJS.ProcessEnv = process.env): Promise<OwnImage> {
  let why: string;
  try {
    const pod = await core.readNamespacedPod({ name: podName, namespace });
    const container = pod.spec?.containers.find((c) => c.name === CONTROL_PLANE_CONTAINER);
    if (container?.image) return { image: container.image, ...(container.imagePullPolicy ? { imagePullPolicy: container.imagePullPolicy } : {}), source: 'pod' };
    why = `pod ${namespace}/${podName} has no container "${CONTROL_PLANE_CONTAINER}" with an image`;
  } catch (err) {
    why = `cannot read pod ${namespace}/${podName}: ${errorMessage(err)}`;
  }
  const fromEnv = env[IMAGE_ENV]?.trim();
  if (fromEnv) return { image: fromEnv, source: 'env' };
  throw new Error(`cannot tell the control plane's image for gateway Deployments: ${why}, and ${IMAGE_ENV} is not set`);
}
