import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// Lab tests make network namespaces and nftables rules: without root, refuse at once (loudly) rather
// than wait for a lab that cannot come up. `npm test` skips lab tests when not root (scripts/test.sh).
if (process.getuid?.() !== 0) {
  throw new Error('this is a lab test and needs root (network namespaces, nftables); run it as root, or run `npm test`, which skips lab tests when not root');
}

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const samples = process.env.AMBIT_SAMPLES_DIR ?? fileURLToPath(new URL('../../../shared/samples/istio/', import.meta.url));

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export function sh(file: string, args: string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { cwd: repoRoot, timeout: options.timeoutMs ?? 120_000, maxBuffer: 32 * 1024 * 1024, env: options.env ?? process.env }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

export const ambit = (args: string[], options?: Parameters<typeof sh>[2]) => sh(process.execPath, [`${repoRoot}bin/ambit.js`, ...args], options);

export async function kubectl(context: string, args: string[], input?: string): Promise<string> {
  const result = await sh('kubectl', ['--context', context, ...args], { input });
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

export async function labExec(cluster: string, namespace: string, target: string, command: string[]): Promise<Result> {
  return ambit(['lab', 'exec', '--cluster', cluster, '-n', namespace, target, '--', ...command]);
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 90_000, intervalMs = 300): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export async function rolloutStatus(context: string, namespace: string, deployments: string[]): Promise<void> {
  await kubectl(context, ['-n', namespace, 'rollout', 'status', ...deployments.map((d) => `deploy/${d}`), '--timeout=120s']);
}

/** Whatever the lab may leave behind: used to prove `lab down` leaves nothing. */
export async function labLeftovers(pids: number[]): Promise<string[]> {
  const found: string[] = [];
  const netns = (await sh('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith('ambit-'));
  if (netns.length) found.push(`netns: ${netns.join(', ')}`);
  const tables = (await sh('nft', ['list', 'tables'])).stdout.split('\n').filter((l) => l.includes('ambit'));
  if (tables.length) found.push(`nft tables: ${tables.join(', ')}`);
  const link = await sh('ip', ['link', 'show', 'ambit-host']);
  if (link.code === 0) found.push('link ambit-host');
  const alive = pids.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  if (alive.length) found.push(`processes: ${alive.join(', ')}`);
  const contexts = (await sh('kubectl', ['config', 'get-contexts', '-o', 'name'])).stdout.split('\n').filter((c) => c.startsWith('lab-'));
  if (contexts.length) found.push(`contexts: ${contexts.join(', ')}`);
  const mounts = (await sh('findmnt', ['-rn', '-o', 'TARGET'])).stdout.split('\n').filter((m) => m.includes('ambit'));
  if (mounts.length) found.push(`mounts: ${mounts.join(', ')}`);
  return found;
}
