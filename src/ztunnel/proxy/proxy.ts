import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { makeTransparent } from './socket-options.js';

import { HBONE_PORT, INBOUND_PLAINTEXT_PORT, OUTBOUND_CAPTURE_PORT } from '../../api/resources.js';
import type { Logger } from '../../util/log.js';
import type { CertificateSource } from '../identity/types.js';
import type { ProxyMetrics } from '../metrics.js';
import type { ProxyState, StateUpdates } from '../state/types.js';
import { HbonePool, IdleMemoryRelease, InnerHbonePool, type DialTarget, type HbonePeerLimits } from '../../hbone/index.js';
import { workloadIdentity, type ProxyContext } from './context.js';
import { InboundHbone } from './inbound.js';
import { InboundPlaintextProxy } from './inbound-plaintext.js';
import { getOriginalDestination, type SocketAddress } from './original-dst.js';
import { OutboundProxy } from './outbound.js';
import { OpenInboundConnections } from './policy-watch.js';
import { networkGatewayRelays, type RelayCheck } from './relays.js';

export interface ProxyListenOptions {
  /** Outbound capture port (default 15001). */
  outbound?: number;
  /** HBONE port (default 15008). */
  inbound?: number;
  /** Inbound plaintext capture port (default 15006). */
  inboundPlaintext?: number;
  /** Address the three listeners bind (default 0.0.0.0). */
  host?: string;
}

export interface ProxyOptions {
  state: ProxyState;
  certificates: CertificateSource;
  log: Logger;
  metrics: ProxyMetrics;
  clusterId: string;
  listen?: ProxyListenOptions;
  /** Reads where a captured socket was going; default SO_ORIGINAL_DST. Tests inject their own. */
  originalDestination?: (socket: Socket) => SocketAddress | undefined;
  /** Port dialled on HBONE destinations (default 15008). */
  hbonePort?: number;
  /** Maps an address to dial to the address actually dialled (tests map pod IPs to loopback). */
  dialAddress?: (ip: string, port: number) => DialTarget;
  /** HBONE pool tuning, for direct, outer and inner sessions (defaults: 100 streams per session, 5 minutes idle). */
  pool?: { maxStreamsPerSession?: number; idleTimeoutMs?: number };
  /**
   * Pool the inner sessions of double HBONE (default true). False opens a fresh inner TLS + HTTP/2
   * session per cross-network connection, as Istio's ztunnel does; kept for benchmarks.
   */
  innerPooling?: boolean;
  /** Workloads that relay for clients (may name another source in `forwarded`); default: east-west gateways known to the state. */
  isRelay?: RelayCheck;
  /** Per TCP peer limits of the HBONE server. */
  peerLimits?: Partial<HbonePeerLimits>;
}

export interface ProxyPorts {
  outbound: number;
  inbound: number;
  inboundPlaintext: number;
}

export interface ProxyStopOptions {
  /** How long open connections may run to their end before they are cut. Default 5 s. */
  drainTimeoutMs?: number;
}

const DEFAULT_DRAIN_TIMEOUT_MS = 5000;
const DRAIN_POLL_MS = 50;

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** ztunnel's data path: the outbound (15001), HBONE (15008) and inbound plaintext (15006) listeners. */
export class Proxy {
  private readonly context: ProxyContext;
  private readonly pool: HbonePool;
  private readonly innerPool: InnerHbonePool;
  private readonly hbone: InboundHbone;
  private readonly outbound: OutboundProxy;
  private readonly inboundPlaintext: InboundPlaintextProxy;
  private readonly openInbound: OpenInboundConnections;
  private readonly servers: { outbound: Server; inbound: Server; inboundPlaintext: Server };
  /** Accepted plaintext-side connections (15001, 15006), for draining. */
  private readonly connections = new Set<Socket>();
  private readonly idleMemory: IdleMemoryRelease;
  private started = false;

  constructor(private readonly options: ProxyOptions) {
    this.context = {
      state: options.state,
      certificates: options.certificates,
      log: options.log,
      metrics: options.metrics,
      clusterId: options.clusterId,
      originalDestination: options.originalDestination ?? getOriginalDestination,
      dialAddress: options.dialAddress ?? ((ip, port) => ({ host: ip, port })),
    };
    this.pool = new HbonePool({
      certificates: options.certificates,
      log: options.log,
      metrics: options.metrics,
      hbonePort: options.hbonePort ?? HBONE_PORT,
      dialAddress: this.context.dialAddress,
      maxStreamsPerSession: options.pool?.maxStreamsPerSession,
      idleTimeoutMs: options.pool?.idleTimeoutMs,
    });
    this.innerPool = new InnerHbonePool({
      outer: this.pool,
      certificates: options.certificates,
      log: options.log,
      metrics: options.metrics,
      maxStreamsPerSession: options.pool?.maxStreamsPerSession,
      idleTimeoutMs: options.pool?.idleTimeoutMs,
      pooling: options.innerPooling,
    });
    this.openInbound = new OpenInboundConnections(options.state, options.log, options.metrics);
    this.hbone = new InboundHbone(this.context, options.isRelay ?? networkGatewayRelays(options.state), this.openInbound, options.peerLimits);
    this.idleMemory = new IdleMemoryRelease(options.log);
    this.outbound = new OutboundProxy(this.context, this.pool, this.innerPool);
    this.inboundPlaintext = new InboundPlaintextProxy(this.context, () => this.ports().inboundPlaintext, this.openInbound);
    this.servers = {
      outbound: this.plaintextServer('outbound', (socket) => this.outbound.accept(socket)),
      inbound: this.server('inbound', (socket) => this.hbone.accept(socket), false),
      inboundPlaintext: this.plaintextServer('inbound plaintext', (socket) => this.inboundPlaintext.accept(socket)),
    };
  }

