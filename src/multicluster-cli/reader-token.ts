/**
 * A long-lived token of the reader service account (created by `ambit install`): a Secret of type
 * `kubernetes.io/service-account-token` that the token controller fills with `token` and `ca.crt`,
 * the same Secret istioctl and the manual recipe create.
 */
import type { Clock, ContextClient } from './kube-access.js';
import { MulticlusterError } from './kube-access.js';
import { tokenSecretName } from './remote-secret.js';

const TOKEN_TYPE = 'kubernetes.io/service-account-token';
const SERVICE_ACCOUNT_ANNOTATION = 'kubernetes.io/service-account.name';
const FIELD_MANAGER = 'ambit-remote-secret';
const POLL_INTERVAL_MS = 500;
export const DEFAULT_TOKEN_TIMEOUT_MS = 30_000;

interface SecretJson {
  type?: string;
  metadata?: { annotations?: Record<string, string> };
  data?: Record<string, string>;
}

export interface ReaderTokenOptions {
  namespace: string;
  serviceAccount: string;
  timeoutMs?: number;
  progress?: (line: string) => void;
}

export interface ReaderToken {
  token: string;
  /** Base64 of the cluster CA (the Secret's `ca.crt`, as stored). */
  caData: string;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Fails, pointing at `ambit install`, when the reader service account does not exist. */
export async function requireReaderServiceAccount(client: ContextClient, options: Pick<ReaderTokenOptions, 'namespace' | 'serviceAccount'>): Promise<void> {
  const account = await client.get('serviceaccount', options.namespace, options.serviceAccount);
  if (!account) {
    throw new MulticlusterError(
      `service account ${options.namespace}/${options.serviceAccount} does not exist in context "${client.context}"; run \`ambit install --context ${client.context}\` first (it creates the read-only service account remote control planes use)`,
    );
  }
}

function tokenSecretManifest(options: ReaderTokenOptions): string {
  return [
    'apiVersion: v1',
    'kind: Secret',
    'metadata:',
    `  name: ${tokenSecretName(options.serviceAccount)}`,
    `  namespace: ${options.namespace}`,
    '  annotations:',
    `    ${SERVICE_ACCOUNT_ANNOTATION}: ${options.serviceAccount}`,
    `type: ${TOKEN_TYPE}`,
    '',
  ].join('\n');
}

/** Fails when an existing Secret of that name is not a token of the service account. */
function checkUsable(secret: SecretJson, client: ContextClient, options: Pick<ReaderTokenOptions, 'namespace' | 'serviceAccount'>): void {
  const name = tokenSecretName(options.serviceAccount);
  const owner = secret.metadata?.annotations?.[SERVICE_ACCOUNT_ANNOTATION];
  const problem =
    secret.type !== TOKEN_TYPE
      ? `is of type ${secret.type ?? '(none)'}, not ${TOKEN_TYPE}`
      : owner !== options.serviceAccount
        ? `holds a token of service account "${owner ?? '(none)'}", not "${options.serviceAccount}"`
        : undefined;
  if (problem) {
    throw new MulticlusterError(
      `secret ${options.namespace}/${name} in context "${client.context}" ${problem}; delete it (kubectl --context ${client.context} -n ${options.namespace} delete secret ${name}) and run again`,
    );
  }
}

/** The token and CA of a filled token Secret, or undefined while the token controller has not filled it. */
function filled(secret: SecretJson | undefined, where: string): ReaderToken | undefined {
  const token = secret?.data?.token;
  const caData = secret?.data?.['ca.crt'];
  if (!token || !caData) return undefined;
  if (!BASE64.test(token)) throw new MulticlusterError(`${where}: data.token is not valid base64`);
  if (!BASE64.test(caData)) throw new MulticlusterError(`${where}: data.ca.crt is not valid base64`);
  return { token: Buffer.from(token, 'base64').toString('utf8'), caData };
}

/**
 * The reader token of the cluster of `client`, reusing the token Secret when it exists and is filled;
 * otherwise creates it and waits for the token controller.
 */
export async function ensureReaderToken(client: ContextClient, clock: Clock, options: ReaderTokenOptions): Promise<ReaderToken> {
  const name = tokenSecretName(options.serviceAccount);
  const where = `secret ${options.namespace}/${name} in context "${client.context}"`;
  await requireReaderServiceAccount(client, options);
  let secret = await client.get<SecretJson>('secret', options.namespace, name);
  if (secret) {
    checkUsable(secret, client, options);
  } else {
    await client.apply(tokenSecretManifest(options), { namespace: options.namespace, fieldManager: FIELD_MANAGER, what: `secret ${options.namespace}/${name}` });
    options.progress?.(`context ${client.context}: created secret ${options.namespace}/${name} (a token of service account ${options.serviceAccount}); waiting for the token controller`);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TOKEN_TIMEOUT_MS;
  const deadline = clock.now() + timeoutMs;
  while (true) {
    const token = filled(secret, where);
    if (token) return token;
    if (clock.now() >= deadline) break;
    await clock.sleep(POLL_INTERVAL_MS);
    secret = await client.get<SecretJson>('secret', options.namespace, name);
    if (secret) checkUsable(secret, client, options);
  }
  const seconds = Math.round(timeoutMs / 1000);
  if (!secret) throw new MulticlusterError(`${where} disappeared while waiting for its token (the token controller deletes token secrets of a service account that no longer exists)`);
  if (!secret.data?.token) {
    throw new MulticlusterError(
      `the token controller did not fill data.token of ${where} within ${seconds}s; is kube-controller-manager running with --service-account-private-key-file?`,
    );
  }
  throw new MulticlusterError(`the token controller filled data.token but not data.ca.crt of ${where} within ${seconds}s; kube-controller-manager needs --root-ca-file`);
}

/** Dry run: the filled token Secret if it already exists, without creating anything. */
export async function peekReaderToken(client: ContextClient, options: Pick<ReaderTokenOptions, 'namespace' | 'serviceAccount'>): Promise<ReaderToken | undefined> {
  await requireReaderServiceAccount(client, options);
  const name = tokenSecretName(options.serviceAccount);
  const secret = await client.get<SecretJson>('secret', options.namespace, name);
  if (!secret) return undefined;
  checkUsable(secret, client, options);
  return filled(secret, `secret ${options.namespace}/${name} in context "${client.context}"`);
}
