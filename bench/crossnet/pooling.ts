/**
 * Inner-session pooling of double HBONE, switched on a cluster's ztunnels through the DaemonSet's
 * environment (INNER_HBONE_POOLING, read by src/ztunnel/settings.ts; unset means on), followed by
 * the rollout that restarts them.
 */
import { ZTUNNEL_CONTAINER, ZTUNNEL_NAME } from '../../src/api/names.js';
import { INNER_HBONE_POOLING_ENV } from '../../src/ztunnel/settings.js';
import { kubectl, kubectlJson } from '../lab-kube.js';
import { SYSTEM_NAMESPACE, type LabCluster } from '../multicluster-lab.js';

interface DaemonSetJson {
  spec: { template: { spec: { containers: Array<{ name: string; env?: Array<{ name: string; value?: string }> }> } } };
}

/** The variable's value on the DaemonSet, or undefined when unset. */
export async function innerPoolingEnv(cluster: LabCluster): Promise<string | undefined> {
  const ds = await kubectlJson<DaemonSetJson>(cluster.context, ['get', 'daemonset', ZTUNNEL_NAME, '-n', SYSTEM_NAMESPACE]);
  const container = ds.spec.template.spec.containers.find((c) => c.name === ZTUNNEL_CONTAINER);
  return container?.env?.find((e) => e.name === INNER_HBONE_POOLING_ENV)?.value;
}

/** Sets pooling on (by removing the variable) or off, and waits for the restarted ztunnels. Returns whether anything changed. */
export async function setInnerPooling(cluster: LabCluster, enabled: boolean, log: (line: string) => void): Promise<boolean> {
  const desired = enabled ? undefined : 'false';
  if ((await innerPoolingEnv(cluster)) === desired) return false;
  const assignment = enabled ? `${INNER_HBONE_POOLING_ENV}-` : `${INNER_HBONE_POOLING_ENV}=false`;
  log(`  kubectl set env daemonset/${ZTUNNEL_NAME} ${assignment} in ${cluster.name}, and wait for the rollout`);
  await kubectl(cluster.context, ['set', 'env', `daemonset/${ZTUNNEL_NAME}`, '-n', SYSTEM_NAMESPACE, '-c', ZTUNNEL_CONTAINER, assignment]);
  await kubectl(cluster.context, ['rollout', 'status', `daemonset/${ZTUNNEL_NAME}`, '-n', SYSTEM_NAMESPACE, '--timeout=300s'], { timeoutMs: 320_000 });
  return true;
}
