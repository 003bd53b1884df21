// Key pairs for workload certificates: generation and PEM export with node's webcrypto.
import { webcrypto, type X509Certificate } from 'node:crypto';
import { pemEncode } from './pem.js';

const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;

/** A fresh, extractable ECDSA P-256 key pair. */
export async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

export async function exportKeyPem(key: CryptoKey): Promise<string> {
  return pemEncode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

export async function exportPublicKeyPem(key: CryptoKey): Promise<string> {
  return pemEncode(await webcrypto.subtle.exportKey('spki', key), 'PUBLIC KEY');
}

/** DER SubjectPublicKeyInfo of a certificate's key, for comparing keys. */
export function spkiOf(cert: X509Certificate): Buffer {
  return cert.publicKey.export({ type: 'spki', format: 'der' });
}
