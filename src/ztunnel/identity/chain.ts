import { X509Certificate as NodeX509 } from 'node:crypto';
import { spkiOf } from '../../util/keys.js';
import { pemCertificates } from '../../util/pem.js';
import { certificateUriSans } from '../../util/san.js';
import type { CertificateView } from '../admin/types.js';

/** A CA response that passed verification. */
export interface IssuedChain {
  /** Leaf, then intermediates: what a TLS endpoint presents. */
  presentedPem: string[];
  /** Self-signed roots the response ended with. */
  rootsPem: string[];
  /** Every certificate of the response, leaf first (for the admin view). */
  allPem: string[];
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
}

/** The CA's response cannot be used; the message says why. */
export class ChainError extends Error {}

/**
 * Checks a CreateCertificate response: the leaf is for `identity` and our key, is not expired, each
 * certificate is signed by the next, and the last is a self-signed root or is signed by a known root.
 * Elements may hold several PEM certificates (Istio's CA concatenates intermediates in one element).
 */
export function verifyIssuedChain(
  elements: string[],
  expected: { identity: string; publicKeySpki: Buffer; knownRootsPem: string; now: number },
): IssuedChain {
  const allPem = elements.flatMap(pemCertificates);
  if (allPem.length === 0) throw new ChainError('CA response holds no certificate');
  const certs = allPem.map((pem, index) => {
    try {
      return new NodeX509(pem);
    } catch (err) {
      throw new ChainError(`CA response certificate ${index + 1} is not valid X.509: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  const leaf = certs[0]!;
  const leafSans = certificateUriSans(leaf);
  if (!leafSans.includes(expected.identity)) {
    throw new ChainError(`issued certificate is for ${JSON.stringify(leafSans)}, not ${expected.identity}`);
  }
  if (!spkiOf(leaf).equals(expected.publicKeySpki)) throw new ChainError('issued certificate is not for the key of our CSR');
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= expected.now) throw new ChainError(`issued certificate expired at ${notAfter.toISOString()}`);

  for (let i = 0; i + 1 < certs.length; i++) {
    if (!issuedBy(certs[i]!, certs[i + 1]!)) {
      throw new ChainError(`CA response certificate ${i + 1} (${subjectOf(certs[i]!)}) is not signed by certificate ${i + 2} (${subjectOf(certs[i + 1]!)})`);
    }
  }
  const last = certs[certs.length - 1]!;
  const selfSigned = certs.length > 1 && issuedBy(last, last);
  if (!selfSigned) {
    const known = pemCertificates(expected.knownRootsPem).map((pem) => new NodeX509(pem));
    if (!known.some((root) => root.raw.equals(last.raw) || issuedBy(last, root))) {
      throw new ChainError(`CA response does not end at a root: ${subjectOf(last)} is not self-signed nor signed by a known root`);
    }
  }
  const rootCount = selfSigned ? 1 : 0;
  return {
    presentedPem: allPem.slice(0, allPem.length - rootCount),
    rootsPem: allPem.slice(allPem.length - rootCount),
    allPem,
    serialNumber: leaf.serialNumber,
    notBefore: new Date(leaf.validFrom),
    notAfter,
  };
}

/** Subject, issuer, URI SANs and validity of each certificate, for the admin view. */
export function describeChain(pems: string[]): CertificateView['chain'] {
  return pems.map((pem) => {
    const cert = new NodeX509(pem);
    return {
      subject: distinguishedNameOf(cert.subject),
      issuer: distinguishedNameOf(cert.issuer),
      uriSans: certificateUriSans(cert),
      notBefore: new Date(cert.validFrom).toISOString(),
      notAfter: new Date(cert.validTo).toISOString(),
    };
  });
}

function issuedBy(child: NodeX509, parent: NodeX509): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

function subjectOf(cert: NodeX509): string {
  return cert.subject ? distinguishedNameOf(cert.subject) : '(empty subject)';
}

/** Node prints a name one attribute per line (and an empty one as undefined); the admin view and errors show `CN=a, O=b`. */
function distinguishedNameOf(name: string | undefined): string {
  return (name ?? '').split('\n').join(', ');
}
