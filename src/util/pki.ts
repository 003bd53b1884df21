// Certificate authorities and leaf certificates for the CA and the lab (@peculiar/x509); key helpers re-exported from keys.ts.
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { exportKeyPem, generateKeys } from './keys.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { exportKeyPem, exportPublicKeyPem, generateKeys } from './keys.js';

const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;

export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

export interface CertificateAuthority extends KeyPairPem {
  keys: CryptoKeyPair;
  cert: x509.X509Certificate;
}

export interface LeafOptions {
  commonName: string;
  organizations?: string[];
  dnsNames?: string[];
  ipAddresses?: string[];
  uris?: string[];
  server?: boolean;
  client?: boolean;
  lifetimeMs?: number;
}

const DAY = 24 * 3600 * 1000;

function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

function distinguishedName(commonName: string, organizations: string[] = []): string {
  const escape = (v: string) => v.replace(/([,+"\\<>;=])/g, '\\$1');
  return [`CN=${escape(commonName)}`, ...organizations.map((o) => `O=${escape(o)}`)].join(', ');
}

export async function createRootCa(commonName: string, lifetimeMs = 3650 * DAY, organizations: string[] = []): Promise<CertificateAuthority> {
  const keys = await generateKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: distinguishedName(commonName, organizations),
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + lifetimeMs),
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keys, cert, certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey) };
}

export async function issueLeaf(ca: CertificateAuthority, options: LeafOptions): Promise<KeyPairPem> {
  const keys = await generateKeys();
  const now = Date.now();
  const names: x509.JsonGeneralName[] = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
    ...(options.uris ?? []).map((value) => ({ type: 'url' as const, value })),
  ];
  const usages: string[] = [];
  if (options.server ?? false) usages.push(x509.ExtendedKeyUsage.serverAuth);
  if (options.client ?? false) usages.push(x509.ExtendedKeyUsage.clientAuth);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false),
  ];
  if (usages.length) extensions.push(new x509.ExtendedKeyUsageExtension(usages, false));
  if (names.length) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: distinguishedName(options.commonName, options.organizations),
    issuer: ca.cert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (options.lifetimeMs ?? 3650 * DAY)),
    signingAlgorithm: SIGNING,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions,
  });
  return { certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey) };
}

/** Loads a CA from PEM (certificate and PKCS#8 EC or RSA key). */
export async function loadCa(certPem: string, keyPem: string): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(certPem);
  const der = x509.PemConverter.decode(keyPem)[0];
  if (!der) throw new Error('CA key PEM holds no key');
  const algorithm = cert.publicKey.algorithm as unknown as webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  const importAlg = algorithm.name === 'ECDSA' ? algorithm : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, importAlg, true, ['sign']);
  const publicKey = await cert.publicKey.export(importAlg, ['verify'], webcrypto as unknown as Crypto);
  return { keys: { privateKey, publicKey } as CryptoKeyPair, cert, certPem, keyPem };
}

export function certificateExpiry(certPem: string): Date {
  return new Date(new NodeX509(certPem).validTo);
}
