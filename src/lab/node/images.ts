// Puts images into a node's containerd (namespace k8s.io, where the CRI plugin looks), from OCI archives built here.
import { run } from '../../util/exec.js';
import { nodePaths, type RealNodeSpec } from './spec.js';

export async function importImageArchive(spec: Pick<RealNodeSpec, 'stateDir'>, archive: string): Promise<void> {
  await run('ctr', ['--address', nodePaths(spec.stateDir).containerdSocket, '-n', 'k8s.io', 'images', 'import', archive], { timeoutMs: 120_000 });
}

export async function listImages(spec: Pick<RealNodeSpec, 'stateDir'>): Promise<string[]> {
  const { stdout } = await run('ctr', ['--address', nodePaths(spec.stateDir).containerdSocket, '-n', 'k8s.io', 'images', 'list', '-q']);
  return stdout.split('\n').filter(Boolean);
}
