/** Fakes and stream helpers shared by the HBONE, double-HBONE and gateway tests. */
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Writable, type Readable } from 'node:stream';

import { pino, type Logger } from 'pino';

import type { GatewayCertificateSource } from '../../src/gateway/hbone-gateway.js';
import { issueLeaf, type CertificateAuthority } from '../../src/util/pki.js';
import type { CertificateSource, WorkloadCertificate } from '../../src/ztunnel/identity/types.js';
import type { ProxyMetrics } from '../../src/ztunnel/metrics.js';

const DAY_MS = 24 * 3600_000;

/** A one-day client+server certificate for a SPIFFE identity, issued by `ca`. */
export async function issueCertificate(ca: CertificateAuthority, identity: string): Promise<WorkloadCertificate> {
  const leaf = await issueLeaf(ca, { commonName: identity.split('/').pop() ?? 'workload', uris: [identity], client: true, server: true, lifetimeMs: DAY_MS });
  const now = Date.now();
  return { identity, certChainPem: leaf.certPem, keyPem: leaf.keyPem, rootsPem: ca.certPem, notBefore: new Date(now), notAfter: new Date(now + DAY_MS) };
}

/** Certificates issued on first request by a test CA; renewals are announced as CertificateManager does. */
export class FakeCertificates implements CertificateSource, GatewayCertificateSource {
  private readonly certificates = new Map<string, Promise<WorkloadCertificate>>();
  private readonly listeners = new Set<(certificate: WorkloadCertificate) => void>();

  constructor(
    private readonly ca: CertificateAuthority,
    /** Roots trusted besides the issuing CA's (as during a CA migration). */
    private readonly extraRootsPem = '',
  ) {}

  certificateFor(identity: string): Promise<WorkloadCertificate> {
    let certificate = this.certificates.get(identity);
    if (!certificate) {
      certificate = issueCertificate(this.ca, identity);
      this.certificates.set(identity, certificate);
    }
    return certificate;
  }

  onRenewed(listener: (certificate: WorkloadCertificate) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A renewal at half-life: a new key and certificate, announced to the listeners. */
  async renew(identity: string): Promise<WorkloadCertificate> {
    const renewed = await issueCertificate(this.ca, identity);
    this.certificates.set(identity, Promise.resolve(renewed));
    for (const listener of this.listeners) listener(renewed);
    return renewed;
  }

  roots(): string {
    return this.extraRootsPem ? `${this.ca.certPem.trim()}\n${this.extraRootsPem}` : this.ca.certPem;
  }

  list(): WorkloadCertificate[] {
    return [];
  }
}

export interface CapturedLog {
  log: Logger;
  lines: Array<Record<string, unknown> & { msg?: string }>;
}

/** A debug-level logger whose lines are kept, parsed, for assertions. */
export function captureLog(component: string): CapturedLog {
  const lines: CapturedLog['lines'] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as CapturedLog['lines'][number]);
      callback();
    },
  });
  return { log: pino({ level: 'debug', base: { component } }, sink), lines };
}

export async function listenOn(server: Server, host = '0.0.0.0'): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return (server.address() as AddressInfo).port;
}

/**
 * A port on `host` where nothing listens (connection refused): one the kernel handed out, then
 * released. Another listener could take it meanwhile, which is unlikely within a test run.
 */
export async function unusedPort(host: string): Promise<number> {
  const server = createServer();
  const port = await listenOn(server, host);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `promise`, or a rejection naming `what` if it has not settled within `ms` (for "does not hang" checks). */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Sum of a metric's samples whose labels include `labels`. */
export async function metricValue(metrics: ProxyMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  metrics.flush();
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values
    .filter((sample) => Object.entries(labels).every(([key, value]) => String((sample.labels as Record<string, unknown>)[key]) === value))
    .reduce((sum, sample) => sum + sample.value, 0);
}

/** Reads until the peer ends or resets; reports what arrived and how it ended. */
export function readToEnd(stream: Readable): Promise<{ data: Buffer; reset: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let reset = false;
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', () => {
      reset = true;
    });
    stream.on('close', () => resolve({ data: Buffer.concat(chunks), reset }));
  });
}

/** The first `length` bytes; rejects, naming `what` (a connection, a stream), if it ends before. */
export function readExactly(stream: Readable, length: number, what = 'connection'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= length) {
        cleanup();
        resolve(Buffer.concat(chunks));
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`${what} ended after ${total} of ${length} bytes`));
    };
    const cleanup = () => {
      stream.off('data', onData);
      stream.off('close', onEnd);
      stream.off('end', onEnd);
    };
    stream.on('data', onData);
    stream.on('close', onEnd);
    stream.on('end', onEnd);
  });
}
