import { DEFAULT_TRUST_DOMAIN } from './resources.js';

/** A workload identity: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`. */
export interface Identity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

export function spiffeUri(identity: Identity): string {
  return `spiffe://${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
}

export class InvalidIdentityError extends Error {}

const SPIFFE_PATTERN = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

export function parseSpiffeUri(uri: string): Identity {
  const match = SPIFFE_PATTERN.exec(uri);
  if (!match) throw new InvalidIdentityError(`not a SPIFFE workload identity (want spiffe://<trust domain>/ns/<ns>/sa/<sa>): ${JSON.stringify(uri)}`);
  return { trustDomain: match[1]!, namespace: match[2]!, serviceAccount: match[3]! };
}

export function identityOf(workload: { trustDomain: string; namespace: string; serviceAccount: string }): Identity {
  return {
    trustDomain: workload.trustDomain || DEFAULT_TRUST_DOMAIN,
    namespace: workload.namespace,
    serviceAccount: workload.serviceAccount || 'default',
  };
}
