/**
 * `ambit link`: every cluster gets every other cluster's remote secret (the manual exchange of
 * remote secrets, or `asmcli create-mesh`, in one command). Everything is read and every token
 * obtained before the first secret is applied, so a bad context changes nothing. Server-side apply
 * makes re-running update the secrets in place.
 */
import { DEFAULT_SYSTEM_NAMESPACE } from '../api/resources.js';
import { READER_SERVICE_ACCOUNT } from '../api/names.js';
import { resolveClusterName } from './cluster-name.js';
import { serverFor, warnIfLoopback } from './api-server.js';
import { ContextClient, defaultDeps, MulticlusterError, readKubeconfig, resolveContextName, serverOfContext, type MulticlusterDeps } from './kube-access.js';
import { ensureReaderToken, peekReaderToken, type ReaderToken } from './reader-token.js';
import { REDACTED, remoteSecretName, renderRedactedRemoteSecret, renderRemoteSecret, tokenSecretName, type RemoteSecretInput } from './remote-secret.js';

const FIELD_MANAGER = 'ambit-link';

export interface LinkOptions {
  /** kubeconfig contexts, one per cluster; at least two. */
  contexts: string[];
  /** `context=cluster` assignments (`--name-for`). */
  nameFor?: string[];
  /** `context=https://…` assignments (`--server-for`): the API server URL other clusters use. */
  serverFor?: string[];
  namespace?: string;
  serviceAccount?: string;
  /** Print what would be applied (tokens redacted) and change nothing. */
  dryRun?: boolean;
  timeoutMs?: number;
}

/** Every ordered pair of distinct items: the secret of `source` is applied to `target`. */
export function orderedPairs<T>(items: readonly T[]): Array<{ target: T; source: T }> {
  return items.flatMap((target, i) => items.filter((_, j) => j !== i).map((source) => ({ target, source })));
}

/** Parses repeated `context=value` flags; every context must be one of `contexts`. */
export function parseAssignments(values: readonly string[], flag: string, contexts: readonly string[]): Map<string, string> {
  const result = new Map<string, string>();
  for (const text of values) {
    // Split at the last "=": context names (e.g. EKS ARNs) may hold odd characters, values never hold "=".
    const at = text.lastIndexOf('=');
    const context = at > 0 ? text.slice(0, at) : '';
    const value = at > 0 ? text.slice(at + 1) : '';
    if (!context || !value) throw new MulticlusterError(`${flag}: expected <context>=<value>, got "${text}"`);
    if (!contexts.includes(context)) throw new MulticlusterError(`${flag} ${text}: "${context}" is not one of the --context values (${contexts.join(', ')})`);
    const earlier = result.get(context);
    if (earlier !== undefined && earlier !== value) throw new MulticlusterError(`${flag}: context "${context}" is given twice, as "${earlier}" and "${value}"`);
    result.set(context, value);
  }
  return result;
}

function checkContextList(contexts: readonly string[]): void {
  if (contexts.length < 2) throw new MulticlusterError(`link needs at least two --context values (one per cluster), got ${contexts.length}`);
  const seen = new Set<string>();
  for (const context of contexts) {
    if (seen.has(context)) throw new MulticlusterError(`--context "${context}" is given twice`);
    seen.add(context);
  }
}

/** Two contexts naming the same cluster would overwrite each other's secret (names are lowercased in the Secret name). */
function checkDistinctNames(names: Map<string, string>): void {
  const bySecret = new Map<string, string>();
  for (const [context, cluster] of names) {
    const other = bySecret.get(remoteSecretName(cluster));
    if (other !== undefined) {
      const first = names.get(other);
      const same = first === cluster ? `the same cluster name "${cluster}"` : `cluster names "${first}" and "${cluster}", which differ only in case`;
      throw new MulticlusterError(`contexts "${other}" and "${context}" have ${same}; every cluster needs its own name (ambit install --cluster-name, or --name-for)`);
    }
    bySecret.set(remoteSecretName(cluster), context);
  }
}

