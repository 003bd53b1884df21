// SPIFFE identities in peer certificates: reading URI SANs, and the client's check of the server's identity.
import type { PeerCertificate } from 'node:tls';

import { parseSpiffeUri } from '../api/identity.js';

/**
 * Values of one kind of subject alternative name, from Node's `subjectaltname` string
 * (`URI:spiffe://td/ns/a/sa/b, DNS:x`). Node writes a value as a JSON string when it holds
 * characters that would make the list ambiguous, so both forms are read.
 */
export function subjectAltNames(subjectAltName: string | undefined, kind: string): string[] {
  const values: string[] = [];
  if (!subjectAltName) return values;
  let position = 0;
  while (position < subjectAltName.length) {
    const colon = subjectAltName.indexOf(':', position);
    if (colon < 0) break;
    const type = subjectAltName.slice(position, colon);
    let value: string;
    let next: number;
    if (subjectAltName[colon + 1] === '"') {
      const end = closingQuote(subjectAltName, colon + 2);
      if (end < 0) break;
      try {
        value = JSON.parse(subjectAltName.slice(colon + 1, end + 1)) as string;
      } catch {
        break;
      }
      next = subjectAltName.indexOf(', ', end);
    } else {
      next = subjectAltName.indexOf(', ', colon);
      value = subjectAltName.slice(colon + 1, next < 0 ? undefined : next);
    }
    if (type === kind) values.push(value);
    if (next < 0) break;
    position = next + 2;
  }
  return values;
}

function closingQuote(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '"') return i;
  }
  return -1;
}

/** SPIFFE workload identities among a certificate's URI SANs. */
export function spiffeIdentities(subjectAltName: string | undefined): string[] {
  return subjectAltNames(subjectAltName, 'URI').filter((uri) => {
    try {
      parseSpiffeUri(uri);
      return true;
    } catch {
      return false;
    }
  });
}

/** Raised from the TLS client's identity check when the server is not who the client dialled. */
export class UnexpectedPeerIdentityError extends Error {
  readonly code = 'ERR_UNEXPECTED_PEER_IDENTITY';

  constructor(
    readonly presented: string[],
    readonly expected: string[],
  ) {
    super(
      presented.length
        ? `peer presented ${presented.join(', ')}, expected one of ${expected.join(', ')}`
        : `peer certificate carries no SPIFFE URI SAN, expected one of ${expected.join(', ')}`,
    );
  }
}

/** A `checkServerIdentity` replacement: the server must present one of the expected SPIFFE identities. */
export function expectIdentities(expected: readonly string[]): (host: string, certificate: PeerCertificate) => Error | undefined {
  const allowed = new Set(expected);
  return (_host, certificate) => {
    const presented = spiffeIdentities(certificate.subjectaltname);
    return presented.some((identity) => allowed.has(identity)) ? undefined : new UnexpectedPeerIdentityError(presented, [...allowed]);
  };
}
