// The inner tunnel of double HBONE: TLS + HTTP/2 run inside an outer CONNECT stream to an east-west gateway, pooled per slot.
import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2';

import type { Logger } from '../util/log.js';
import type { CertificateSource, WorkloadCertificate } from '../ztunnel/identity/types.js';
import type { HboneMetrics } from './metrics.js';
import { dialHboneSession, HboneConnectError } from './client.js';
import { formatAuthority, X_ENDPOINT_SLOT } from './headers.js';
import { DEFAULT_IDLE_TIMEOUT_MS, type HbonePool } from './pool.js';
import { SessionPool, type SessionHandle } from './session-pool.js';
import { abort, DEFAULT_CONNECT_TIMEOUT_MS } from './io.js';
import { MAX_STREAMS_PER_SESSION, SecureContextCache } from './transport.js';

export interface InnerConnectRequest {
  /** SPIFFE identity the client presents on both tunnels (the source workload's). */
  sourceIdentity: string;
  /** Identities the destination ztunnel, at the far end of the inner tunnel, must present. */
  expectedIdentities: string[];
  gateway: GatewayHop;
  /** Service hostname: inner sessions are shared per hostname behind a gateway. */
  hostname: string;
  /** `<service hostname>:<service port>`, the CONNECT target of both tunnels. */
  authority: string;
  /** Inner CONNECT headers (baggage, forwarded, traceparent, x-forwarded-network). */
  headers: Record<string, string>;
  /** Outer CONNECT headers, used when a new inner session needs an outer stream; it outlives this connection. */
  outerHeaders: Record<string, string>;
  /** Which of the sessions kept for this (source, gateway, hostname) to use, `<slot>/<slots>`; sent to the gateway. */
  endpointSlot?: { slot: number; slots: number };
}

/** The east-west gateway an inner tunnel goes through. */
export interface GatewayHop {
  address: string;
  port: number;
  /** SPIFFE identities the gateway must present on the outer tunnel. */
  identities: string[];
}

/** How long an inner session takes new streams. */
const DEFAULT_INNER_SESSION_MAX_AGE_MS = 30_000;

export interface InnerHbonePoolOptions {
  /** Carries the outer tunnels (client to east-west gateway). */
  outer: HbonePool;
  certificates: CertificateSource;
  log: Logger;
  metrics: HboneMetrics;
  maxStreamsPerSession?: number;
  /** An inner session older than this takes no new stream. Default 30 s. */
  maxSessionAgeMs?: number;
  /** An inner session with no stream for this long is closed (its outer stream with it). Default 5 minutes. */
  idleTimeoutMs?: number;
  /** The inner TLS + HTTP/2 handshake must finish within this. Default 10 s. */
  connectTimeoutMs?: number;
  /** False: a fresh inner session per connection, as Istio's ztunnel does (issue 1672). Default true. */
  pooling?: boolean;
}

/** How long an outer stream may take to finish after its inner session closed, before it is reset. */
const OUTER_FINISH_GRACE_MS = 5000;

/** Half-closes an outer stream whose inner session is gone, and resets it if the far side lingers. */
function finishOuter(outer: ClientHttp2Stream): void {
  if (outer.destroyed || outer.closed) return;
  if (!outer.writableEnded) outer.end();
  const timer = setTimeout(() => abort(outer), OUTER_FINISH_GRACE_MS);
  timer.unref();
  outer.once('close', () => clearTimeout(timer));
}

/**
 * The inner tunnel of double HBONE: TLS from the source identity to the destination ztunnel, run
 * inside a CONNECT stream of the outer tunnel to the destination network's east-west gateway, then
 * HTTP/2 with one CONNECT stream per connection. The gateway splices the outer stream's bytes and
 * never sees inside. Inner sessions are pooled per (source identity, gateway, service hostname,
 * expected identities): up to 100 streams, 5 idle minutes, none reused after the source certificate
 * was renewed, and each dropped when its outer stream closes.
 */
function slotText(request: Pick<InnerConnectRequest, 'endpointSlot'>): string {
  return request.endpointSlot ? `${request.endpointSlot.slot}/${request.endpointSlot.slots}` : '';
}

/** The outer tunnel to an east-west gateway could not be opened: another gateway of the network may do. */
export class GatewayUnreachableError extends HboneConnectError {
  constructor(
    readonly gateway: { address: string; port: number },
    cause: unknown,
  ) {
    const status = cause instanceof HboneConnectError ? cause.status : undefined;
    super(`outer HBONE tunnel to gateway ${formatAuthority(gateway.address, gateway.port)} failed: ${cause instanceof Error ? cause.message : String(cause)}`, status);
  }
}

