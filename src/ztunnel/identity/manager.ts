import { readFile } from 'node:fs/promises';
import { X509Certificate as NodeX509, webcrypto } from 'node:crypto';
import { parseSpiffeUri } from '../../api/identity.js';
import { backoffDelay } from '../../util/backoff.js';
import type { Logger } from '../../util/log.js';
import { exportKeyPem, generateKeys } from '../../util/keys.js';
import { pemCertificates } from '../../util/pem.js';
import { createUriCsr } from '../../util/uri-csr.js';
import type { CertificateView } from '../admin/types.js';
import { CaClient } from './ca-client.js';
import { describeChain, verifyIssuedChain, type IssuedChain } from './chain.js';
import type { CertificateSource, WorkloadCertificate } from './types.js';

export interface CertificateManagerOptions {
  caAddress: string;
  /** PEM roots to verify the control plane's TLS certificate (the mounted `istio-ca-root-cert`). */
  caRootsPem: string;
  /** TLS name to verify, e.g. `ambit-controlplane.istio-system.svc`. */
  caServerName?: string;
  /** Service account token; read again for every request (kubelet rotates it). */
  tokenPath: string;
  clusterId: string;
  requestedTtlSeconds?: number;
  log: Logger;
  now?: () => number;
}

export type RenewalListener = (certificate: WorkloadCertificate) => void;

const DEFAULT_TTL_SECONDS = 24 * 3600;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30_000;
/** Never renew sooner than this after an issuance, whatever the lifetime. */
const MIN_RENEW_DELAY_MS = 500;

interface Issued {
  certificate: WorkloadCertificate;
  chain: IssuedChain;
  receivedAt: number;
}

interface Entry {
  identity: string;
  current?: Issued;
  inflight?: Promise<WorkloadCertificate>;
  timer?: NodeJS.Timeout;
  /** When the timer fires (renewal or retry). */
  nextAttemptAt?: number;
  failures: number;
  lastError?: string;
}

/**
 * Obtains and renews workload certificates from the control plane CA, one key per identity.
 * Renews at half of the remaining lifetime; on failure retries with exponential backoff
 * (1 s → 30 s) and keeps serving the previous certificate until it expires.
 */
export class CertificateManager implements CertificateSource {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<RenewalListener>();
  private readonly client: CaClient;
  private readonly now: () => number;
  private readonly ttlSeconds: number;
  /** Roots of the last CA response plus the configured roots, recomputed when a response arrives. */
  private trustBundlePem: string;
  private stopped = false;

  constructor(private readonly options: CertificateManagerOptions) {
    checkRoots(options.caRootsPem);
    this.trustBundlePem = trustBundle([], options.caRootsPem);
    this.client = new CaClient({ address: options.caAddress, rootsPem: options.caRootsPem, serverName: options.caServerName });
    this.now = options.now ?? Date.now;
    this.ttlSeconds = options.requestedTtlSeconds ?? DEFAULT_TTL_SECONDS;
  }

  certificateFor(identity: string): Promise<WorkloadCertificate> {
    if (this.stopped) return Promise.reject(new Error('certificate manager is stopped'));
    try {
      parseSpiffeUri(identity);
    } catch (err) {
      return Promise.reject(err);
    }
    let entry = this.entries.get(identity);
    if (!entry) {
      entry = { identity, failures: 0 };
      this.entries.set(identity, entry);
    }
    if (entry.current && this.isValid(entry.current)) return Promise.resolve(entry.current.certificate);
    if (entry.inflight) return entry.inflight;
    // A retry is already scheduled after a failure: answer with that failure rather than hammer the CA.
    if (entry.lastError && entry.timer) return Promise.reject(new Error(entry.lastError));
    return this.refresh(entry);
  }

  /** Trust bundle: the roots of the last CA response plus the configured CA roots. */
  roots(): string {
    return this.trustBundlePem;
  }

  list(): WorkloadCertificate[] {
    return [...this.entries.values()].flatMap((entry) => (entry.current && this.isValid(entry.current) ? [entry.current.certificate] : []));
  }

