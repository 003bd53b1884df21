import {
  ApiException,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  makeInformer,
  setHeaderOptions,
  type Informer,
  type KubernetesObject,
  type ObjectCache,
} from '@kubernetes/client-node';

export type { Informer, ObjectCache };

export interface Kube {
  config: KubeConfig;
  core: CoreV1Api;
}

export function connect(kubeconfigFile: string): Kube {
  const config = new KubeConfig();
  config.loadFromFile(kubeconfigFile);
  return { config, core: config.makeApiClient(CoreV1Api) };
}

export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export function statusCode(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const code = (err as { code?: unknown; statusCode?: unknown })?.code ?? (err as { statusCode?: unknown })?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

export function errorMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const body = err.body as { message?: string } | string | undefined;
    const message = typeof body === 'string' ? safeJsonMessage(body) : body?.message;
    return `HTTP ${err.code}: ${message ?? err.message}`;
  }
  return err instanceof Error ? err.message : String(err);
}

function safeJsonMessage(body: string): string {
  try {
    return (JSON.parse(body) as { message?: string }).message ?? body;
  } catch {
    return body;
  }
}

/** Starts an informer that re-lists and re-watches forever, logging (not throwing) on errors. */
export async function startInformer<T extends KubernetesObject>(
  kube: Kube,
  path: string,
  list: () => Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>,
  handlers: { upsert: (obj: T) => void; remove: (obj: T) => void; onError: (err: unknown) => void },
): Promise<Informer<T> & ObjectCache<T>> {
  const informer = makeInformer<T>(kube.config, path, list as never);
  informer.on('add', handlers.upsert);
  informer.on('update', handlers.upsert);
  informer.on('delete', handlers.remove);
  informer.on('error', (err) => {
    handlers.onError(err);
    setTimeout(() => void informer.start().catch(handlers.onError), 1000);
  });
  await informer.start();
  return informer;
}
