import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import type { V1KeyToPath, V1Pod, V1Volume } from '@kubernetes/client-node';
import { writeFileAtomic } from '../state.js';
import type { Kube } from './kube.js';

/** A volume prepared on the host: a directory (or host path) that containers bind-mount. */
export interface PreparedVolume {
  name: string;
  hostPath: string;
  /** Seconds until the volume must be refreshed (projected service-account tokens), if ever. */
  refreshAfterSeconds?: number;
}

export class VolumeError extends Error {}

const DEFAULT_TOKEN_SECONDS = 3607;

function writeKeys(dir: string, data: Record<string, string | Buffer>, items: V1KeyToPath[] | undefined, what: string, optional: boolean): void {
  const entries = items?.length ? items.map((item) => [item.key, item.path, item.mode] as const) : Object.keys(data).map((k) => [k, k, undefined] as const);
  for (const [key, path, mode] of entries) {
    const value = data[key];
    if (value === undefined) {
      if (optional) continue;
      throw new VolumeError(`${what} has no key "${key}"`);
    }
    const target = normalize(join(dir, path));
    if (!target.startsWith(dir)) throw new VolumeError(`${what}: item path "${path}" escapes the volume`);
    writeFileAtomic(target, value, mode ?? 0o644);
  }
}

function decodeSecret(data: Record<string, string> | undefined): Record<string, Buffer> {
  return Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
}

async function readSecret(kube: Kube, namespace: string, name: string): Promise<Record<string, Buffer> | undefined> {
  try {
    const secret = await kube.core.readNamespacedSecret({ name, namespace });
    return { ...decodeSecret(secret.data), ...Object.fromEntries(Object.entries(secret.stringData ?? {}).map(([k, v]) => [k, Buffer.from(v)])) };
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

async function readConfigMap(kube: Kube, namespace: string, name: string): Promise<Record<string, string | Buffer> | undefined> {
  try {
    const cm = await kube.core.readNamespacedConfigMap({ name, namespace });
    return { ...(cm.data ?? {}), ...decodeSecret(cm.binaryData) };
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

function fieldValue(pod: V1Pod, fieldPath: string): string {
  const m = pod.metadata!;
  const label = /^metadata\.labels\['(.+)'\]$/.exec(fieldPath);
  if (label) return m.labels?.[label[1]!] ?? '';
  const annotation = /^metadata\.annotations\['(.+)'\]$/.exec(fieldPath);
  if (annotation) return m.annotations?.[annotation[1]!] ?? '';
  switch (fieldPath) {
    case 'metadata.name':
      return m.name ?? '';
    case 'metadata.namespace':
      return m.namespace ?? '';
    case 'metadata.uid':
      return m.uid ?? '';
    case 'metadata.labels':
      return Object.entries(m.labels ?? {}).map(([k, v]) => `${k}="${v}"`).join('\n');
    case 'metadata.annotations':
      return Object.entries(m.annotations ?? {}).map(([k, v]) => `${k}="${v}"`).join('\n');
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? 'default';
    case 'status.podIP':
      return pod.status?.podIP ?? '';
    case 'status.hostIP':
      return pod.status?.hostIP ?? '';
    default:
      throw new VolumeError(`unsupported fieldRef "${fieldPath}"`);
  }
}

export { fieldValue };

async function requestToken(kube: Kube, pod: V1Pod, audience: string | undefined, expirationSeconds: number): Promise<string> {
  const namespace = pod.metadata!.namespace!;
  const serviceAccount = pod.spec?.serviceAccountName ?? 'default';
  const response = await kube.core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace,
    body: {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        audiences: audience ? [audience] : [],
        expirationSeconds,
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata!.name!, uid: pod.metadata!.uid! },
      },
    },
  });
  const token = response.status?.token;
  if (!token) throw new VolumeError(`TokenRequest for service account ${namespace}/${serviceAccount} returned no token`);
  return token;
}

