import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { Kube } from './kube.js';
import { fieldValue } from './volumes.js';

export class EnvError extends Error {}

async function secretValue(kube: Kube, namespace: string, name: string, key: string, optional: boolean): Promise<string | undefined> {
  try {
    const secret = await kube.core.readNamespacedSecret({ name, namespace });
    const raw = secret.data?.[key];
    if (raw === undefined) {
      if (optional) return undefined;
      throw new EnvError(`secret "${name}" has no key "${key}"`);
    }
    return Buffer.from(raw, 'base64').toString('utf8');
  } catch (err) {
    if ((err as { code?: number }).code === 404) {
      if (optional) return undefined;
      throw new EnvError(`secret "${name}" not found`);
    }
    throw err;
  }
}

async function configMapValues(kube: Kube, namespace: string, name: string, optional: boolean): Promise<Record<string, string>> {
  try {
    return (await kube.core.readNamespacedConfigMap({ name, namespace })).data ?? {};
  } catch (err) {
    if ((err as { code?: number }).code === 404 && optional) return {};
    if ((err as { code?: number }).code === 404) throw new EnvError(`configmap "${name}" not found`);
    throw err;
  }
}

const expand = (value: string, env: Record<string, string>) =>
  value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string | undefined) => (m === '$$' ? '$' : name !== undefined && name in env ? env[name]! : m));

/** The container's environment, resolved the way the kubelet does (envFrom, then env, with $(VAR) expansion). */
export async function containerEnv(
  kube: Kube,
  pod: V1Pod,
  container: V1Container,
  base: Record<string, string>,
): Promise<Record<string, string>> {
  const namespace = pod.metadata!.namespace!;
  const env: Record<string, string> = { ...base };
  for (const source of container.envFrom ?? []) {
    const prefix = source.prefix ?? '';
    if (source.configMapRef) {
      for (const [k, v] of Object.entries(await configMapValues(kube, namespace, source.configMapRef.name!, source.configMapRef.optional ?? false))) env[prefix + k] = v;
    }
    if (source.secretRef) {
      try {
        const secret = await kube.core.readNamespacedSecret({ name: source.secretRef.name!, namespace });
        for (const [k, v] of Object.entries(secret.data ?? {})) env[prefix + k] = Buffer.from(v, 'base64').toString('utf8');
      } catch (err) {
        if (!((err as { code?: number }).code === 404 && source.secretRef.optional)) throw new EnvError(`secret "${source.secretRef.name}" for envFrom not found`);
      }
    }
  }
  for (const variable of container.env ?? []) {
    const from = variable.valueFrom;
    let value: string | undefined;
    if (!from) value = expand(variable.value ?? '', env);
    else if (from.fieldRef) value = fieldValue(pod, from.fieldRef.fieldPath);
    else if (from.secretKeyRef) value = await secretValue(kube, namespace, from.secretKeyRef.name!, from.secretKeyRef.key, from.secretKeyRef.optional ?? false);
    else if (from.configMapKeyRef) {
      const values = await configMapValues(kube, namespace, from.configMapKeyRef.name!, from.configMapKeyRef.optional ?? false);
      value = values[from.configMapKeyRef.key];
      if (value === undefined && !from.configMapKeyRef.optional) throw new EnvError(`configmap "${from.configMapKeyRef.name}" has no key "${from.configMapKeyRef.key}"`);
    } else if (from.resourceFieldRef) {
      const resource = from.resourceFieldRef.resource;
      const [kind, name] = resource.split('.') as [string, string];
      const quantity = (kind === 'limits' ? container.resources?.limits : container.resources?.requests)?.[name];
      value = quantity === undefined ? (name === 'cpu' ? '2' : String(24 * 1024 ** 3)) : String(quantity);
    }
    if (value !== undefined) env[variable.name] = value;
  }
  return env;
}

export { expand as expandVariables };
