/**
 * API clients whose every request has a timeout. client-node's own `makeApiClient` waits forever for
 * an API server that accepts the connection and never answers; these abort the request instead.
 */
import { createConfiguration, ServerConfiguration, type KubeConfig, type RequestContext, type ResponseContext } from '@kubernetes/client-node';

/** Longest wait for one API call (list, get, patch, TokenReview…), from sending it to the end of the response. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export interface ApiClientOptions {
  timeoutMs?: number;
}

type ApiType<T> = new (configuration: ReturnType<typeof createConfiguration>) => T;

/** As `config.makeApiClient(Type)`, with a request timeout on every call. */
export function apiClient<T>(config: KubeConfig, Type: ApiType<T>, options: ApiClientOptions = {}): T {
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const configuration = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: config },
    promiseMiddleware: [requestTimeout(options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS)],
  });
  return new Type(configuration);
}

/** Middleware giving each request an AbortSignal that fires after `timeoutMs`. */
export function requestTimeout(timeoutMs: number) {
  return {
    pre: async (context: RequestContext): Promise<RequestContext> => {
      // A caller's own signal (if any) still works: either one aborts.
      const own = context.getSignal();
      const timeout = AbortSignal.timeout(timeoutMs);
      context.setSignal(own ? AbortSignal.any([own, timeout]) : timeout);
      return context;
    },
    post: async (context: ResponseContext): Promise<ResponseContext> => context,
  };
}