/** Writes one volume's content under `root`; returns where containers find it. */
export async function prepareVolume(kube: Kube, pod: V1Pod, volume: V1Volume, root: string): Promise<PreparedVolume> {
  const namespace = pod.metadata!.namespace!;
  const dir = join(root, volume.name);
  const what = `volume "${volume.name}"`;
  if (volume.hostPath) {
    const type = volume.hostPath.type ?? '';
    if (!existsSync(volume.hostPath.path)) {
      if (type === 'DirectoryOrCreate') mkdirSync(volume.hostPath.path, { recursive: true });
      else if (type !== '' && type !== 'FileOrCreate') throw new VolumeError(`${what}: hostPath ${volume.hostPath.path} does not exist`);
      else if (type === 'FileOrCreate') writeFileAtomic(volume.hostPath.path, '');
    }
    return { name: volume.name, hostPath: volume.hostPath.path };
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  if (volume.emptyDir) return { name: volume.name, hostPath: dir };
  if (volume.secret) {
    const data = await readSecret(kube, namespace, volume.secret.secretName!);
    if (!data) {
      if (volume.secret.optional) return { name: volume.name, hostPath: dir };
      throw new VolumeError(`${what}: secret "${volume.secret.secretName}" not found`);
    }
    writeKeys(dir, data, volume.secret.items, `${what} secret "${volume.secret.secretName}"`, volume.secret.optional ?? false);
    return { name: volume.name, hostPath: dir };
  }
  if (volume.configMap) {
    const data = await readConfigMap(kube, namespace, volume.configMap.name!);
    if (!data) {
      if (volume.configMap.optional) return { name: volume.name, hostPath: dir };
      throw new VolumeError(`${what}: configmap "${volume.configMap.name}" not found`);
    }
    writeKeys(dir, data, volume.configMap.items, `${what} configmap "${volume.configMap.name}"`, volume.configMap.optional ?? false);
    return { name: volume.name, hostPath: dir };
  }
  if (volume.downwardAPI) {
    for (const item of volume.downwardAPI.items ?? []) {
      if (item.fieldRef) writeFileAtomic(join(dir, item.path), fieldValue(pod, item.fieldRef.fieldPath), item.mode ?? 0o644);
    }
    return { name: volume.name, hostPath: dir };
  }
  if (volume.projected) {
    let refreshAfterSeconds: number | undefined;
    for (const source of volume.projected.sources ?? []) {
      if (source.serviceAccountToken) {
        const seconds = source.serviceAccountToken.expirationSeconds ?? DEFAULT_TOKEN_SECONDS;
        const token = await requestToken(kube, pod, source.serviceAccountToken.audience, seconds);
        writeFileAtomic(join(dir, source.serviceAccountToken.path), token, 0o644);
        const refresh = Math.floor(seconds * 0.8);
        refreshAfterSeconds = Math.min(refreshAfterSeconds ?? refresh, refresh);
      } else if (source.configMap) {
        const data = await readConfigMap(kube, namespace, source.configMap.name!);
        if (!data && !source.configMap.optional) throw new VolumeError(`${what}: configmap "${source.configMap.name}" not found`);
        if (data) writeKeys(dir, data, source.configMap.items, `${what} configmap "${source.configMap.name}"`, source.configMap.optional ?? false);
      } else if (source.secret) {
        const data = await readSecret(kube, namespace, source.secret.name!);
        if (!data && !source.secret.optional) throw new VolumeError(`${what}: secret "${source.secret.name}" not found`);
        if (data) writeKeys(dir, data, source.secret.items, `${what} secret "${source.secret.name}"`, source.secret.optional ?? false);
      } else if (source.downwardAPI) {
        for (const item of source.downwardAPI.items ?? []) {
          if (item.fieldRef) writeFileAtomic(join(dir, item.path), fieldValue(pod, item.fieldRef.fieldPath), item.mode ?? 0o644);
        }
      }
    }
    return { name: volume.name, hostPath: dir, refreshAfterSeconds };
  }
  throw new VolumeError(`${what}: volume type not supported by the lab (supported: emptyDir, secret, configMap, projected, downwardAPI, hostPath)`);
}

export function ensureParent(file: string): void {
  mkdirSync(dirname(file), { recursive: true });
}