  async start(): Promise<void> {
    if (this.started) throw new Error('proxy already started');
    this.started = true;
    const listenOptions = this.options.listen ?? {};
    const host = listenOptions.host ?? '0.0.0.0';
    const plan: Array<[string, Server, number]> = [
      ['outbound', this.servers.outbound, listenOptions.outbound ?? OUTBOUND_CAPTURE_PORT],
      ['inbound HBONE', this.servers.inbound, listenOptions.inbound ?? HBONE_PORT],
      ['inbound plaintext', this.servers.inboundPlaintext, listenOptions.inboundPlaintext ?? INBOUND_PLAINTEXT_PORT],
    ];
    for (const [name, server, port] of plan) {
      try {
        await listen(server, port, host);
      } catch (error) {
        for (const [, opened] of plan) if (opened.listening) opened.close();
        throw new Error(`proxy cannot listen on ${host}:${port} (${name}): ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    // Inbound plaintext is diverted with tproxy after service DNAT (see capture/ruleset.ts).
    const transparentError = makeTransparent(this.servers.inboundPlaintext);
    if (transparentError) this.context.log.warn({ reason: transparentError }, 'inbound plaintext listener is not transparent; only DNAT-captured connections reach it');
    this.idleMemory.start();
    // Workloads leave the node: their identities' TLS state goes with them (a ZtunnelState tells of changes).
    (this.options.state as ProxyState & Partial<StateUpdates>).onChange?.(() => {
      if (this.started) this.pruneIdentities();
    });
    this.context.log.info({ ports: this.ports() }, 'proxy listening');
  }

  /**
   * Forgets the TLS servers and client contexts of identities no local workload has any more
   * (called on every state change; also callable by hand). Established connections keep theirs.
   */
  pruneIdentities(): void {
    const local = new Set(this.options.state.localEnrolledWorkloads().map((workload) => workloadIdentity(workload)));
    this.hbone.retainIdentities(local);
    this.pool.retainIdentities(local);
    this.innerPool.retainIdentities(local);
  }

  /** Identities with TLS state held: the HBONE server's per-identity TLS servers and the pools' contexts. */
  heldIdentities(): { server: string[]; clientContexts: number } {
    return { server: this.hbone.identities, clientContexts: this.pool.secureContextCount };
  }

  /**
   * Re-authorizes open inbound connections against the current state and cuts those now denied.
   * Call after policies or local workloads changed; returns how many were cut.
   */
  reassessPolicies(): number {
    return this.openInbound.reassess();
  }

  /** Open inbound connections (HBONE streams and plaintext) watched by policy. */
  get openInboundConnections(): number {
    return this.openInbound.size;
  }

  /** Pooled outbound sessions: direct and outer HBONE, and inner sessions of double HBONE. */
  pooledSessions(): { hbone: number; inner: number } {
    return { hbone: this.pool.sessionCount(), inner: this.innerPool.sessionCount() };
  }

  /** The bound ports (useful when started with port 0). */
  ports(): ProxyPorts {
    const port = (server: Server) => (server.address() as AddressInfo | null)?.port ?? 0;
    return { outbound: port(this.servers.outbound), inbound: port(this.servers.inbound), inboundPlaintext: port(this.servers.inboundPlaintext) };
  }

  /**
   * Drains: stops accepting, sends GOAWAY on inbound sessions, stops pooling, lets open connections
   * finish for up to `drainTimeoutMs`, then cuts what is left.
   */
  async stop(options: ProxyStopOptions = {}): Promise<void> {
    this.idleMemory.stop();
    for (const server of Object.values(this.servers)) if (server.listening) server.close();
    this.hbone.close();
    this.innerPool.close();
    this.pool.close();
    const deadline = Date.now() + (options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
    while (this.busy() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    for (const socket of this.connections) socket.destroy();
    this.hbone.destroy();
    this.innerPool.destroy();
    this.pool.destroy();
    this.context.log.info('proxy stopped');
  }

  private busy(): boolean {
    return this.connections.size > 0 || this.hbone.openSessions > 0 || this.innerPool.sessionCount() > 0 || this.pool.sessionCount() > 0;
  }

  private server(name: string, onConnection: (socket: Socket) => void, allowHalfOpen: boolean): Server {
    const server = createServer({ allowHalfOpen, noDelay: true }, (socket) => {
      try {
        onConnection(socket);
      } catch (error) {
        this.context.log.error({ listener: name, err: String(error) }, 'connection handler failed');
        socket.destroy();
      }
    });
    server.on('error', (error) => this.context.log.error({ listener: name, err: error.message }, 'listener error'));
    return server;
  }

  private plaintextServer(name: string, onConnection: (socket: Socket) => void): Server {
    return this.server(
      name,
      (socket) => {
        this.connections.add(socket);
        socket.once('close', () => this.connections.delete(socket));
        onConnection(socket);
      },
      true,
    );
  }
}
