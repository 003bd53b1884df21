/** The lab agent's connection to its cluster's API server (through the kit: every call has a timeout). */
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { apiClient } from '../../kube/index.js';

export interface Kube {
  config: KubeConfig;
  core: CoreV1Api;
}

export function connect(kubeconfigFile: string): Kube {
  const config = new KubeConfig();
  config.loadFromFile(kubeconfigFile);
  return { config, core: apiClient(config, CoreV1Api) };
}
