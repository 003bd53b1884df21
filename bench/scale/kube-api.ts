/**
 * The Kubernetes API of a lab cluster through @kubernetes/client-node (thousands of requests:
 * one kubectl process each would cost more than the control plane being measured), with bounded
 * concurrency and retries of transient failures.
 */
import { Agent } from 'node:https';
import { CoreV1Api, createConfiguration, KubeConfig, ServerConfiguration, type Configuration, type SecurityAuthentication } from '@kubernetes/client-node';
import { errorMessage, statusCode } from '../../src/kube/index.js';

export { errorMessage, mergePatch, statusCode } from '../../src/kube/index.js';

/**
 * An API group's client (CoreV1Api, CustomObjectsApi, …) of a kubeconfig context (the lab merges
 * `lab-<cluster>` into the default kubeconfig).
 * The client makes a new TLS agent, so a new connection, for every request; here requests share
 * one keep-alive agent with the same TLS settings, as a kubelet's would: thousands of handshakes
 * would load the API server, and each would add to the readiness latency being measured.
 */
export function kubeApiFor<T>(Api: new (configuration: Configuration) => T, context: string, kubeconfigFile?: string): T {
  const kubeConfig = new KubeConfig();
  if (kubeconfigFile) kubeConfig.loadFromFile(kubeconfigFile);
  else kubeConfig.loadFromDefault();
  kubeConfig.setCurrentContext(context);
  const cluster = kubeConfig.getCurrentCluster();
  if (!cluster) throw new Error(`kubeconfig context ${context} has no cluster`);
  let shared: Agent | undefined;
  const keepAlive: SecurityAuthentication = {
    getName: () => 'kubeconfig, keep-alive connections',
    async applySecurityAuthentication(request) {
      await kubeConfig.applySecurityAuthentication(request);
      const perRequest = request.getAgent();
      if (!(perRequest instanceof Agent)) return;
      shared ??= new Agent({ ...perRequest.options, keepAlive: true, maxSockets: 64 });
      request.setAgent(shared);
    },
  };
  return new Api(createConfiguration({ baseServer: new ServerConfiguration(cluster.server, {}), authMethods: { default: keepAlive } }));
}

export const coreApiFor = (context: string, kubeconfigFile?: string): CoreV1Api => kubeApiFor(CoreV1Api, context, kubeconfigFile);

/** Runs `task` for every item, at most `limit` at a time; resolves when all are done, rejects with the first failure. */
export async function forEachLimited<T>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const index = next++;
      try {
        await task(items[index]!, index);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure !== undefined) throw failure;
}

/** Throttled, overloaded or briefly unreachable: worth another try. */
export function isTransient(err: unknown): boolean {
  const code = statusCode(err);
  if (code === 429 || code === 500 || code === 503 || code === 504) return true;
  return code === undefined && /ECONNRESET|ECONNREFUSED|ETIMEDOUT|socket hang up|EPIPE/i.test(errorMessage(err));
}

export async function withRetries<T>(what: string, call: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (attempt >= attempts || !isTransient(err)) throw new Error(`${what}: ${errorMessage(err)}`);
      await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
    }
  }
}

/** A create that finds the object already there (a run that stopped before its clean-up) counts as done. */
export async function createOrKeep(what: string, create: () => Promise<unknown>): Promise<void> {
  await withRetries(what, async () => {
    try {
      await create();
    } catch (err) {
      if (statusCode(err) !== 409) throw err;
    }
  });
}
