import { KubeConfig } from '@kubernetes/client-node';
import { parse, YAMLError } from 'yaml';

/** Where a kubeconfig came from: a remote secret and one of its data keys. */
export interface KubeconfigSource {
  /** `<namespace>/<name>` of the Secret. */
  secret: string;
  key: string;
}

export class RemoteKubeconfigError extends Error {
  constructor(
    readonly source: KubeconfigSource,
    readonly field: string,
    problem: string,
    /** `insecure_kubeconfig` when the kubeconfig would turn TLS verification off, `kubeconfig` otherwise. */
    readonly reason: 'kubeconfig' | 'insecure_kubeconfig' = 'kubeconfig',
  ) {
    super(`secret ${source.secret} key ${JSON.stringify(source.key)}: ${field}: ${problem}`);
    this.name = 'RemoteKubeconfigError';
  }
}

/**
 * Settings that would make the control plane read its own files or run programs on the say-so
 * of whoever can write a remote secret (Istio refuses them by default too).
 */
const FORBIDDEN_USER_FIELDS: Readonly<Record<string, string>> = {
  exec: 'exec credential plugins are not allowed in remote secrets',
  'auth-provider': 'auth providers are not allowed in remote secrets',
  'token-file': 'file references are not allowed in remote secrets; inline the token with "token"',
  'client-certificate': 'file references are not allowed in remote secrets; use "client-certificate-data"',
  'client-key': 'file references are not allowed in remote secrets; use "client-key-data"',
};
const FORBIDDEN_CLUSTER_FIELDS: Readonly<Record<string, string>> = {
  'certificate-authority': 'file references are not allowed in remote secrets; use "certificate-authority-data"',
};
const INSECURE_SKIP_TLS_VERIFY = 'insecure-skip-tls-verify';

/**
 * Parses and validates the kubeconfig of a remote cluster: exactly one cluster with a server URL,
 * exactly one user, no file references or credential plugins. Returns a KubeConfig whose current
 * context is that cluster and user. Error messages name the secret, key and field, never values.
 */
export function parseRemoteKubeconfig(text: string, source: KubeconfigSource): KubeConfig {
  const fail = (field: string, problem: string, reason?: RemoteKubeconfigError['reason']): never => {
    throw new RemoteKubeconfigError(source, field, problem, reason);
  };
  if (text.trim() === '') fail('(kubeconfig)', 'is empty');

  let document: unknown;
  try {
    document = parse(text);
  } catch (err) {
    // The parser's message quotes the offending line, which may hold a token: report only where.
    const where = err instanceof YAMLError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
    fail('(kubeconfig)', `is not valid YAML${where}${err instanceof YAMLError ? ` (${err.code})` : ''}`);
  }
  if (!isRecord(document)) fail('(kubeconfig)', 'is not a YAML mapping');
  const config = document as Record<string, unknown>;

  const clusters = entries(config, 'clusters', fail);
  const users = entries(config, 'users', fail);
  const cluster = clusters[0]?.['cluster'];
  if (!isRecord(cluster)) fail('clusters[0].cluster', 'is missing');
  for (const [field, problem] of Object.entries(FORBIDDEN_CLUSTER_FIELDS)) {
    if ((cluster as Record<string, unknown>)[field] !== undefined) fail(`clusters[0].cluster.${field}`, problem);
  }
  // Whoever can write a remote secret must not be able to make the control plane trust any server
  // with a mesh-wide view (and its credentials): any value but false/absent is refused, "true" too.
  const skipVerify = (cluster as Record<string, unknown>)[INSECURE_SKIP_TLS_VERIFY];
  if (skipVerify !== undefined && skipVerify !== null && skipVerify !== false) {
    fail(
      `clusters[0].cluster.${INSECURE_SKIP_TLS_VERIFY}`,
      'TLS verification of remote API servers cannot be turned off; remove it and give the server\'s CA as "certificate-authority-data" (ambit create-remote-secret does)',
      'insecure_kubeconfig',
    );
  }
  const server = (cluster as Record<string, unknown>)['server'];
  if (typeof server !== 'string' || server === '') fail('clusters[0].cluster.server', 'is missing');
  let url: URL | undefined;
  try {
    url = new URL(server as string);
  } catch {
    fail('clusters[0].cluster.server', 'is not a URL');
  }
  // Plain HTTP would carry the token in clear text (and client-node needs TLS verification off for it).
  if (url && url.protocol !== 'https:') fail('clusters[0].cluster.server', 'must be an https:// URL');
  const user = users[0]?.['user'];
  if (user !== undefined && user !== null && !isRecord(user)) fail('users[0].user', 'is not a mapping');
  for (const [field, problem] of Object.entries(FORBIDDEN_USER_FIELDS)) {
    if (isRecord(user) && user[field] !== undefined) fail(`users[0].user.${field}`, problem);
  }

  const loaded = new KubeConfig();
  try {
    loaded.loadFromString(text);
  } catch (err) {
    const message = err instanceof Error ? err.message : '';
    // client-node names the field (e.g. "users[0].name is missing"); anything else may quote content.
    const field = /^((?:clusters|users|contexts)\[\d+\][\w.]*) (.+)$/.exec(message);
    if (field) fail(field[1]!, field[2]!);
    fail('(kubeconfig)', 'cannot be loaded');
  }
  const [loadedCluster] = loaded.getClusters();
  const [loadedUser] = loaded.getUsers();
  if (!loadedCluster) fail('clusters[0]', 'is missing');
  if (!loadedUser) fail('users[0]', 'is missing');
  // The contexts do not matter: the one cluster and user are what the secret grants.
  const normalized = new KubeConfig();
  normalized.loadFromClusterAndUser(loadedCluster!, loadedUser!);
  return normalized;
}

function entries(
  config: Record<string, unknown>,
  field: 'clusters' | 'users',
  fail: (field: string, problem: string) => never,
): Array<Record<string, unknown>> {
  const list = config[field];
  if (!Array.isArray(list)) return fail(field, 'is missing (want exactly one entry)');
  if (list.length !== 1) fail(field, `has ${list.length} entries (want exactly one)`);
  list.forEach((entry, i) => {
    if (!isRecord(entry)) fail(`${field}[${i}]`, 'is not a mapping');
  });
  return list as Array<Record<string, unknown>>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
