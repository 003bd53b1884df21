/**
 * Which mesh cluster name a kubeconfig context stands for: the name the user gives, else the
 * `CLUSTER_ID` the installed control plane runs with (set by `ambit install --cluster-name`).
 */
import { CONTROL_PLANE_CONTAINER, CONTROL_PLANE_NAME, ENV } from '../api/names.js';
import { MulticlusterError, type ContextClient } from './kube-access.js';
import { validateClusterName } from './remote-secret.js';

interface DeploymentJson {
  spec?: { template?: { spec?: { containers?: Array<{ name?: string; env?: Array<{ name?: string; value?: string; valueFrom?: unknown }> }> } } };
}

export type InstalledName = { name: string } | { reason: string };

/** `CLUSTER_ID` of the control plane Deployment, or why it cannot be read. */
export async function installedClusterName(client: ContextClient, namespace: string): Promise<InstalledName> {
  const deployment = await client.get<DeploymentJson>('deployment', namespace, CONTROL_PLANE_NAME);
  const where = `deployment ${namespace}/${CONTROL_PLANE_NAME}`;
  if (!deployment) return { reason: `${where} does not exist (ambit is not installed there)` };
  const containers = deployment.spec?.template?.spec?.containers ?? [];
  const ordered = [...containers.filter((c) => c.name === CONTROL_PLANE_CONTAINER), ...containers.filter((c) => c.name !== CONTROL_PLANE_CONTAINER)];
  for (const container of ordered) {
    const variable = container.env?.find((e) => e.name === ENV.clusterId);
    if (!variable) continue;
    if (variable.value) return { name: variable.value };
    return { reason: `${ENV.clusterId} of ${where} is not a plain value` };
  }
  return { reason: `${where} has no ${ENV.clusterId} environment variable` };
}

/**
 * The cluster name of `client`'s context: `explicit` when given (checked), else the installed one.
 * `hint` is the flag to suggest when neither is available.
 */
export async function resolveClusterName(client: ContextClient, namespace: string, explicit: { value: string; source: string } | undefined, hint: string): Promise<string> {
  if (explicit) return validateClusterName(explicit.value, explicit.source);
  const installed = await installedClusterName(client, namespace);
  if ('name' in installed) return validateClusterName(installed.name, `${ENV.clusterId} of deployment ${namespace}/${CONTROL_PLANE_NAME} in context "${client.context}"`);
  throw new MulticlusterError(`cannot tell the cluster name of context "${client.context}": ${installed.reason}; pass ${hint}`);
}