export class InnerHbonePool {
  private readonly sessions: SessionPool;
  private readonly contexts = new SecureContextCache();
  private readonly connectTimeoutMs: number;

  constructor(private readonly options: InnerHbonePoolOptions) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.sessions = new SessionPool({
      log: options.log,
      metrics: options.metrics,
      maxStreamsPerSession: options.maxStreamsPerSession ?? MAX_STREAMS_PER_SESSION,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      singleUse: options.pooling === false,
      // An inner session stays with the endpoint the gateway picked when it opened: renewing them
      // lets connections follow endpoint changes (new pods, failover back) within this time.
      maxSessionAgeMs: options.maxSessionAgeMs ?? DEFAULT_INNER_SESSION_MAX_AGE_MS,
      onSizeChange: (count) => options.metrics.setPooledInnerSessions(count),
    });
  }

  /** Opens an inner CONNECT tunnel; resolves with the stream once the destination ztunnel answered 200. */
  async connect(request: InnerConnectRequest): Promise<ClientHttp2Stream> {
    if (this.sessions.isClosed) throw new HboneConnectError('inner HBONE pool is closed');
    const certificate = await this.options.certificates.certificateFor(request.sourceIdentity);
    const gateway = formatAuthority(request.gateway.address, request.gateway.port);
    return this.sessions.open({
      key: `${request.sourceIdentity}\n${gateway}\n${request.hostname}\n${[...request.expectedIdentities].sort().join(',')}\n${slotText(request)}`,
      certChainPem: certificate.certChainPem,
      dial: () => this.dial(request, certificate),
      headers: { ...request.headers, ':authority': request.authority },
      describe: `${request.authority} through gateway ${gateway}`,
    });
  }

  /** Forgets the TLS contexts of source identities not in `identities`. */
  retainIdentities(identities: ReadonlySet<string>): void {
    this.contexts.retain(identities);
  }

  /** Live inner sessions. */
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

  private dial(request: InnerConnectRequest, certificate: WorkloadCertificate): SessionHandle {
    const { log, metrics } = this.options;
    const gateway = formatAuthority(request.gateway.address, request.gateway.port);
    let outer: ClientHttp2Stream | undefined;
    let session: ClientHttp2Session | undefined;
    let cancelled = false;
    const ready = (async () => {
      try {
        outer = await this.options.outer.connect({
          sourceIdentity: request.sourceIdentity,
          expectedIdentities: request.gateway.identities,
          destination: request.gateway.address,
          port: request.gateway.port,
          authority: request.authority,
          headers: request.endpointSlot ? { ...request.outerHeaders, [X_ENDPOINT_SLOT]: slotText(request) } : request.outerHeaders,
          tunnel: 'outer',
        });
      } catch (error) {
        // A gateway that answered with a status is up: its answer concerns this service, not the gateway.
        if (error instanceof HboneConnectError && error.status !== undefined) throw error;
        throw new GatewayUnreachableError(request.gateway, error);
      }
      const outerStream = outer;
      if (cancelled) {
        abort(outerStream);
        throw new HboneConnectError(`inner HBONE session for ${request.authority} through gateway ${gateway} was cancelled`);
      }
      const dialed = dialHboneSession({
        transport: { stream: outerStream },
        secureContext: this.contexts.get(certificate, this.options.certificates.roots()),
        expectedIdentities: request.expectedIdentities,
        peer: `${request.authority} through gateway ${gateway}`,
        tunnel: 'inner',
        connectTimeoutMs: this.connectTimeoutMs,
        log,
        metrics,
      });
      session = dialed.session;
      // The inner session ends with its outer stream, and when the far side finished sending on it (the
      // destination or the gateway hung up: TLS over it cannot go on). Deferred: when the inner TLS fails,
      // it closes the outer stream first and reports its error on the next tick, which must reach the session.
      const endInner = () => setImmediate(() => dialed.session.destroy());
      outerStream.once('end', endInner);
      outerStream.once('close', endInner);
      dialed.session.once('close', () => finishOuter(outerStream));
      await dialed.ready;
      metrics.innerSessionOpened();
      return dialed.session;
    })();
    ready.catch(() => undefined);
    return {
      ready,
      destroy: () => {
        cancelled = true;
        if (session) session.destroy();
        else if (outer) abort(outer);
      },
    };
  }
}
