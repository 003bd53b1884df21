import { join } from 'node:path';
import { run, succeeds } from '../util/exec.js';
import type { ClusterPlan } from './plan.js';
import type { ClusterFiles } from './controlplane.js';

export const contextName = (cluster: string) => `lab-${cluster}`;

/** Merges `lab-<cluster>` into the user's kubeconfig (KUBECONFIG or ~/.kube/config), as kind does. */
export async function mergeContext(cluster: ClusterPlan, files: ClusterFiles): Promise<void> {
  const name = contextName(cluster.name);
  await run('kubectl', ['config', 'set-cluster', name, `--server=${cluster.apiServerUrl}`, `--certificate-authority=${files.caCert}`, '--embed-certs=true']);
  await run('kubectl', [
    'config',
    'set-credentials',
    name,
    `--client-certificate=${join(files.pki, 'admin.crt')}`,
    `--client-key=${join(files.pki, 'admin.key')}`,
    '--embed-certs=true',
  ]);
  await run('kubectl', ['config', 'set-context', name, `--cluster=${name}`, `--user=${name}`]);
  if (!(await succeeds('kubectl', ['config', 'current-context']))) await run('kubectl', ['config', 'use-context', name]);
}

export async function removeContext(cluster: string): Promise<void> {
  const name = contextName(cluster);
  const { stdout } = await run('kubectl', ['config', 'current-context']).catch(() => ({ stdout: '' }));
  if (stdout.trim() === name) await succeeds('kubectl', ['config', 'unset', 'current-context']);
  await succeeds('kubectl', ['config', 'delete-context', name]);
  await succeeds('kubectl', ['config', 'delete-cluster', name]);
  await succeeds('kubectl', ['config', 'delete-user', name]);
}

/** Contexts named lab-* whose server is a lab address: what a crashed lab may have left behind. */
export async function strayLabContexts(): Promise<string[]> {
  try {
    const { stdout } = await run('kubectl', ['config', 'view', '-o', 'json']);
    const config = JSON.parse(stdout) as { clusters?: Array<{ name: string; cluster?: { server?: string } }> };
    return (config.clusters ?? [])
      .filter((c) => c.name.startsWith('lab-') && /^https:\/\/198\.1[89]\./.test(c.cluster?.server ?? ''))
      .map((c) => c.name.slice('lab-'.length));
  } catch {
    return [];
  }
}