  /** Called with every new certificate (first issuance and renewals); returns an unsubscribe function. */
  onRenewed(listener: RenewalListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops renewing an identity and drops its certificate (its last workload left the node). */
  forget(identity: string): void {
    const entry = this.entries.get(identity);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.entries.delete(identity);
    this.options.log.info({ identity }, 'certificate forgotten');
  }

  stop(): void {
    this.stopped = true;
    for (const entry of this.entries.values()) clearTimeout(entry.timer);
    this.entries.clear();
    this.client.close();
  }

  view(): CertificateView[] {
    return [...this.entries.values()].map((entry) => {
      const current = entry.current && this.isValid(entry.current) ? entry.current : undefined;
      const state: CertificateView['state'] = current ? 'valid' : entry.lastError ? 'error' : 'pending';
      const view: CertificateView = { identity: entry.identity, state, chain: current ? describeChain(current.chain.allPem) : [] };
      if (current) {
        view.serialNumber = current.chain.serialNumber;
        view.notBefore = current.chain.notBefore.toISOString();
        view.notAfter = current.chain.notAfter.toISOString();
      }
      if (entry.nextAttemptAt !== undefined) view.renewAt = new Date(entry.nextAttemptAt).toISOString();
      if (entry.lastError) view.error = entry.lastError;
      return view;
    });
  }

  private isValid(issued: Issued): boolean {
    return this.now() < issued.certificate.notAfter.getTime();
  }

  private refresh(entry: Entry): Promise<WorkloadCertificate> {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.nextAttemptAt = undefined;
    const attempt = this.fetch(entry.identity).then(
      (issued) => {
        if (this.entries.get(entry.identity) === entry) this.install(entry, issued);
        return issued.certificate;
      },
      (err: unknown) => {
        const message = `cannot obtain a certificate for ${entry.identity}: ${err instanceof Error ? err.message : String(err)}`;
        if (this.entries.get(entry.identity) === entry) this.recordFailure(entry, message);
        throw new Error(message);
      },
    );
    const tracked: Promise<WorkloadCertificate> = attempt.finally(() => {
      if (entry.inflight === tracked) entry.inflight = undefined;
    });
    entry.inflight = tracked;
    return tracked;
  }

  private install(entry: Entry, issued: Issued): void {
    const renewed = entry.current !== undefined;
    entry.current = issued;
    entry.failures = 0;
    entry.lastError = undefined;
    this.trustBundlePem = issued.certificate.rootsPem;
    const remaining = issued.chain.notAfter.getTime() - issued.receivedAt;
    this.schedule(entry, Math.max(MIN_RENEW_DELAY_MS, remaining / 2));
    this.options.log.info(
      {
        identity: entry.identity,
        serial: issued.chain.serialNumber,
        notAfter: issued.chain.notAfter.toISOString(),
        renewAt: new Date(entry.nextAttemptAt!).toISOString(),
        renewed,
      },
      renewed ? 'certificate renewed' : 'certificate issued',
    );
    for (const listener of this.listeners) {
      try {
        listener(issued.certificate);
      } catch (err) {
        this.options.log.error({ identity: entry.identity, err }, 'certificate listener failed');
      }
    }
  }

  private recordFailure(entry: Entry, message: string): void {
    entry.failures += 1;
    entry.lastError = message;
    const delay = backoffDelay(entry.failures, { initialMs: FIRST_RETRY_MS, maxMs: MAX_RETRY_MS });
    this.schedule(entry, delay);
    const keeping = entry.current && this.isValid(entry.current);
    this.options.log.warn(
      { identity: entry.identity, failures: entry.failures, retryInMs: delay, keepingCurrent: Boolean(keeping), error: message },
      'certificate request failed',
    );
  }

  private schedule(entry: Entry, delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(entry.timer);
    entry.nextAttemptAt = this.now() + delayMs;
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (this.entries.get(entry.identity) !== entry || entry.inflight) return;
      this.refresh(entry).catch(() => {
        // recorded and logged by refresh; the next attempt is scheduled
      });
    }, delayMs);
    entry.timer.unref();
  }

  private async fetch(identity: string): Promise<Issued> {
    const token = await this.readToken();
    const keys = await generateKeys();
    const csrPem = await createUriCsr(keys, identity);
    const chainPem = await this.client.createCertificate({
      csrPem,
      ttlSeconds: this.ttlSeconds,
      impersonatedIdentity: identity,
      token,
      clusterId: this.options.clusterId,
    });
    const receivedAt = this.now();
    const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
    const chain = verifyIssuedChain(chainPem, { identity, publicKeySpki: spki, knownRootsPem: this.options.caRootsPem, now: receivedAt });
    const certificate: WorkloadCertificate = {
      identity,
      certChainPem: chain.presentedPem.join(''),
      keyPem: await exportKeyPem(keys.privateKey),
      rootsPem: trustBundle(chain.rootsPem, this.options.caRootsPem),
      notBefore: chain.notBefore,
      notAfter: chain.notAfter,
    };
    return { certificate, chain, receivedAt };
  }

  private async readToken(): Promise<string> {
    let token: string;
    try {
      token = (await readFile(this.options.tokenPath, 'utf8')).trim();
    } catch (err) {
      throw new Error(`cannot read the service account token ${this.options.tokenPath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    if (!token) throw new Error(`service account token ${this.options.tokenPath} is empty`);
    return token;
  }
}

/** Roots from a CA response and configured roots, each certificate once. */
function trustBundle(responseRoots: string[], configuredRootsPem: string): string {
  const seen = new Set<string>();
  const roots: string[] = [];
  for (const pem of [...responseRoots, ...pemCertificates(configuredRootsPem)]) {
    const fingerprint = new NodeX509(pem).fingerprint256;
    if (seen.has(fingerprint)) continue;
    seen.add(fingerprint);
    roots.push(pem);
  }
  return roots.join('');
}

function checkRoots(rootsPem: string): void {
  const roots = pemCertificates(rootsPem);
  if (roots.length === 0) throw new Error('caRootsPem holds no PEM certificate (want the CA roots, e.g. istio-ca-root-cert root-cert.pem)');
  roots.forEach((pem, index) => {
    try {
      new NodeX509(pem);
    } catch (err) {
      throw new Error(`caRootsPem certificate ${index + 1} is not valid X.509: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
}
