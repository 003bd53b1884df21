import { createHash, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { parseSpiffeUri } from '../../api/identity.js';
import { readCsr, signingAlgorithmFor, type VerifiedCsr } from '../../util/csr.js';
import type { Logger } from '../../util/log.js';
import { createRootCa, exportKeyPem, generateKeys } from '../../util/pki.js';
import { validateCaMaterial, type CaMaterial, type ValidatedCa } from './material.js';
import {
  createSecret,
  PLUGIN_CA_SECRET,
  publishRootCertificates,
  readSecretData,
  SELF_SIGNED_CA_SECRET,
  SELF_SIGNED_CA_SECRET_TYPE,
  type CaKubeApi,
} from './store.js';

/** Where the signing key came from. */
export type AuthoritySource = 'cacerts' | 'istio-ca-secret' | 'created';

export const DEFAULT_MAX_LEAF_TTL_SECONDS = 90 * 24 * 3600;
const ROOT_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000;
const BACKDATE_MS = 60_000;
const PLUGIN_KEYS = ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem'] as const;

export interface AuthorityOptions {
  trustDomain: string;
  /** Upper bound of any leaf lifetime, whatever the caller asks (default 90 days). */
  maxLeafTtlSeconds?: number;
  now?: () => number;
}

/** The mesh CA: signs workload certificates with the plug-in or self-signed CA key. */
export class MeshAuthority {
  /** Extensions every leaf carries (all but the SAN), built once. */
  private readonly commonExtensions: Promise<x509.Extension[]>;
  private readonly signingAlgorithm: Algorithm | EcdsaParams;
  private readonly caNotAfter: number;
  private readonly maxLeafTtlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly validated: ValidatedCa,
    readonly source: AuthoritySource,
    readonly trustDomain: string,
    options: Omit<AuthorityOptions, 'trustDomain'> = {},
  ) {
    this.commonExtensions = x509.AuthorityKeyIdentifierExtension.create(validated.ca.cert, false).then((authorityKeyId) => [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
      authorityKeyId,
    ]);
    this.signingAlgorithm = signingAlgorithmFor(validated.ca.keys.privateKey);
    this.caNotAfter = validated.notAfter.getTime();
    this.maxLeafTtlMs = (options.maxLeafTtlSeconds ?? DEFAULT_MAX_LEAF_TTL_SECONDS) * 1000;
    this.now = options.now ?? Date.now;
  }

  /** Trust anchors (PEM, concatenated): what `istio-ca-root-cert` publishes. */
  get rootsPem(): string {
    return this.validated.rootsPem;
  }

  /** The signing CA certificate, then its issuers up to the root (PEM each). */
  get caChainPem(): readonly string[] {
    return this.validated.chainPem;
  }

  /** For logs: no key material. */
  describe(): { source: AuthoritySource; subject: string; notAfter: string; rootFingerprints: string[] } {
    const caCert = new NodeX509(this.validated.chainPem[0]!);
    return {
      source: this.source,
      subject: caCert.subject.split('\n').join(', '),
      notAfter: this.validated.notAfter.toISOString(),
      rootFingerprints: rootFingerprints(this.validated.rootsPem),
    };
  }

  /**
   * Issues a workload certificate for `identity` (a SPIFFE URI) to the key of a CSR whose signature
   * has been verified; nothing else from the CSR is used. Returns the chain, leaf first, root last.
   */
  async sign(csr: string | VerifiedCsr, identity: string, ttlSeconds: number): Promise<string[]> {
    const request = typeof csr === 'string' ? await readCsr(csr) : csr;
    const id = parseSpiffeUri(identity);
    if (id.trustDomain !== this.trustDomain) throw new Error(`identity ${identity} is outside trust domain ${this.trustDomain}`);
    if (!(ttlSeconds > 0)) throw new Error(`certificate lifetime must be positive, got ${ttlSeconds} s`);
    const leaf = await this.issue({
      publicKey: request.request.publicKey,
      ttlMs: ttlSeconds * 1000,
      names: [{ type: 'url', value: identity }],
      sanCritical: true,
      subject: undefined,
    });
    return [leaf, ...this.validated.chainPem];
  }

  /**
   * A TLS server certificate signed by the mesh CA for the control plane's own endpoint, so ztunnels
   * verify it with `istio-ca-root-cert`. Returns the chain (leaf + CA chain without the root) and key.
   */
  async issueServerCertificate(options: { dnsNames: string[]; ipAddresses?: string[]; ttlSeconds: number }): Promise<{ certChainPem: string; keyPem: string }> {
    const keys = await generateKeys();
    const names: x509.JsonGeneralName[] = [
      ...options.dnsNames.map((value) => ({ type: 'dns' as const, value })),
      ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
    ];
    const leaf = await this.issue({
      publicKey: keys.publicKey,
      ttlMs: options.ttlSeconds * 1000,
      names,
      sanCritical: false,
      subject: `CN=${options.dnsNames[0] ?? 'ambit-controlplane'}`,
    });
    const chain = [leaf, ...this.validated.chainPem.slice(0, -1)].join('');
    return { certChainPem: chain, keyPem: await exportKeyPem(keys.privateKey) };
  }

  private async issue(params: {
    publicKey: x509.PublicKey | CryptoKey;
    ttlMs: number;
    names: x509.JsonGeneralName[];
    sanCritical: boolean;
    subject: string | undefined;
  }): Promise<string> {
    const now = this.now();
    const notAfter = Math.min(now + Math.min(params.ttlMs, this.maxLeafTtlMs), this.caNotAfter);
    const { ca } = this.validated;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: params.subject,
      issuer: ca.cert.subjectName,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      signingAlgorithm: this.signingAlgorithm,
      publicKey: params.publicKey,
      signingKey: ca.keys.privateKey,
      extensions: [...(await this.commonExtensions), new x509.SubjectAlternativeNameExtension(params.names, params.sanCritical)],
    });
    return cert.toString('pem') + '\n';
  }
}

