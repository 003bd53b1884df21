/** Whether a stopping ztunnel leaves its capture rules in place (a restart) or removes them (an uninstall). */
import { AppsV1Api, KubeConfig } from '@kubernetes/client-node';

import { apiClient, statusCode } from '../../kube/index.js';
import type { Logger } from '../../util/log.js';

export type CaptureOnExit = { keep: true; reason: string } | { keep: false; reason: string };

/** Reads the DaemonSet: `gone` when it no longer exists or is being deleted; throws when the API cannot tell. */
export type DaemonSetProbe = () => Promise<'present' | 'gone'>;

const PROBE_TIMEOUT_MS = 2000;

/**
 * Capture must outlive a ztunnel that is only being replaced (rollout restart, upgrade, a deleted pod):
 * with the rules in place and no listener, captured traffic is refused until the next ztunnel has its
 * first full config, instead of flowing in plain text without policy. Only when ztunnel's DaemonSet is
 * gone (uninstall) are the rules removed, or enrolled pods would stay cut off. When the API cannot
 * say, the rules stay: failing closed is the safe side.
 */
export async function decideCaptureOnExit(probe: DaemonSetProbe | undefined, log: Logger, timeoutMs = PROBE_TIMEOUT_MS): Promise<CaptureOnExit> {
  if (!probe) return { keep: true, reason: 'not running in a cluster: nothing tells an uninstall from a restart' };
  let timer: NodeJS.Timeout | undefined;
  try {
    const answer = await Promise.race([
      probe(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return answer === 'gone'
      ? { keep: false, reason: 'the ztunnel DaemonSet is gone or being deleted (uninstall)' }
      : { keep: true, reason: 'the ztunnel DaemonSet remains (restart or upgrade): the next ztunnel takes the rules over' };
  } catch (error) {
    log.warn({ err: error instanceof Error ? error.message : String(error) }, 'cannot read the ztunnel DaemonSet; leaving capture in place (fail closed)');
    return { keep: true, reason: 'the API server could not tell whether the DaemonSet remains' };
  } finally {
    clearTimeout(timer);
  }
}

/** A probe of `namespace/name` through the pod's own API credentials; undefined outside a cluster. */
export function inClusterDaemonSetProbe(namespace: string, name: string, env: NodeJS.ProcessEnv = process.env): DaemonSetProbe | undefined {
  if (!env.KUBERNETES_SERVICE_HOST) return undefined;
  return async () => {
    const config = new KubeConfig();
    config.loadFromCluster();
    try {
      const daemonSet = await apiClient(config, AppsV1Api, { timeoutMs: PROBE_TIMEOUT_MS }).readNamespacedDaemonSet({ namespace, name });
      return daemonSet.metadata?.deletionTimestamp ? 'gone' : 'present';
    } catch (error) {
      const status = statusCode(error);
      // 404: the DaemonSet is deleted. 401/403: our service account or its Role is gone, which
      // happens only when the installation is being removed (a restart keeps both).
      if (status === 404 || status === 401 || status === 403) return 'gone';
      throw error;
    }
  };
}
