import { createPrivateKey, createPublicKey, X509Certificate as NodeX509, type KeyObject } from 'node:crypto';
import { spkiOf } from '../../util/keys.js';
import { pemCertificates } from '../../util/pem.js';
import { loadCa, type CertificateAuthority } from '../../util/pki.js';

/** PEM files of a CA, with Istio's key names (`cacerts` / `istio-ca-secret`). */
export interface CaMaterial {
  'ca-cert.pem': string;
  'ca-key.pem': string;
  /** Intermediates from ca-cert.pem up to the root; may be empty when the CA cert is the root. */
  'cert-chain.pem': string;
  /** Trust anchors; several during a root rotation. */
  'root-cert.pem': string;
}

/** CA material that passed validation. */
export interface ValidatedCa {
  ca: CertificateAuthority;
  /** The signing CA certificate, then its issuers, ending at a root from root-cert.pem. */
  chainPem: string[];
  /** Every root of root-cert.pem (PEM, concatenated). */
  rootsPem: string;
  notAfter: Date;
}

/** Invalid CA material; the message names where it came from and which key is wrong. */
export class CaMaterialError extends Error {}

/**
 * Checks CA material the way a plug-in CA must be: the key is the CA certificate's key, the CA
 * certificate is a CA, every certificate is within its validity, and ca-cert.pem chains through
 * cert-chain.pem to a root of root-cert.pem. `origin` names the source in errors (e.g. `Secret istio-system/cacerts`).
 */
export async function validateCaMaterial(material: CaMaterial, origin: string, now = new Date()): Promise<ValidatedCa> {
  const fail = (key: keyof CaMaterial, problem: string): never => {
    throw new CaMaterialError(`${origin} key ${key}: ${problem}`);
  };
  const caCerts = parseCertificates(material['ca-cert.pem'], 'ca-cert.pem', fail);
  if (caCerts.length !== 1) fail('ca-cert.pem', `holds ${caCerts.length} certificates, want exactly 1`);
  const caCert = caCerts[0]!;
  const roots = parseCertificates(material['root-cert.pem'], 'root-cert.pem', fail);
  if (roots.length === 0) fail('root-cert.pem', 'holds no certificate');
  const intermediates = material['cert-chain.pem'].trim() ? parseCertificates(material['cert-chain.pem'], 'cert-chain.pem', fail) : [];

  const privateKey = parsePrivateKey(material['ca-key.pem'], fail);
  if (!spkiOf(caCert).equals(createPublicKey(privateKey).export({ type: 'spki', format: 'der' }))) {
    fail('ca-key.pem', `is not the key of the certificate in ca-cert.pem (${describe(caCert)})`);
  }
  if (!caCert.ca) fail('ca-cert.pem', `${describe(caCert)} is not a CA certificate (basicConstraints CA is not true)`);

  const chain = buildChain(caCert, intermediates, roots, fail);
  for (const link of chain) checkValidity(link, now, fail);

  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  let ca: CertificateAuthority;
  try {
    ca = await loadCa(caCert.toString(), pkcs8);
  } catch (err) {
    return fail('ca-key.pem', `cannot be used for signing: ${err instanceof Error ? err.message : String(err)}`);
  }
  return {
    ca,
    chainPem: chain.map((link) => link.cert.toString()),
    rootsPem: roots.map((cert) => cert.toString()).join(''),
    notAfter: new Date(caCert.validTo),
  };
}

type Fail = (key: keyof CaMaterial, problem: string) => never;

function parseCertificates(pem: string, key: keyof CaMaterial, fail: Fail): NodeX509[] {
  const blocks = pemCertificates(pem);
  return blocks.map((block, index) => {
    try {
      return new NodeX509(block);
    } catch (err) {
      return fail(key, `certificate ${index + 1} of ${blocks.length} is not valid X.509: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
}

function parsePrivateKey(pem: string, fail: Fail): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    // The parser's message can quote key material; say only what is wrong.
    return fail('ca-key.pem', 'is not a PEM private key (PKCS#1, SEC1 or PKCS#8)');
  }
  if (key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'ec') {
    fail('ca-key.pem', `key type ${key.asymmetricKeyType ?? 'unknown'} is not supported (want RSA or EC)`);
  }
  return key;
}

interface ChainLink {
  cert: NodeX509;
  /** The material key the certificate came from, for error messages. */
  key: keyof CaMaterial;
}

/** ca-cert, then cert-chain's certificates (skipping a repeat of ca-cert), then the root that signed the last one. */
function buildChain(caCert: NodeX509, intermediates: NodeX509[], roots: NodeX509[], fail: Fail): ChainLink[] {
  const chain: ChainLink[] = [{ cert: caCert, key: 'ca-cert.pem' }];
  for (const cert of intermediates) {
    if (!cert.raw.equals(chain[chain.length - 1]!.cert.raw)) chain.push({ cert, key: 'cert-chain.pem' });
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    const [child, parent] = [chain[i]!.cert, chain[i + 1]!.cert];
    if (!issuedBy(child, parent)) {
      fail('cert-chain.pem', `${describe(child)} is not signed by the next certificate, ${describe(parent)}`);
    }
  }
  const last = chain[chain.length - 1]!;
  if (roots.some((root) => root.raw.equals(last.cert.raw))) return chain;
  const root = roots.find((candidate) => issuedBy(last.cert, candidate));
  if (!root) {
    return fail(last.key, `${describe(last.cert)} does not chain to any certificate of root-cert.pem (${roots.map(describe).join('; ')})`);
  }
  chain.push({ cert: root, key: 'root-cert.pem' });
  return chain;
}

function issuedBy(child: NodeX509, parent: NodeX509): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

function checkValidity({ cert, key }: ChainLink, now: Date, fail: Fail): void {
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  if (now < notBefore) fail(key, `${describe(cert)} is not valid before ${notBefore.toISOString()}`);
  if (now > notAfter) fail(key, `${describe(cert)} expired at ${notAfter.toISOString()}`);
}

function describe(cert: NodeX509): string {
  const subject = cert.subject.split('\n').join(', ') || '(empty subject)';
  return `certificate "${subject}"`;
}
