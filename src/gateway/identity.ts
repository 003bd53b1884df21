import { readFile } from 'node:fs/promises';
import { spiffeUri } from '../api/identity.js';
import type { Logger } from '../util/log.js';

/**
 * The service account a Kubernetes service-account token was issued to, read from its payload
 * without verifying it (the CA verifies it; this only names the identity to ask for).
 * Bound tokens carry `kubernetes.io.serviceaccount.name`, legacy secret tokens
 * `kubernetes.io/serviceaccount/service-account.name`. Undefined when the token names none.
 */
export function serviceAccountOfToken(token: string): string | undefined {
  const payload = token.trim().split('.')[1];
  if (!payload) return undefined;
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof claims !== 'object' || claims === null) return undefined;
  const record = claims as Record<string, unknown>;
  const bound = record['kubernetes.io'];
  if (typeof bound === 'object' && bound !== null) {
    const serviceAccount = (bound as Record<string, unknown>).serviceaccount;
    if (typeof serviceAccount === 'object' && serviceAccount !== null) {
      const name = (serviceAccount as Record<string, unknown>).name;
      if (typeof name === 'string' && name !== '') return name;
    }
  }
  const legacy = record['kubernetes.io/serviceaccount/service-account.name'];
  return typeof legacy === 'string' && legacy !== '' ? legacy : undefined;
}

export interface GatewayIdentityInput {
  trustDomain: string;
  namespace: string;
  /** The Gateway's name: the controller runs the gateway under a ServiceAccount of that name. */
  gatewayName: string;
  tokenPath: string;
}

/**
 * The gateway's own SPIFFE identity. The CA grants a caller exactly the identity of its token, so
 * the service account comes from the token when it names one (a mismatch with the Gateway's name is
 * logged: it means the Deployment was not created by our controller); else from the Gateway's name.
 */
export async function gatewayIdentity(input: GatewayIdentityInput, log: Logger): Promise<string> {
  let fromToken: string | undefined;
  try {
    fromToken = serviceAccountOfToken(await readFile(input.tokenPath, 'utf8'));
  } catch (error) {
    log.warn({ tokenPath: input.tokenPath, err: (error as NodeJS.ErrnoException).code ?? String(error) }, 'cannot read the service account token; assuming the service account is named after the Gateway');
  }
  if (fromToken && fromToken !== input.gatewayName) {
    log.warn({ gateway: input.gatewayName, serviceAccount: fromToken }, 'the token names a service account other than the Gateway; using the token\'s');
  }
  return spiffeUri({ trustDomain: input.trustDomain, namespace: input.namespace, serviceAccount: fromToken ?? input.gatewayName });
}