interface Member {
  context: string;
  client: ContextClient;
  cluster: string;
  server: string;
}

function dryRunSecret(member: Member, namespace: string, serviceAccount: string, token: ReaderToken | undefined): string {
  const input: RemoteSecretInput = {
    cluster: member.cluster,
    namespace,
    server: member.server,
    caData: token?.caData ?? `<ca.crt of secret ${namespace}/${tokenSecretName(serviceAccount)}, once created>`,
    token: REDACTED,
  };
  const pending = token ? '' : `# would first create secret ${namespace}/${tokenSecretName(serviceAccount)} in context ${member.context} (token of service account ${serviceAccount})\n`;
  return `${pending}${renderRedactedRemoteSecret(input)}`;
}

/**
 * Links the clusters of `options.contexts`; `out` receives one line per applied pair (or, in a dry
 * run, the Secrets that would be applied, tokens redacted).
 */
export async function linkClusters(options: LinkOptions, out: (text: string) => void, deps: MulticlusterDeps = defaultDeps('link')): Promise<void> {
  const namespace = options.namespace ?? DEFAULT_SYSTEM_NAMESPACE;
  const serviceAccount = options.serviceAccount ?? READER_SERVICE_ACCOUNT;
  const contexts = options.contexts;
  checkContextList(contexts);
  const nameFor = parseAssignments(options.nameFor ?? [], '--name-for', contexts);
  const serverOverrides = parseAssignments(options.serverFor ?? [], '--server-for', contexts);

  const view = await readKubeconfig(deps.kubectl);
  for (const context of contexts) resolveContextName(view, context);
  const clients = contexts.map((context) => new ContextClient(context, deps.kubectl, serverOfContext(view, context)));
  for (const client of clients) await client.checkReachable();

  const members: Member[] = [];
  for (const client of clients) {
    const { context } = client;
    const explicit = nameFor.get(context);
    const cluster = await resolveClusterName(client, namespace, explicit === undefined ? undefined : { value: explicit, source: `--name-for ${context}=${explicit}` }, `--name-for ${context}=<cluster>`);
    const override = serverOverrides.get(context);
    const server = serverFor(view, context, override === undefined ? undefined : { value: override, source: `--server-for ${context}=${override}` });
    members.push({ context, client, cluster, server });
  }
  checkDistinctNames(new Map(members.map((m) => [m.context, m.cluster])));
  for (const member of members) warnIfLoopback(member.server, member.cluster, deps.warn);

  const rendered = new Map<string, { yaml: string; token?: string }>();
  for (const member of members) {
    if (options.dryRun) {
      const token = await peekReaderToken(member.client, { namespace, serviceAccount });
      rendered.set(member.context, { yaml: dryRunSecret(member, namespace, serviceAccount, token) });
    } else {
      const { token, caData } = await ensureReaderToken(member.client, deps.clock, { namespace, serviceAccount, timeoutMs: options.timeoutMs, progress: deps.progress });
      rendered.set(member.context, { yaml: renderRemoteSecret({ cluster: member.cluster, namespace, server: member.server, caData, token }), token });
    }
  }

  for (const { target, source } of orderedPairs(members)) {
    const secret = rendered.get(source.context)!;
    const what = `secret ${namespace}/${remoteSecretName(source.cluster)}`;
    if (options.dryRun) {
      out(`# would apply to context ${target.context} (cluster ${target.cluster}): access to cluster ${source.cluster}\n${secret.yaml}`);
      continue;
    }
    await target.client.apply(secret.yaml, { namespace, fieldManager: FIELD_MANAGER, what, secrets: secret.token ? [secret.token] : [] });
    out(`context ${target.context}: applied ${what}; cluster ${target.cluster} now reads cluster ${source.cluster}\n`);
  }
}
