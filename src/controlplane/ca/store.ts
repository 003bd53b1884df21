import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import type { Logger } from '../../util/log.js';

/** The part of the Kubernetes core API the CA uses (a fake in tests). */
export type CaKubeApi = Pick<
  CoreV1Api,
  'readNamespacedSecret' | 'createNamespacedSecret' | 'readNamespacedConfigMap' | 'createNamespacedConfigMap' | 'replaceNamespacedConfigMap'
>;

/** Istio's names. */
export const PLUGIN_CA_SECRET = 'cacerts';
export const SELF_SIGNED_CA_SECRET = 'istio-ca-secret';
export const SELF_SIGNED_CA_SECRET_TYPE = 'istio.io/ca-root';
export const ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert';
export const ROOT_CERT_KEY = 'root-cert.pem';

/** Decoded data of a Secret, or undefined when it does not exist. */
export async function readSecretData(api: CaKubeApi, namespace: string, name: string): Promise<Record<string, string> | undefined> {
  try {
    const secret = await api.readNamespacedSecret({ namespace, name });
    const data: Record<string, string> = {};
    for (const [key, value] of Object.entries(secret.data ?? {})) data[key] = Buffer.from(value, 'base64').toString('utf8');
    return data;
  } catch (err) {
    if (httpStatus(err) === 404) return undefined;
    throw new Error(`reading Secret ${namespace}/${name}: ${describeError(err)}`);
  }
}

/** Creates a Secret; 'exists' when another writer created it first. */
export async function createSecret(
  api: CaKubeApi,
  namespace: string,
  name: string,
  type: string,
  data: Record<string, string>,
): Promise<'created' | 'exists'> {
  const encoded = Object.fromEntries(Object.entries(data).map(([key, value]) => [key, Buffer.from(value, 'utf8').toString('base64')]));
  try {
    await api.createNamespacedSecret({ namespace, body: { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, type, data: encoded } });
    return 'created';
  } catch (err) {
    if (httpStatus(err) === 409) return 'exists';
    throw new Error(`creating Secret ${namespace}/${name}: ${describeError(err)}`);
  }
}

const PUBLISH_ATTEMPTS = 5;

/**
 * Makes ConfigMap `istio-ca-root-cert` in the system namespace hold exactly `rootsPem` under
 * `root-cert.pem` (ztunnel mounts it to verify the control plane). Safe against concurrent writers.
 */
export async function publishRootCertificates(
  api: CaKubeApi,
  options: { systemNamespace: string; rootsPem: string; log: Logger },
): Promise<'created' | 'updated' | 'unchanged'> {
  const { systemNamespace: namespace, rootsPem, log } = options;
  const name = ROOT_CERT_CONFIGMAP;
  for (let attempt = 1; ; attempt++) {
    const outcome = await publishOnce(api, namespace, rootsPem).catch((err: unknown) => {
      if (httpStatus(err) === 409 && attempt < PUBLISH_ATTEMPTS) return 'conflict' as const;
      throw new Error(`publishing ConfigMap ${namespace}/${name}: ${describeError(err)}`);
    });
    if (outcome === 'conflict') continue;
    if (outcome !== 'unchanged') log.info({ configMap: `${namespace}/${name}`, outcome }, 'published CA root certificates');
    return outcome;
  }
}

async function publishOnce(api: CaKubeApi, namespace: string, rootsPem: string): Promise<'created' | 'updated' | 'unchanged'> {
  const name = ROOT_CERT_CONFIGMAP;
  let existing: V1ConfigMap | undefined;
  try {
    existing = await api.readNamespacedConfigMap({ namespace, name });
  } catch (err) {
    if (httpStatus(err) !== 404) throw err;
  }
  if (!existing) {
    await api.createNamespacedConfigMap({
      namespace,
      body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data: { [ROOT_CERT_KEY]: rootsPem } },
    });
    return 'created';
  }
  if (existing.data?.[ROOT_CERT_KEY] === rootsPem) return 'unchanged';
  // Keeping metadata (resourceVersion included) makes the replace fail with 409 if someone else wrote in between.
  await api.replaceNamespacedConfigMap({ namespace, name, body: { ...existing, data: { ...existing.data, [ROOT_CERT_KEY]: rootsPem } } });
  return 'updated';
}

export function httpStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The API server's message for a failed call (client-node puts it in a JSON body). */
export function describeError(err: unknown): string {
  const body = (err as { body?: unknown } | undefined)?.body;
  let message: string | undefined;
  if (typeof body === 'string') {
    try {
      message = (JSON.parse(body) as { message?: string }).message;
    } catch {
      message = body || undefined;
    }
  } else if (body && typeof body === 'object') {
    message = (body as { message?: string }).message;
  }
  const code = httpStatus(err);
  const fallback = err instanceof Error ? err.message : String(err);
  return code !== undefined ? `HTTP ${code}: ${message ?? fallback}` : fallback;
}
