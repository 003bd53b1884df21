/**
 * The real kubectl, driven against one context, with errors a user can act on: an unknown context
 * lists the known ones, an unreachable API server names its address, a rejected manifest shows
 * kubectl's own message.
 */
import { spawn } from 'node:child_process';
import { CommandError, run, type RunResult } from '../util/exec.js';

export class KubectlError extends Error {}

/** kubectl's warnings that say nothing about the request (a 1.32 client drives the lab's 1.20 servers). */
const NOISE = [/^WARNING: version difference between client/i, /^Warning: .*version skew/i];

export function cleanOutput(text: string): string {
  return text
    .split('\n')
    .filter((line) => line.trim() && !NOISE.some((pattern) => pattern.test(line)))
    .join('\n')
    .trim();
}

function isMissingBinary(err: unknown): boolean {
  return err instanceof CommandError && /ENOENT/.test(err.stderr) && err.code === null;
}

const MISSING = 'kubectl was not found on PATH; install kubectl (https://kubernetes.io/docs/tasks/tools/)';

/** Runs kubectl; on failure throws a KubectlError carrying kubectl's message (without the command line). */
export async function kubectl(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  try {
    return await run('kubectl', args, options);
  } catch (err) {
    if (isMissingBinary(err)) throw new KubectlError(MISSING);
    if (err instanceof CommandError) throw new KubectlError(cleanOutput(err.stderr) || `kubectl ${args.join(' ')} failed (exit ${err.code})`);
    throw err;
  }
}

/** Runs kubectl, passing each output line to `onLine` as it comes; resolves with the exit code and stderr. */
export function streamKubectl(args: string[], onLine: (line: string) => void, options: { timeoutMs?: number } = {}): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('kubectl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let pending = '';
    const timer = options.timeoutMs ? setTimeout(() => child.kill('SIGTERM'), options.timeoutMs) : undefined;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) if (line.trim()) onLine(line);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err.code === 'ENOENT' ? new KubectlError(MISSING) : err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (pending.trim()) onLine(pending);
      resolve({ code: code ?? (signal ? 124 : 1), stderr: cleanOutput(stderr) });
    });
  });
}

export async function listContexts(): Promise<string[]> {
  const { stdout } = await kubectl(['config', 'get-contexts', '-o', 'name']);
  return stdout.split('\n').map((s) => s.trim()).filter(Boolean);
}

/**
 * The context to use: the one named, else kubectl's current context. Errors list the contexts
 * that exist.
 */
export async function resolveContext(context: string | undefined): Promise<string> {
  const contexts = await listContexts();
  const known = contexts.length ? `known contexts: ${contexts.join(', ')}` : 'the kubeconfig has no contexts (lab clusters appear as lab-<cluster> after `ambit lab up`)';
  if (context) {
    if (!contexts.includes(context)) throw new KubectlError(`context "${context}" is not in the kubeconfig; ${known}`);
    return context;
  }
  try {
    const { stdout } = await kubectl(['config', 'current-context']);
    if (stdout.trim()) return stdout.trim();
  } catch {
    // No current context: fall through to the error below.
  }
  throw new KubectlError(`no --context given and no current context is set; ${known}`);
}

async function serverOf(context: string): Promise<string> {
  try {
    const { stdout } = await kubectl(['config', 'view', '-o', 'json']);
    const config = JSON.parse(stdout) as { contexts?: Array<{ name: string; context?: { cluster?: string } }>; clusters?: Array<{ name: string; cluster?: { server?: string } }> };
    const cluster = config.contexts?.find((c) => c.name === context)?.context?.cluster;
    return config.clusters?.find((c) => c.name === cluster)?.cluster?.server ?? 'an unknown address';
  } catch {
    return 'an unknown address';
  }
}

/** Checks that the API server answers; returns its Kubernetes version (`v1.20.2`). */
export async function checkReachable(context: string): Promise<{ server: string; version: string }> {
  const server = await serverOf(context);
  try {
    const { stdout } = await kubectl(['--context', context, 'get', '--raw', '/version', '--request-timeout=10s'], { timeoutMs: 20_000 });
    const version = (JSON.parse(stdout) as { gitVersion?: string }).gitVersion ?? 'unknown version';
    return { server, version };
  } catch (err) {
    throw new KubectlError(`cannot reach the API server of context "${context}" at ${server}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
