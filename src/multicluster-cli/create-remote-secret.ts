/**
 * `ambit create-remote-secret`: what `istioctl create-remote-secret` does. Ensures a long-lived
 * token of the reader service account in one cluster and renders the Secret another cluster's
 * control plane needs to read it. The token only ever leaves in the rendered Secret.
 */
import { DEFAULT_SYSTEM_NAMESPACE } from '../api/resources.js';
import { READER_SERVICE_ACCOUNT } from '../api/names.js';
import { resolveClusterName } from './cluster-name.js';
import { serverFor, warnIfLoopback } from './api-server.js';
import { ContextClient, defaultDeps, readKubeconfig, resolveContextName, serverOfContext, type MulticlusterDeps } from './kube-access.js';
import { ensureReaderToken } from './reader-token.js';
import { renderRemoteSecret, type RemoteSecretInput } from './remote-secret.js';

export interface CreateRemoteSecretOptions {
  /** kubeconfig context of the cluster to give access to; the current context when omitted. */
  context?: string;
  /** Cluster name; the installed control plane's CLUSTER_ID when omitted. */
  name?: string;
  namespace?: string;
  /** API server URL written into the kubeconfig; the context's own when omitted. */
  server?: string;
  serviceAccount?: string;
  timeoutMs?: number;
}

/** Ensures the token and returns the inputs of the remote secret (token included: never log them). */
export async function remoteSecretInputFor(options: CreateRemoteSecretOptions, deps: MulticlusterDeps): Promise<RemoteSecretInput> {
  const namespace = options.namespace ?? DEFAULT_SYSTEM_NAMESPACE;
  const serviceAccount = options.serviceAccount ?? READER_SERVICE_ACCOUNT;
  const view = await readKubeconfig(deps.kubectl);
  const context = resolveContextName(view, options.context);
  const server = serverFor(view, context, options.server === undefined ? undefined : { value: options.server, source: '--server' });
  const client = new ContextClient(context, deps.kubectl, serverOfContext(view, context));
  await client.checkReachable();
  const cluster = await resolveClusterName(client, namespace, options.name === undefined ? undefined : { value: options.name, source: '--name' }, '--name <cluster>');
  warnIfLoopback(server, cluster, deps.warn);
  const { token, caData } = await ensureReaderToken(client, deps.clock, { namespace, serviceAccount, timeoutMs: options.timeoutMs, progress: deps.progress });
  return { cluster, namespace, server, caData, token };
}

/** The remote secret YAML (with the token: for stdout only). */
export async function createRemoteSecret(options: CreateRemoteSecretOptions, deps: MulticlusterDeps = defaultDeps('create-remote-secret')): Promise<string> {
  return renderRemoteSecret(await remoteSecretInputFor(options, deps));
}
