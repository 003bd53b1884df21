// Outbound HBONE sessions over mTLS, pooled per (source identity, expected identities, destination): direct and outer tunnels.
import type { ClientHttp2Stream } from 'node:http2';

import type { Logger } from '../util/log.js';
import type { CertificateSource, WorkloadCertificate } from '../ztunnel/identity/types.js';
import type { HboneMetrics } from './metrics.js';
import { dialHboneSession, HboneConnectError } from './client.js';
import { formatAuthority } from './headers.js';
import { SessionPool, type SessionHandle } from './session-pool.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, type DialTarget } from './io.js';
import { MAX_STREAMS_PER_SESSION, SecureContextCache } from './transport.js';

export interface HboneConnectRequest {
  /** SPIFFE identity the client presents (the source workload's). */
  sourceIdentity: string;
  /** The server must present one of these SPIFFE identities. */
  expectedIdentities: string[];
  /** IP address to dial. */
  destination: string;
  /** HBONE port dialled on it; default the pool's `hbonePort`. */
  port?: number;
  /** CONNECT target: `ip:port`, or `<hostname>:<port>` to an east-west gateway. */
  authority: string;
  /** Extra request headers (baggage, forwarded, traceparent). */
  headers: Record<string, string>;
  /** TLS layer for logs and metrics: `hbone` (default) or `outer` (to an east-west gateway). */
  tunnel?: 'hbone' | 'outer';
}

export interface HbonePoolOptions {
  certificates: CertificateSource;
  log: Logger;
  metrics: HboneMetrics;
  /** Port dialled on the destination address unless the request names one. */
  hbonePort: number;
  dialAddress(ip: string, port: number): DialTarget;
  maxStreamsPerSession?: number;
  /** A session with no stream for this long is closed. Default 5 minutes. */
  idleTimeoutMs?: number;
  /** TCP + TLS + HTTP/2 setup must finish within this. Default 10 s. */
  connectTimeoutMs?: number;
}

export const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000;

/**
 * Outbound HBONE: HTTP/2 sessions over mTLS pooled per (source identity, expected identities,
 * destination address and port), up to 100 streams each, closed after 5 idle minutes. Carries direct
 * tunnels to destination ztunnels and outer tunnels to east-west gateways.
 */
export class HbonePool {
  private readonly sessions: SessionPool;
  private readonly contexts = new SecureContextCache();
  private readonly connectTimeoutMs: number;

  constructor(private readonly options: HbonePoolOptions) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.sessions = new SessionPool({
      log: options.log,
      metrics: options.metrics,
      maxStreamsPerSession: options.maxStreamsPerSession ?? MAX_STREAMS_PER_SESSION,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      onSizeChange: (count) => options.metrics.setPooledSessions(count),
    });
  }

  /** Opens a CONNECT tunnel; resolves with the stream once the server answered 200. */
  async connect(request: HboneConnectRequest): Promise<ClientHttp2Stream> {
    if (this.sessions.isClosed) throw new HboneConnectError('HBONE pool is closed');
    const certificate = await this.options.certificates.certificateFor(request.sourceIdentity);
    const port = request.port ?? this.options.hbonePort;
    return this.sessions.open({
      key: `${request.sourceIdentity}\n${[...request.expectedIdentities].sort().join(',')}\n${formatAuthority(request.destination, port)}`,
      certChainPem: certificate.certChainPem,
      dial: () => this.dial(request, port, certificate),
      headers: { ...request.headers, ':authority': request.authority },
      describe: `${request.authority} via ${request.destination}`,
    });
  }

  /** Forgets the TLS contexts of source identities not in `identities`. */
  retainIdentities(identities: ReadonlySet<string>): void {
    this.contexts.retain(identities);
  }

  /** TLS contexts held (one per source identity used). */
  get secureContextCount(): number {
    return this.contexts.size;
  }

  /** Live sessions (all keys). */
  sessionCount(): number {
    return this.sessions.size();
  }

  /** Stops taking streams and closes each session once its streams are done. */
  close(): void {
    this.sessions.close();
  }

  /** Closes every session now. */
  destroy(): void {
    this.sessions.destroy();
  }

  private dial(request: HboneConnectRequest, port: number, certificate: WorkloadCertificate): SessionHandle {
    const { log, metrics } = this.options;
    const target = this.options.dialAddress(request.destination, port);
    const { session, ready } = dialHboneSession({
      transport: target,
      secureContext: this.contexts.get(certificate, this.options.certificates.roots()),
      expectedIdentities: request.expectedIdentities,
      peer: formatAuthority(request.destination, port),
      tunnel: request.tunnel ?? 'hbone',
      connectTimeoutMs: this.connectTimeoutMs,
      log,
      metrics,
    });
    return {
      ready: ready.then(() => {
        metrics.hboneSessionOpened('outbound');
        return session;
      }),
      destroy: () => session.destroy(),
    };
  }
}
