/**
 * The few kubectl calls the multicluster commands make, behind one injectable function (the
 * `KubectlRunner`), so tests can answer them without a cluster. Every call names its context
 * explicitly; errors say which context and object they are about.
 */
import { kubectl } from '../install/kubectl.js';

/** Runs kubectl with these arguments; throws an Error carrying kubectl's message when it fails. */
export type KubectlRunner = (args: string[], options?: { input?: string; timeoutMs?: number }) => Promise<{ stdout: string }>;

export const realKubectl: KubectlRunner = kubectl;

/** Time, injectable so that waiting for the token controller can be tested without waiting. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export class MulticlusterError extends Error {}

/** What the commands need from the outside world; tests replace all of it. */
export interface MulticlusterDeps {
  kubectl: KubectlRunner;
  clock: Clock;
  /** Warnings and progress, on stderr in the CLI. */
  warn: (line: string) => void;
  progress: (line: string) => void;
}

/** The real kubectl and clock; messages on stderr, progress prefixed with the command's name. */
export function defaultDeps(command: string): MulticlusterDeps {
  return {
    kubectl: realKubectl,
    clock: realClock,
    warn: (line) => process.stderr.write(`ambit: warning: ${line}\n`),
    progress: (line) => process.stderr.write(`[${command}] ${line}\n`),
  };
}

const REQUEST_TIMEOUT = '--request-timeout=20s';
const CALL_TIMEOUT_MS = 40_000;

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** The part of the merged kubeconfig (`kubectl config view`) these commands need. */
export interface KubeconfigView {
  currentContext: string | undefined;
  /** Context name → name of its cluster entry. */
  contexts: Map<string, string | undefined>;
  /** Cluster entry name → API server URL. */
  servers: Map<string, string | undefined>;
}

interface RawKubeconfig {
  'current-context'?: string;
  contexts?: Array<{ name?: string; context?: { cluster?: string } }> | null;
  clusters?: Array<{ name?: string; cluster?: { server?: string } }> | null;
}

export async function readKubeconfig(run: KubectlRunner): Promise<KubeconfigView> {
  let raw: RawKubeconfig;
  try {
    const { stdout } = await run(['config', 'view', '-o', 'json']);
    raw = JSON.parse(stdout) as RawKubeconfig;
  } catch (err) {
    throw new MulticlusterError(`cannot read the kubeconfig (kubectl config view): ${messageOf(err)}`);
  }
  const contexts = new Map<string, string | undefined>();
  for (const entry of raw.contexts ?? []) if (entry.name) contexts.set(entry.name, entry.context?.cluster);
  const servers = new Map<string, string | undefined>();
  for (const entry of raw.clusters ?? []) if (entry.name) servers.set(entry.name, entry.cluster?.server);
  return { currentContext: raw['current-context'] || undefined, contexts, servers };
}

function knownContexts(view: KubeconfigView): string {
  const names = [...view.contexts.keys()];
  return names.length ? `known contexts: ${names.join(', ')}` : 'the kubeconfig has no contexts (lab clusters appear as lab-<cluster> after `ambit lab up`)';
}

/** The context named (it must exist), else the current one. */
export function resolveContextName(view: KubeconfigView, context: string | undefined): string {
  if (context !== undefined) {
    if (!view.contexts.has(context)) throw new MulticlusterError(`context "${context}" is not in the kubeconfig; ${knownContexts(view)}`);
    return context;
  }
  if (view.currentContext && view.contexts.has(view.currentContext)) return view.currentContext;
  throw new MulticlusterError(`no --context given and no current context is set; ${knownContexts(view)}`);
}

/** The API server URL of a context's cluster entry, or undefined when the kubeconfig has none. */
export function serverOfContext(view: KubeconfigView, context: string): string | undefined {
  const cluster = view.contexts.get(context);
  return cluster === undefined ? undefined : view.servers.get(cluster) || undefined;
}

/** kubectl bound to one context. */
export class ContextClient {
  constructor(
    readonly context: string,
    private readonly run: KubectlRunner,
    /** For messages only. */
    private readonly server: string | undefined,
  ) {}

  /** Fails with the server's address when the API server does not answer. */
  async checkReachable(): Promise<void> {
    try {
      await this.run(['--context', this.context, 'get', '--raw', '/version', '--request-timeout=10s'], { timeoutMs: 20_000 });
    } catch (err) {
      throw new MulticlusterError(`cannot reach the API server of context "${this.context}" at ${this.server ?? 'an unknown address'}: ${messageOf(err)}`);
    }
  }

  /** The object as JSON, or undefined when it does not exist. */
  async get<T>(kind: string, namespace: string, name: string): Promise<T | undefined> {
    let stdout: string;
    try {
      ({ stdout } = await this.run(['--context', this.context, '-n', namespace, 'get', kind, name, '-o', 'json', '--ignore-not-found', REQUEST_TIMEOUT], { timeoutMs: CALL_TIMEOUT_MS }));
    } catch (err) {
      throw new MulticlusterError(`cannot read ${kind} ${namespace}/${name} in context "${this.context}": ${messageOf(err)}`);
    }
    if (!stdout.trim()) return undefined;
    let parsed: { kind?: string; items?: unknown[] };
    try {
      parsed = JSON.parse(stdout) as { kind?: string; items?: unknown[] };
    } catch {
      throw new MulticlusterError(`kubectl printed something other than JSON for ${kind} ${namespace}/${name} in context "${this.context}"`);
    }
    // Some kubectl versions print an empty List instead of nothing for a missing object.
    if (parsed.kind === 'List') return parsed.items?.[0] as T | undefined;
    return parsed as T;
  }

  /**
   * Server-side apply into `namespace`; returns kubectl's lines. `secrets` are scrubbed from any
   * error message, in case the API server echoes part of the object.
   */
  async apply(yaml: string, options: { namespace: string; fieldManager: string; what: string; secrets?: readonly string[] }): Promise<string[]> {
    const args = ['--context', this.context, '-n', options.namespace, 'apply', '--server-side', `--field-manager=${options.fieldManager}`, '--force-conflicts', REQUEST_TIMEOUT, '-f', '-'];
    try {
      const { stdout } = await this.run(args, { input: yaml, timeoutMs: CALL_TIMEOUT_MS });
      return stdout.split('\n').filter((line) => line.trim());
    } catch (err) {
      const message = scrub(messageOf(err), options.secrets ?? []);
      throw new MulticlusterError(`cannot apply ${options.what} in context "${this.context}": ${message}`);
    }
  }
}

/** Replaces every occurrence of the secrets (and of their base64 form) with `<redacted>`. */
export function scrub(text: string, secrets: readonly string[]): string {
  let result = text;
  for (const secret of secrets) {
    if (!secret) continue;
    for (const form of [secret, Buffer.from(secret).toString('base64')]) result = result.split(form).join('<redacted>');
  }
  return result;
}