export interface LoadAuthorityOptions extends AuthorityOptions {
  systemNamespace: string;
  log: Logger;
}

/**
 * The CA the control plane signs with: the plug-in CA of Secret `cacerts` if it exists, else
 * Istio's self-signed CA Secret `istio-ca-secret`, else a new self-signed root stored there.
 * Invalid material fails with a message naming the Secret and key.
 */
export async function loadOrCreateAuthority(kube: { core: CaKubeApi }, options: LoadAuthorityOptions): Promise<MeshAuthority> {
  const { systemNamespace: namespace, trustDomain, log } = options;
  const pluginData = await readSecretData(kube.core, namespace, PLUGIN_CA_SECRET);
  if (pluginData) {
    const origin = `Secret ${namespace}/${PLUGIN_CA_SECRET}`;
    const missing = PLUGIN_KEYS.filter((key) => key !== 'cert-chain.pem' && !pluginData[key]?.trim());
    if (missing.length) throw new Error(`${origin}: missing key ${missing.join(', ')} (a plug-in CA needs ${PLUGIN_KEYS.join(', ')})`);
    const material: CaMaterial = {
      'ca-cert.pem': pluginData['ca-cert.pem']!,
      'ca-key.pem': pluginData['ca-key.pem']!,
      'cert-chain.pem': pluginData['cert-chain.pem'] ?? '',
      'root-cert.pem': pluginData['root-cert.pem']!,
    };
    return announce(new MeshAuthority(await validateCaMaterial(material, origin, nowDate(options)), 'cacerts', trustDomain, options), log);
  }

  const existing = await readSecretData(kube.core, namespace, SELF_SIGNED_CA_SECRET);
  if (existing) return announce(await selfSignedFromSecret(existing, namespace, options, 'istio-ca-secret'), log);

  const root = await createRootCa(`${trustDomain} root CA`, ROOT_LIFETIME_MS, [trustDomain]);
  const data = { 'ca-cert.pem': root.certPem, 'ca-key.pem': root.keyPem, 'cert-chain.pem': '', 'root-cert.pem': '' };
  const outcome = await createSecret(kube.core, namespace, SELF_SIGNED_CA_SECRET, SELF_SIGNED_CA_SECRET_TYPE, data);
  if (outcome === 'exists') {
    // Another replica created it between our read and our create: use theirs, so every replica signs with one key.
    const winner = await readSecretData(kube.core, namespace, SELF_SIGNED_CA_SECRET);
    if (!winner) throw new Error(`Secret ${namespace}/${SELF_SIGNED_CA_SECRET} was reported to exist but cannot be read`);
    return announce(await selfSignedFromSecret(winner, namespace, options, 'istio-ca-secret'), log);
  }
  return announce(await selfSignedFromSecret(data, namespace, options, 'created'), log);
}

/** Publishes the authority's roots in ConfigMap `istio-ca-root-cert`; call at start and whenever the CA changes. */
export async function publishAuthorityRoots(
  kube: { core: CaKubeApi },
  authority: MeshAuthority,
  options: { systemNamespace: string; log: Logger },
): Promise<'created' | 'updated' | 'unchanged'> {
  return publishRootCertificates(kube.core, { ...options, rootsPem: authority.rootsPem });
}

/** A self-signed authority held only in memory (tests, benchmarks, tools). */
export async function createEphemeralAuthority(options: AuthorityOptions): Promise<MeshAuthority> {
  const root = await createRootCa(`${options.trustDomain} root CA`, ROOT_LIFETIME_MS, [options.trustDomain]);
  const material = { 'ca-cert.pem': root.certPem, 'ca-key.pem': root.keyPem, 'cert-chain.pem': '', 'root-cert.pem': root.certPem };
  return new MeshAuthority(await validateCaMaterial(material, 'in-memory CA', nowDate(options)), 'created', options.trustDomain, options);
}

async function selfSignedFromSecret(
  data: Record<string, string>,
  namespace: string,
  options: AuthorityOptions,
  source: AuthoritySource,
): Promise<MeshAuthority> {
  const origin = `Secret ${namespace}/${SELF_SIGNED_CA_SECRET}`;
  for (const key of ['ca-cert.pem', 'ca-key.pem'] as const) {
    if (!data[key]?.trim()) throw new Error(`${origin}: missing key ${key}`);
  }
  const material: CaMaterial = {
    'ca-cert.pem': data['ca-cert.pem']!,
    'ca-key.pem': data['ca-key.pem']!,
    'cert-chain.pem': data['cert-chain.pem'] ?? '',
    // Istio leaves root-cert.pem empty in this Secret: the CA certificate is the root.
    'root-cert.pem': data['root-cert.pem']?.trim() ? data['root-cert.pem'] : data['ca-cert.pem']!,
  };
  return new MeshAuthority(await validateCaMaterial(material, origin, nowDate(options)), source, options.trustDomain, options);
}

function announce(authority: MeshAuthority, log: Logger): MeshAuthority {
  log.info(authority.describe(), 'certificate authority loaded');
  return authority;
}

function nowDate(options: AuthorityOptions): Date {
  return new Date((options.now ?? Date.now)());
}

function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) || 1; // positive, and no leading zero byte
  return Buffer.from(bytes).toString('hex');
}

function rootFingerprints(rootsPem: string): string[] {
  return x509.PemConverter.decode(rootsPem).map((der) => createHash('sha256').update(Buffer.from(der)).digest('hex'));
}
