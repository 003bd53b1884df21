// The CA's side of certificate requests: parsing and verifying PKCS#10 (the proxies build theirs with uri-csr.ts).
import * as x509 from '@peculiar/x509';
import './pki.js'; // installs node's webcrypto as @peculiar/x509's crypto provider

/** Bad certificate signing request; the message says what is wrong with it. */
export class CsrError extends Error {}

/** A PKCS#10 request whose signature has been checked (proof that the requester holds the key). */
export interface VerifiedCsr {
  readonly request: x509.Pkcs10CertificateRequest;
  /** URI subject alternative names the request asks for. */
  readonly uriSans: string[];
  readonly verified: true;
}

const MAX_CSR_PEM_LENGTH = 64 * 1024;
const CSR_PEM_BLOCK = /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----[\s\S]+?-----END (?:NEW )?CERTIFICATE REQUEST-----/;
const MIN_RSA_BITS = 2048;

/** Parses a PEM PKCS#10 request and verifies its signature. Throws CsrError. */
export async function readCsr(pem: string): Promise<VerifiedCsr> {
  if (pem.length > MAX_CSR_PEM_LENGTH) throw new CsrError(`CSR is ${pem.length} bytes, more than the ${MAX_CSR_PEM_LENGTH} allowed`);
  const block = CSR_PEM_BLOCK.exec(pem)?.[0];
  if (!block) throw new CsrError('CSR is not PEM: no "-----BEGIN CERTIFICATE REQUEST-----" block');
  let request: x509.Pkcs10CertificateRequest;
  try {
    const base64 = block.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
    request = new x509.Pkcs10CertificateRequest(Buffer.from(base64, 'base64'));
  } catch (err) {
    throw new CsrError(`CSR is not a valid PKCS#10 request: ${messageOf(err)}`);
  }
  let signatureValid: boolean;
  try {
    signatureValid = await request.verify();
  } catch (err) {
    throw new CsrError(`CSR signature cannot be checked: ${messageOf(err)}`);
  }
  if (!signatureValid) throw new CsrError('CSR signature does not match its public key');
  checkKeyStrength(request);
  return { request, uriSans: uriSansOf(request), verified: true };
}

/** URI SANs of a certificate or a request. */
export function uriSansOf(source: x509.X509Certificate | x509.Pkcs10CertificateRequest): string[] {
  const sans: string[] = [];
  for (const extension of source.extensions) {
    if (!(extension instanceof x509.SubjectAlternativeNameExtension)) continue;
    for (const name of extension.names.items) if (name.type === 'url') sans.push(name.value);
  }
  return sans;
}

function checkKeyStrength(request: x509.Pkcs10CertificateRequest): void {
  const algorithm = request.publicKey.algorithm as { name?: string; modulusLength?: number; namedCurve?: string };
  if (algorithm.name === 'ECDSA') return;
  if (algorithm.name !== 'RSASSA-PKCS1-v1_5' && algorithm.name !== 'RSA-PSS') {
    throw new CsrError(`CSR public key type ${algorithm.name ?? 'unknown'} is not supported (want EC or RSA)`);
  }
  const bits = algorithm.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) throw new CsrError(`CSR RSA key has ${bits} bits, fewer than the ${MIN_RSA_BITS} required`);
}

/** Signature algorithm matching a private key (hash sized to the EC curve). */
export function signingAlgorithmFor(key: CryptoKey): Algorithm | EcdsaParams {
  const algorithm = key.algorithm as { name: string; namedCurve?: string };
  if (algorithm.name === 'ECDSA') {
    const hash = algorithm.namedCurve === 'P-384' ? 'SHA-384' : algorithm.namedCurve === 'P-521' ? 'SHA-512' : 'SHA-256';
    return { name: 'ECDSA', hash } as EcdsaParams;
  }
  return { name: algorithm.name, hash: 'SHA-256' } as Algorithm;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
