// The waypoint proxy: a handler on the shared HBONE endpoint that reads each tunnel as HTTP/1.1, HTTP/2 or TCP, applies L7 policy, picks an endpoint and forwards.
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type OutgoingHttpHeaders, type Server as HttpServer, type ServerResponse } from 'node:http';
import { constants as h2, performServerHandshake, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';

import { parseSpiffeUri, spiffeUri, identityOf } from '../api/identity.js';
import { HBONE_PORT } from '../api/resources.js';
import type { Workload } from '../gen/istio/workload/workload_pb.js';
import {
  abort,
  formatAuthority,
  HboneEndpoint,
  HbonePool,
  InnerHbonePool,
  singleHeader,
  splice,
  type ConnectReply,
  type ConnectRequest,
  type DialTarget,
  type EndpointCertificateSource,
  type HbonePeerLimits,
} from '../hbone/index.js';
import { authorizeRequest, type L7Decision, type RequestFacts } from '../l7/authorization.js';
import type { RequestMetrics } from '../l7/metrics.js';
import { StreamSocket } from '../l7/stream-socket.js';
import { forwardableHeaders, HttpUpstreams, type TunnelTarget } from '../l7/upstream.js';
import { answerPlain, applyHeaderOperations, hasRequestBody, NO_HEALTHY_UPSTREAM, relayHttp1, UPSTREAM_FAILED, UPSTREAM_TIMEOUT } from '../l7/forward-http1.js';
import type { Logger } from '../util/log.js';
import type { CertificateSource } from '../ztunnel/identity/types.js';
import { identityFacts, peerFactsOf, type PeerFacts, type ProxyMetrics, type TcpConnectionDescription } from '../ztunnel/metrics.js';
import { authorizedSourceIp } from '../ztunnel/proxy/inbound.js';
import { pickWeighted } from '../ztunnel/state/load-balancer.js';
import type { DestinationAnalysis, ZtunnelState } from '../ztunnel/state/store.js';
import type { ProxyState, Resolution } from '../ztunnel/state/types.js';
import type { WaypointConfig } from './config.js';
import { detectProtocol, protocolHint, routedServiceOf, waypointTarget, type TargetState, type WaypointTarget } from './target.js';
import { drawFault, FAULT_ABORT_BODY, firstMatchingRoute, pickDestination, redirectLocation, rewrittenPath, subsetOf } from '../l7/route-match.js';
import { EndpointPicker, type HashFacts } from './endpoint-picker.js';
import type { DestinationPolicy } from '../gen/ambit/waypoint/waypoint_pb.js';
import { Counter } from 'prom-client';
import type { HttpRoute } from '../gen/ambit/route/route_pb.js';
import { bytesToIp } from '../api/ip.js';
import { isReachable, tunnelTargetFor, type UpstreamDialer } from '../l7/tunnel-target.js';

/** Largest request head accepted (HTTP/1.1 request line and headers; HTTP/2 header list). */
export const MAX_REQUEST_HEADER_BYTES = 32 * 1024;
/** How long a tunnel of unknown protocol may stay silent before it is treated as TCP (server-first protocols). */
const DETECT_TIMEOUT_MS = 1000;
const DETECT_MAX_BYTES = 64;
const DENIED_BODY = 'RBAC: access denied';
const GRPC_PERMISSION_DENIED = '7';
const GRPC_UNAVAILABLE = '14';
const GRPC_DEADLINE_EXCEEDED = '4';
/** What gRPC clients see for an injected HTTP abort (UNKNOWN, as Envoy maps most HTTP statuses). */
const GRPC_ABORTED_BY_FAULT = '2';

export interface WaypointProxyOptions {
  /** The waypoint's SPIFFE identity. */
  identity: string;
  certificates: EndpointCertificateSource & CertificateSource;
  /** The mesh state; `onChange` tells the waypoint to drop what it derived from it (the endpoint evaluations it picks from per request). */
  state: ProxyState & TargetState & Pick<ZtunnelState, 'onChange' | 'analyzeDestination' | 'resolutionThrough' | 'servicesByHostname'>;
  config: WaypointConfig;
  /** The waypoint's own workload (from xDS when it is there). */
  self: () => Workload;
  clusterId: string;
  log: Logger;
  requestMetrics: RequestMetrics;
  proxyMetrics: ProxyMetrics;
  /** One JSON line per request. */
  accessLog?: boolean;
  /** Port dialled on endpoints (their node captures it as HBONE). Default 15008. */
  endpointPort?: number;
  /** Maps an address to what is actually dialled (tests map pod IPs to loopback). */
  dialAddress?: (ip: string, port: number) => DialTarget;
  peerLimits?: Partial<HbonePeerLimits>;
  requiredTrustDomain?: string;
  detectTimeoutMs?: number;
}

type Connection = Omit<TcpConnectionDescription, 'reporter'>;

/** What a forwarded request to one endpoint needs besides its policy decision; derived from the state, the same for every request of a tunnel to that endpoint. */
interface EndpointPlan {
  tunnel: TunnelTarget;
  connection: Connection;
  endpoint: string;
}

/** What the waypoint knows of one tunnel: who sent it (authenticated) and what it asked for. */
interface TunnelContext {
  target: Exclude<WaypointTarget, { kind: 'reject' }>;
  peerIdentity: string;
  sourcePrincipal: string;
  sourceNamespace?: string;
  sourceIp: string;
  source: PeerFacts;
  /** Per endpoint picked for this tunnel's requests; valid while `generation` is the proxy's (state and config unchanged). */
  endpoints: Map<string, EndpointPlan>;
  generation: number;
}

interface HttpRequestView {
  method: string;
  /** Path and query as sent. */
  target: string;
  host: string;
  headers: IncomingHttpHeaders;
  protocol: 'http' | 'grpc';
}

/** The decision for one request: deny, no endpoint, or forward to a tunnel. */
type RequestPlan =
  | { kind: 'deny'; decision: L7Decision; connection: Connection }
  | { kind: 'unavailable'; reason: string; connection: Connection }
  /** A route answers by itself: its direct status, or an injected abort (`FI`). */
  | { kind: 'direct'; status: number; body: string; flags: string; decision: L7Decision; connection: Connection; headers?: Record<string, string> }
  | {
      kind: 'forward';
      tunnel: TunnelTarget;
      decision: L7Decision;
      connection: Connection;
      endpoint: string;
      /** The mesh route the request follows, if one matched: its timeout, retries and header changes. */
      route?: HttpRoute;
      /** An injected delay (ms) before the request is sent. */
      delayMs: number;
      /** Another pick of the same destination, for a retry (set when the route retries). */
      retarget?: () => TunnelTarget | undefined;
      /** Outlier detection and requests in flight of the picked endpoint, when its destination has a DestinationRule policy. */
      watched?: Watched;
    };

/** What admit() hands back for a request no connection pool limits. */
const NOTHING_TO_RELEASE = (): void => undefined;

/** An endpoint whose outcomes outlier detection watches. */
type Watched = { hostname: string; uid: string; policy: DestinationPolicy; endpoints: readonly string[] };

/** Where a matched route sends one request: a destination service (a subset of it) and port. */
interface RoutedDestination {
  route: HttpRoute;
  hostname: string;
  port: number;
  subset?: { name: string; workloads: ReadonlySet<string> };
}

/** Destinations (VIP:port, pod IP:port) whose endpoint evaluation is kept; more are evaluated per request. */
const MAX_CACHED_DESTINATIONS = 4096;

/** Up to this many endpoints' plans are kept per tunnel (a service has more endpoints than that only rarely; beyond, the oldest goes). */
const ENDPOINT_PLANS_PER_TUNNEL = 64;

function endpointKey(resolution: Extract<Resolution, { kind: 'hbone' | 'gateway' | 'plaintext' }>): string {
  const { upstream } = resolution;
  const via = resolution.kind === 'gateway' ? ` ${formatAuthority(resolution.gateway.address, resolution.gateway.port)} ${resolution.authority}` : '';
  return `${resolution.kind} ${upstream.workload.uid} ${formatAuthority(upstream.address, upstream.port)} ${upstream.service ? `${upstream.service.namespace}/${upstream.service.hostname}` : ''}${via}`;
}

function withoutQuery(target: string): string {
  const q = target.search(/[?#]/);
  return q === -1 ? target : target.slice(0, q);
}

function flatHeaders(headers: IncomingHttpHeaders): Record<string, string | undefined> {
  const flat: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(headers)) flat[name] = Array.isArray(value) ? value.join(',') : value;
  return flat;
}

/** What L7 policy reads of an HTTP request. */
function httpFacts(view: HttpRequestView): NonNullable<RequestFacts['http']> {
  return { host: view.host, method: view.method, path: withoutQuery(view.target), headers: flatHeaders(view.headers) };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * `ambit waypoint`: terminates HBONE with its own identity (port 15008). A CONNECT names a service
 * VIP:port or a workload pod IP:port the waypoint serves; the tunnel's bytes are read as HTTP/1.1
 * or HTTP/2 (gRPC included) by the first bytes, or as TCP. Every HTTP request gets its own endpoint
 * pick (the same selection as ztunnel's, health and locality included), the L7 policies of its
 * target, request metrics and an access log line; it goes to the endpoint over HBONE, on keep-alive
 * connections pooled per endpoint. TCP gets one endpoint and the policies without HTTP attributes.
 */
export class WaypointProxy {
  private readonly endpoint: HboneEndpoint;
  private readonly upstreams = new HttpUpstreams();
  private readonly pool: HbonePool;
  private readonly inner: InnerHbonePool;
  private readonly dialer: UpstreamDialer;
  private readonly http1: HttpServer;
  private readonly contexts = new WeakMap<object, TunnelContext>();
  private readonly http2Sessions = new Set<ServerHttp2Session>();
  /** Bumped on every state or config change: what tunnels derived from them is stale. */
  private generation = 0;
  /** Per destination, what resolve() evaluates before its pick; cleared on every change. */
  private readonly analyses = new Map<string, DestinationAnalysis>();
  /** Load-balancer positions, requests in flight and outlier detection per endpoint; outlives config changes. */
  private readonly picker = new EndpointPicker();
  private readonly ejections: Counter<'destination_service'>;
  private readonly overflows: Counter<'destination_service'>;
  /** Requests in flight per destination with a connection pool limit. */
  private readonly activeRequests = new Map<string, number>();

  constructor(private readonly options: WaypointProxyOptions) {
    parseSpiffeUri(options.identity);
    const dialAddress = options.dialAddress ?? ((ip: string, port: number) => ({ host: ip, port }));
    const log = options.log;
    this.pool = new HbonePool({ certificates: options.certificates, log, metrics: options.proxyMetrics, hbonePort: options.endpointPort ?? HBONE_PORT, dialAddress });
    this.inner = new InnerHbonePool({ outer: this.pool, certificates: options.certificates, log, metrics: options.proxyMetrics });
    this.dialer = { identity: options.identity, self: options.self, clusterId: options.clusterId, network: options.state.network, pool: this.pool, inner: this.inner, dialAddress, log };
    this.endpoint = new HboneEndpoint({
      role: 'waypoint',
      identity: options.identity,
      certificates: options.certificates,
      log,
      metrics: options.proxyMetrics,
      requiredTrustDomain: options.requiredTrustDomain,
      peerLimits: options.peerLimits,
      onConnect: (request) => this.onConnect(request),
    });
    const invalidate = () => {
      this.generation++;
      this.analyses.clear();
    };
    this.ejections = new Counter({ name: 'ambit_waypoint_outlier_ejections_total', help: 'Endpoints ejected by outlier detection (DestinationRule outlierDetection), by destination service', labelNames: ['destination_service'], registers: [options.requestMetrics.registry] });
    this.overflows = new Counter({ name: 'ambit_waypoint_overflow_total', help: 'Requests refused (503 UO) by a DestinationRule connectionPool limit, by destination service', labelNames: ['destination_service'], registers: [options.requestMetrics.registry] });
    options.state.onChange(invalidate);
    options.config.onChange(invalidate);
    this.http1 = createHttpServer({ maxHeaderSize: MAX_REQUEST_HEADER_BYTES, headersTimeout: 30_000, requestTimeout: 0, keepAliveTimeout: 60_000 }, (req, res) => this.onHttp1Request(req, res));
    this.http1.on('clientError', (error: Error & { code?: string }, socket: Duplex) => {
      const status = error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      log.debug({ err: error.message, code: error.code }, 'malformed HTTP request on a waypoint tunnel');
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      else socket.destroy();
    });
    // Upgrades (WebSocket) are not proxied yet: said plainly rather than hung.
    this.http1.on('upgrade', (_req: IncomingMessage, socket: Duplex) => socket.end('HTTP/1.1 501 Not Implemented\r\nconnection: close\r\ncontent-length: 0\r\n\r\n'));
  }

  start(port: number = HBONE_PORT, host = '0.0.0.0'): Promise<void> {
    return this.endpoint.start(port, host);
  }

  port(): number {
    return this.endpoint.port();
  }

  get ready(): boolean {
    return this.endpoint.ready;
  }

  /** Pooled upstream connections, for tests and the config dump. */
  upstreamCounts(): ReturnType<HttpUpstreams['counts']> & { hboneSessions: number } {
    return { ...this.upstreams.counts(), hboneSessions: this.pool.sessionCount() };
  }

  async stop(drainTimeoutMs = 5000): Promise<void> {
    await this.endpoint.stop({ drainTimeoutMs });
    for (const session of this.http2Sessions) session.destroy();
    this.http1.close();
    this.upstreams.close();
    this.pool.destroy();
  }

  private onConnect({ connection, headers }: ConnectRequest<undefined>): ConnectReply {
    const { state, config } = this.options;
    const target = waypointTarget(singleHeader(headers[':authority']), state, config.served);
    if (target.kind === 'reject') return { kind: 'reject', status: target.status, reason: target.reason, message: target.message };
    const sourceIp = authorizedSourceIp(connection, singleHeader(headers.forwarded), { workloadByIp: (ip) => state.workloadByIp(ip), hostNetworkWorkloadsAt: (ip) => state.hostNetworkWorkloadsAt(ip), isRelay: () => false });
    const atSource = state.workloadByIp(sourceIp);
    const source = atSource && spiffeUri(identityOf(atSource)) === connection.peerIdentity ? peerFactsOf(atSource, connection.peerIdentity, this.options.clusterId) : identityFacts(connection.peerIdentity);
    let sourceNamespace: string | undefined;
    try {
      sourceNamespace = parseSpiffeUri(connection.peerIdentity).namespace;
    } catch {
      sourceNamespace = undefined;
    }
    const context: TunnelContext = {
      target,
      peerIdentity: connection.peerIdentity,
      sourcePrincipal: connection.peerIdentity.replace(/^spiffe:\/\//, ''),
      sourceNamespace,
      sourceIp,
      source,
      endpoints: new Map(),
      generation: this.generation,
    };
    return { kind: 'serve', serve: (stream) => this.serveTunnel(stream, context) };
  }

  private serveTunnel(stream: Duplex, context: TunnelContext): void {
    stream.on('error', (error) => this.options.log.debug({ err: error.message }, 'waypoint tunnel error'));
    const hint = protocolHint(context.target.appProtocol);
    if (hint === 'tcp') {
      this.serveTcp(stream, context);
      return;
    }
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => finish('tcp'), this.options.detectTimeoutMs ?? DETECT_TIMEOUT_MS);
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = stream.read() as Buffer | null) !== null) buffered = Buffer.concat([buffered, chunk]);
      const detected = detectProtocol(buffered);
      if (detected !== 'need-more' || buffered.length >= DETECT_MAX_BYTES) finish(detected === 'need-more' ? 'tcp' : detected);
    };
    const onEnd = () => finish('tcp');
    const finish = (protocol: 'http1' | 'http2' | 'tcp') => {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      if (buffered.length) stream.unshift(buffered);
      if (protocol === 'http1') this.serveHttp1(stream, context);
      else if (protocol === 'http2') this.serveHttp2(stream, context);
      else if (hint === 'http') {
        this.options.log.debug({ target: context.target.ip }, 'tunnel to an HTTP port did not start with HTTP; closing');
        abort(stream);
      } else this.serveTcp(stream, context);
    };
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
  }

  private serveHttp1(stream: Duplex, context: TunnelContext): void {
    const socket = new StreamSocket(stream, { address: context.sourceIp });
    this.contexts.set(socket, context);
    this.http1.emit('connection', socket);
  }

  private serveHttp2(stream: Duplex, context: TunnelContext): void {
    const session = performServerHandshake(new StreamSocket(stream, { address: context.sourceIp }), {
      maxHeaderListPairs: 256,
      maxSessionMemory: 32,
      settings: { maxConcurrentStreams: 256, maxHeaderListSize: MAX_REQUEST_HEADER_BYTES, enablePush: false },
    });
    this.http2Sessions.add(session);
    session.on('close', () => this.http2Sessions.delete(session));
    session.on('error', (error) => this.options.log.debug({ err: error.message }, 'waypoint HTTP/2 session error'));
    session.setTimeout(10 * 60_000, () => session.close());
    session.on('stream', (downstream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      this.onHttp2Stream(downstream, headers, context).catch((error: unknown) => {
        this.options.log.error({ err: errorText(error) }, 'waypoint HTTP/2 request failed');
        downstream.close(h2.NGHTTP2_INTERNAL_ERROR);
      });
    });
  }

  /** Picks the endpoint and decides: the part every protocol shares. */
  /** `view` is the HTTP request (absent for plain TCP); its facts are read only when some policy could need them. */
  private plan(context: TunnelContext, view: HttpRequestView | undefined): RequestPlan {
    const { config, log } = this.options;
    const { target } = context;
    const routing = view ? this.routeOf(context, view) : undefined;
    const hash: HashFacts = { headers: view?.headers ?? {}, target: view?.target ?? '/', sourceIp: context.sourceIp };
    let watched: Watched | undefined;
    const resolveOnce = (): Resolution => {
      try {
        const picked = routing?.kind === 'route' ? this.resolveRouted(routing.destination, hash) : target.kind === 'service' ? this.resolveWithPolicy(target.service.hostname, target.ip, target.port, undefined, hash) : undefined;
        if (picked) {
          watched = picked.watched;
          return picked.resolution;
        }
        return this.resolve(target.ip, target.port);
      } catch (error) {
        log.error({ target: `${target.ip}:${target.port}`, err: errorText(error) }, 'resolving the destination failed');
        return { kind: 'passthrough' };
      }
    };
    const resolution = routing?.kind === 'direct' ? undefined : resolveOnce();
    const service = target.kind === 'service' ? target.service : undefined;
    const base = { source: context.source, destination: {}, service, mutualTls: true };
    if (resolution && !isReachable(resolution)) {
      const routed = routing?.kind === 'route' ? `${routing.destination.hostname}${routing.destination.subset ? ` subset ${routing.destination.subset.name}` : ''}` : undefined;
      const reason = resolution.kind === 'unavailable' ? resolution.reason : `no endpoint for ${routed ?? (target.kind === 'service' ? target.serviceName : target.workload.uid)}`;
      return { kind: 'unavailable', reason, connection: base };
    }
    const forward = resolution && this.endpointPlan(context, resolution, base);
    const connection = forward?.connection ?? base;
    const facts: RequestFacts = {
      sourcePrincipal: context.sourcePrincipal,
      sourceNamespace: context.sourceNamespace,
      sourceIp: context.sourceIp,
      remoteIp: context.sourceIp,
      destinationIp: target.ip,
      destinationPort: target.port,
      http: view && config.served.policies.length > 0 ? httpFacts(view) : undefined,
    };
    const workload = resolution?.upstream.workload.uid ?? (target.kind === 'workload' ? target.workload.uid : undefined);
    const decision = authorizeRequest(config.served.policies, { service: target.kind === 'service' ? target.serviceName : undefined, workload }, facts);
    if (decision.dryRun) log.info({ source: context.peerIdentity, wouldAllow: decision.dryRun.allowed, policy: decision.dryRun.policy }, 'dry-run policy would decide differently');
    if (!decision.allowed) return { kind: 'deny', decision, connection };
    if (routing?.kind === 'direct') return { kind: 'direct', status: routing.status, body: '', flags: '-', decision, connection, ...(routing.headers ? { headers: routing.headers } : {}) };
    const route = routing?.route;
    const fault = route ? drawFault(route) : { delayMs: 0, abortStatus: 0 };
    if (fault.abortStatus) return { kind: 'direct', status: fault.abortStatus, body: FAULT_ABORT_BODY, flags: 'FI', decision, connection };
    // Only a route with retries picks again; most requests need no closure for it.
    const retarget = route?.retry?.attempts
      ? () => {
          const again = resolveOnce();
          return isReachable(again) ? this.endpointPlan(context, again, base).tunnel : undefined;
        }
      : undefined;
    return { kind: 'forward', tunnel: forward!.tunnel, decision, connection, endpoint: forward!.endpoint, route, delayMs: fault.delayMs, retarget, watched };
  }

  /** The mesh route a request follows, if its service has routes and one matches. */
  private routeOf(context: TunnelContext, view: HttpRequestView): { kind: 'route'; route: HttpRoute; destination: RoutedDestination } | { kind: 'direct'; route: HttpRoute; status: number; headers?: Record<string, string> } | undefined {
    const { routes } = this.options.config.served;
    if (routes.size === 0) return undefined;
    const service = routedServiceOf(context.target, view.host);
    const serviceRoutes = service && routes.get(service.name);
    if (!service || !serviceRoutes) return undefined;
    const route = firstMatchingRoute(serviceRoutes, { method: view.method, url: view.target, host: view.host, headers: view.headers, port: service.port });
    if (!route) return undefined;
    if (route.directStatus) return { kind: 'direct', route, status: route.directStatus };
    if (route.redirect) {
      const scheme = singleHeader(view.headers['x-forwarded-proto'] as string | undefined) === 'https' ? 'https' : 'http';
      return { kind: 'direct', route, status: route.redirect.code || 301, headers: { location: redirectLocation(route, { method: view.method, url: view.target, host: view.host, headers: view.headers }, scheme) } };
    }
    const picked = pickDestination(route.destinations);
    if (!picked) return { kind: 'direct', route, status: 503 };
    return {
      kind: 'route',
      route,
      destination: {
        route,
        hostname: picked.hostname,
        port: picked.port || service.port,
        subset: subsetOf(picked),
      },
    };
  }

  /** A routed destination resolved like resolve() does for its VIP, among the subset's workloads when it names one, under its DestinationRule policy. */
  private resolveRouted(destination: RoutedDestination, hash: HashFacts): { resolution: Resolution; watched?: Watched } {
    const { state } = this.options;
    const service = state.servicesByHostname(destination.hostname)[0];
    const address = service && (service.addresses.find((a) => a.network === state.network) ?? service.addresses[0]);
    if (!service || !address) return { resolution: { kind: 'passthrough' } };
    const vip = bytesToIp(address.address);
    const withPolicy = this.resolveWithPolicy(destination.hostname, vip, destination.port, destination.subset, hash);
    if (withPolicy) return withPolicy;
    if (!destination.subset) return { resolution: this.resolve(vip, destination.port) };
    return { resolution: state.resolve(this.options.self(), vip, destination.port, { ignoreWaypoints: true, subset: destination.subset }) };
  }

  /**
   * The pick under a DestinationRule policy (load balancer, outlier detection) for a destination that
   * has one; undefined when it has none (the ordinary pick applies). The endpoints considered are
   * resolve()'s (health, reachability, locality), the subset's when one is named.
   */
  private resolveWithPolicy(hostname: string, vip: string, port: number, subset: RoutedDestination['subset'], hash: HashFacts): { resolution: Resolution; watched?: Watched } | undefined {
    const policy = this.options.config.served.destinationPolicies.get(hostname);
    if (!policy) return undefined;
    const key = `${formatAuthority(vip, port)} ${subset?.name ?? ''}`;
    let analysis = this.analyses.get(key);
    if (!analysis) {
      analysis = this.options.state.analyzeDestination(this.options.self(), vip, port, { ignoreWaypoints: true, subset });
      if (this.analyses.size >= MAX_CACHED_DESTINATIONS) this.analyses.clear();
      this.analyses.set(key, analysis);
    }
    if (analysis.kind !== 'service') return { resolution: analysis.kind === 'workload' ? analysis.resolution : { kind: 'passthrough' } };
    const { evaluation } = analysis;
    if (evaluation.unavailable !== undefined) return { resolution: { kind: 'unavailable', service: analysis.service, reason: evaluation.unavailable } };
    const candidates = evaluation.chosenFrom.map((e) => ({ uid: e.endpoint.workload.uid, capacity: e.capacity, evaluation: e }));
    const chosen = this.picker.pick(key, candidates, policy, hash);
    if (!chosen) return { resolution: { kind: 'unavailable', service: analysis.service, reason: `service ${hostname} has no endpoint with capacity` } };
    return { resolution: this.options.state.resolutionThrough(analysis, chosen.evaluation), watched: { hostname, uid: chosen.uid, policy, endpoints: candidates.map((c) => c.uid) } };
  }

  /**
   * Copies of a request for the route's mirrors (each by its percentage), with the Host suffixed
   * `-shadow` as Envoy does; their answers are dropped. Requests with a body are not mirrored (the
   * body is streamed to the real destination, not kept).
   */
  private mirror(route: HttpRoute, req: IncomingMessage, path: string, headers: OutgoingHttpHeaders): void {
    if (hasRequestBody(req)) return;
    for (const mirror of route.mirrors) {
      const destination = mirror.destination;
      if (!destination || !(mirror.percent >= 100 || Math.random() * 100 < mirror.percent)) continue;
      const routed: RoutedDestination = {
        route,
        hostname: destination.hostname,
        port: destination.port || (this.options.state.servicesByHostname(destination.hostname)[0]?.ports[0]?.servicePort ?? 0),
        subset: subsetOf(destination),
      };
      const { resolution } = this.resolveRouted(routed, { headers: req.headers, target: path, sourceIp: '' });
      if (!isReachable(resolution)) continue;
      const host = String(headers.host ?? destination.hostname);
      const copy = this.upstreams.http1(tunnelTargetFor(resolution, this.dialer), { method: req.method ?? 'GET', path, headers: { ...headers, host: `${host.replace(/:\d+$/, '')}-shadow` } });
      copy.on('response', (response) => response.resume());
      copy.on('error', (error) => this.options.log.debug({ mirror: destination.hostname, err: error.message }, 'mirrored request failed'));
      copy.setTimeout(30_000, () => copy.destroy());
      copy.end();
    }
  }

  /**
   * Circuit breaking (DestinationRule connectionPool) for a request to a watched destination: the
   * release function when it may go, undefined when the destination is at its limit (counted).
   */
  private admit(watched: Watched | undefined): (() => void) | undefined {
    const pool = watched?.policy.connectionPool;
    if (!watched || !pool) return NOTHING_TO_RELEASE;
    const active = this.activeRequests.get(watched.hostname) ?? 0;
    const byRequests = pool.maxRequests > 0 && active >= pool.maxRequests;
    const byConnections = pool.maxConnections > 0 && active >= pool.maxConnections + (pool.maxPendingRequests || 0);
    if (byRequests || byConnections) {
      this.overflows.inc({ destination_service: watched.hostname });
      return undefined;
    }
    this.activeRequests.set(watched.hostname, active + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.activeRequests.get(watched.hostname) ?? 1) - 1;
      if (left > 0) this.activeRequests.set(watched.hostname, left);
      else this.activeRequests.delete(watched.hostname);
    };
  }

  /** How a request to a watched endpoint ended: outlier detection counts it, and an ejection is logged and counted. */
  private reportOutcome(watched: Watched | undefined, status: number): void {
    if (!watched) return;
    const ejection = this.picker.report(watched.hostname, watched.uid, status, watched.policy.outlierDetection, watched.endpoints.length, watched.endpoints);
    if (!ejection) return;
    this.ejections.inc({ destination_service: ejection.hostname });
    this.options.log.warn({ destination: ejection.hostname, endpoint: ejection.uid, forMs: ejection.forMs, policy: watched.policy.source }, 'outlier detection ejected an endpoint');
  }

  /**
   * What `state.resolve(self, ip, port, { ignoreWaypoints: true })` returns, a fresh weighted pick
   * per request, from an endpoint evaluation kept until the state or config changes. Endpoints
   * behind east-west gateways are resolved per request (resolve picks among a network's gateways).
   */
  private resolve(ip: string, port: number): Resolution {
    const { state } = this.options;
    const key = formatAuthority(ip, port);
    let analysis = this.analyses.get(key);
    if (!analysis) {
      analysis = state.analyzeDestination(this.options.self(), ip, port, { ignoreWaypoints: true });
      if (analysis.kind === 'service' && analysis.evaluation.chosenFrom.some((e) => e.reachability.kind === 'gateway')) {
        return state.resolve(this.options.self(), ip, port);
      }
      if (this.analyses.size >= MAX_CACHED_DESTINATIONS) this.analyses.clear();
      this.analyses.set(key, analysis);
    }
    switch (analysis.kind) {
      case 'passthrough':
        return { kind: 'passthrough' };
      case 'workload':
        return analysis.resolution;
      case 'service': {
        const { evaluation } = analysis;
        if (evaluation.unavailable !== undefined) return { kind: 'unavailable', service: analysis.service, reason: evaluation.unavailable };
        return state.resolutionThrough(analysis, pickWeighted(evaluation.chosenFrom, (candidate) => candidate.capacity, Math.random));
      }
    }
  }

  /** The tunnel target and metric description of the picked endpoint, kept per tunnel while nothing changed (the request metrics and upstream pools key on them). */
  private endpointPlan(context: TunnelContext, resolution: Extract<Resolution, { kind: 'hbone' | 'gateway' | 'plaintext' }>, base: Connection): EndpointPlan {
    if (context.generation !== this.generation) {
      context.endpoints.clear();
      context.generation = this.generation;
    }
    const key = endpointKey(resolution);
    const cached = context.endpoints.get(key);
    if (cached) return cached;
    const destination = resolution.upstream.workload;
    const plan: EndpointPlan = {
      tunnel: tunnelTargetFor(resolution, this.dialer),
      connection: { ...base, service: resolution.upstream.service ?? base.service, destination: peerFactsOf(destination, spiffeUri(identityOf(destination)), this.options.clusterId) },
      endpoint: `${resolution.upstream.address}:${resolution.upstream.port}`,
    };
    if (context.endpoints.size >= ENDPOINT_PLANS_PER_TUNNEL) context.endpoints.delete(context.endpoints.keys().next().value!);
    context.endpoints.set(key, plan);
    return plan;
  }

  private finishRequest(context: TunnelContext, view: HttpRequestView, plan: RequestPlan, result: { status: number; flags: string; grpcStatus?: string; started: number; requestBytes: number; responseBytes: number }): void {
    const durationMs = performance.now() - result.started;
    this.options.requestMetrics.record({
      reporter: 'waypoint',
      connection: plan.connection,
      protocol: view.protocol,
      responseCode: result.status,
      responseFlags: result.flags,
      grpcStatus: result.grpcStatus,
      durationMs,
      requestBytes: result.requestBytes,
      responseBytes: result.responseBytes,
    });
    if (this.options.accessLog) {
      this.options.log.info(
        {
          accessLog: true,
          source: context.peerIdentity,
          sourceIp: context.sourceIp,
          method: view.method,
          host: view.host,
          path: view.target.slice(0, 512),
          protocol: view.protocol,
          status: result.status,
          flags: result.flags,
          durationMs: Math.round(durationMs * 1000) / 1000,
          upstream: plan.kind === 'forward' ? plan.endpoint : undefined,
          policy: plan.kind === 'unavailable' ? undefined : plan.decision.policy,
          audited: plan.kind === 'unavailable' || plan.decision.audited.length === 0 ? undefined : plan.decision.audited,
        },
        'request',
      );
    }
  }

  private onHttp1Request(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    const context = this.contexts.get(req.socket);
    if (!context) {
      res.writeHead(500).end();
      return;
    }
    const view: HttpRequestView = {
      method: req.method ?? 'GET',
      target: req.url ?? '/',
      host: req.headers.host ?? '',
      headers: req.headers,
      protocol: String(req.headers['content-type'] ?? '').startsWith('application/grpc') ? 'grpc' : 'http',
    };
    const plan = this.plan(context, view);
    const answer = (status: number, body: string, flags: string, headers?: Record<string, string>) => {
      const responseBytes = answerPlain(res, status, body, headers);
      req.resume();
      this.finishRequest(context, view, plan, { status, flags, started, requestBytes: 0, responseBytes });
    };
    if (plan.kind === 'deny') return answer(403, DENIED_BODY, '-');
    if (plan.kind === 'unavailable') {
      this.options.log.warn({ source: context.peerIdentity, reason: plan.reason }, 'no healthy upstream for a request');
      return answer(503, NO_HEALTHY_UPSTREAM, 'UH');
    }
    if (plan.kind === 'direct') return answer(plan.status, plan.body, plan.flags, plan.headers);
    const admitted = this.admit(plan.watched);
    if (!admitted) return answer(503, `${UPSTREAM_FAILED}. reset reason: overflow`, 'UO');
    const headers = forwardableHeaders(req.headers);
    headers['x-forwarded-proto'] ??= 'http';
    headers['x-request-id'] ??= randomUUID();
    const { route } = plan;
    applyHeaderOperations(headers, route?.requestHeaders);
    const facts = { method: view.method, url: view.target, host: view.host, headers: req.headers };
    const path = route ? rewrittenPath(route, facts) : view.target;
    if (route?.rewrite?.authority) headers.host = route.rewrite.authority;
    if (route?.mirrors.length) this.mirror(route, req, path, headers);
    const endInFlight = plan.watched && this.picker.begin(plan.watched.uid);
    relayHttp1({
      upstreams: this.upstreams,
      tunnel: plan.tunnel,
      req,
      res,
      headers,
      timeoutMs: route?.timeoutMs,
      retry: route?.retry,
      nextTunnel: plan.retarget,
      responseHeaders: route?.responseHeaders,
      path,
      delayMs: plan.delayMs,
      onDone: (outcome) => {
        endInFlight?.();
        admitted();
        if (outcome.error) this.options.log.warn({ source: context.peerIdentity, upstream: plan.endpoint, err: outcome.error.message }, 'upstream request failed');
        if (outcome.flags !== 'DC') this.reportOutcome(plan.watched, outcome.flags === 'UF' || outcome.flags === 'UC' ? 0 : outcome.status);
        this.finishRequest(context, view, plan, { ...outcome, flags: plan.delayMs && outcome.flags === '-' ? 'DI' : outcome.flags, started });
      },
    });
  }

  private async onHttp2Stream(downstream: ServerHttp2Stream, headers: IncomingHttpHeaders, context: TunnelContext): Promise<void> {
    const started = performance.now();
    const view: HttpRequestView = {
      method: singleHeader(headers[':method']) ?? 'GET',
      target: singleHeader(headers[':path']) ?? '/',
      host: singleHeader(headers[':authority']) ?? singleHeader(headers.host) ?? '',
      headers,
      protocol: String(headers['content-type'] ?? '').startsWith('application/grpc') ? 'grpc' : 'http',
    };
    let requestBytes = 0;
    let responseBytes = 0;
    downstream.on('data', (chunk: Buffer) => (requestBytes += chunk.length));
    downstream.on('error', () => undefined);
    const plan = this.plan(context, view);
    const done = (status: number, flags: string, grpcStatus?: string) => {
      if (plan.kind === 'forward' && flags !== 'DC') this.reportOutcome(plan.watched, flags === 'UF' || flags === 'UC' ? 0 : status);
      this.finishRequest(context, view, plan, { status, flags, grpcStatus, started, requestBytes, responseBytes });
    };
    const answer = (status: number, body: string, flags: string, grpcStatus: string) => {
      if (downstream.destroyed || downstream.headersSent) return;
      if (view.protocol === 'grpc') {
        downstream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': grpcStatus, 'grpc-message': encodeURIComponent(body) }, { endStream: true });
        done(200, flags, grpcStatus);
      } else {
        responseBytes += Buffer.byteLength(body);
        downstream.respond({ ...(plan.kind === 'direct' ? plan.headers : {}), ':status': status, 'content-type': 'text/plain' });
        downstream.end(body);
        done(status, flags);
      }
      downstream.resume();
    };
    if (plan.kind === 'deny') return answer(403, DENIED_BODY, '-', GRPC_PERMISSION_DENIED);
    if (plan.kind === 'unavailable') return answer(503, NO_HEALTHY_UPSTREAM, 'UH', GRPC_UNAVAILABLE);
    if (plan.kind === 'direct') return answer(plan.status, plan.body, plan.flags, plan.status === 503 ? GRPC_UNAVAILABLE : GRPC_ABORTED_BY_FAULT);
    const admitted = this.admit(plan.watched);
    if (!admitted) return answer(503, `${UPSTREAM_FAILED}. reset reason: overflow`, 'UO', GRPC_UNAVAILABLE);
    downstream.once('close', admitted);
    if (plan.delayMs) await new Promise((resolve) => setTimeout(resolve, plan.delayMs));
    if (downstream.destroyed) return done(0, 'DC');
    let session;
    try {
      session = await this.upstreams.http2(plan.tunnel);
    } catch (error) {
      this.options.log.warn({ source: context.peerIdentity, upstream: plan.endpoint, err: errorText(error) }, 'upstream HTTP/2 session failed');
      return answer(503, `${UPSTREAM_FAILED}. reset reason: connection failure`, 'UF', GRPC_UNAVAILABLE);
    }
    const forwarded = forwardableHeaders(headers);
    forwarded['x-forwarded-proto'] ??= 'http';
    forwarded['x-request-id'] ??= randomUUID();
    applyHeaderOperations(forwarded, plan.route?.requestHeaders);
    const route = plan.route;
    const path = route ? rewrittenPath(route, { method: view.method, url: view.target, host: view.host, headers }) : view.target;
    const authority = route?.rewrite?.authority || view.host || formatAuthority(context.target.ip, context.target.port);
    const upstream = session.request({ ...forwarded, ':method': view.method, ':path': path, ':authority': authority, ':scheme': 'http' });
    let trailers: IncomingHttpHeaders | undefined;
    let status = 0;
    let finished = false;
    upstream.on('response', (response) => {
      status = Number(response[':status'] ?? 502);
      if (downstream.destroyed) return;
      downstream.respond({ ...applyHeaderOperations(forwardableHeaders(response), plan.route?.responseHeaders), ':status': status }, { waitForTrailers: true });
      upstream.on('data', (chunk: Buffer) => (responseBytes += chunk.length));
      upstream.pipe(downstream);
    });
    upstream.on('trailers', (received) => (trailers = received));
    downstream.on('wantTrailers', () => {
      const out = trailers ? forwardableHeaders(trailers) : {};
      downstream.sendTrailers(out);
    });
    upstream.on('end', () => {
      if (finished) return;
      finished = true;
      done(status, '-', singleHeader(trailers?.['grpc-status'] as string | undefined));
    });
    upstream.on('error', (error) => {
      if (finished) return;
      finished = true;
      this.options.log.warn({ source: context.peerIdentity, upstream: plan.endpoint, err: error.message }, 'upstream HTTP/2 request failed');
      if (!downstream.headersSent) answer(503, `${UPSTREAM_FAILED}. reset reason: remote reset`, 'UC', GRPC_UNAVAILABLE);
      else {
        downstream.close(h2.NGHTTP2_INTERNAL_ERROR);
        done(status, 'UC');
      }
    });
    // The route's timeout: 504 (gRPC DEADLINE_EXCEEDED) before the answer starts, the stream cut after.
    const timeout = route?.timeoutMs
      ? setTimeout(() => {
          if (finished) return;
          finished = true;
          upstream.close(h2.NGHTTP2_CANCEL);
          if (!downstream.headersSent) answer(504, UPSTREAM_TIMEOUT, 'UT', GRPC_DEADLINE_EXCEEDED);
          else {
            downstream.close(h2.NGHTTP2_CANCEL);
            done(status, 'UT');
          }
        }, route.timeoutMs)
      : undefined;
    downstream.once('close', () => {
      clearTimeout(timeout);
      if (!finished) {
        finished = true;
        upstream.close(h2.NGHTTP2_CANCEL);
        done(0, 'DC');
      }
    });
    downstream.pipe(upstream);
  }

  private serveTcp(stream: Duplex, context: TunnelContext): void {
    const plan = this.plan(context, undefined);
    if (plan.kind !== 'forward') {
      this.options.log.info({ source: context.peerIdentity, target: `${context.target.ip}:${context.target.port}`, reason: plan.kind === 'deny' ? plan.decision.reason : plan.kind === 'unavailable' ? plan.reason : `status ${plan.status}` }, 'TCP through the waypoint refused');
      abort(stream);
      return;
    }
    plan.tunnel.open().then(
      (upstream) => {
        if (stream.destroyed) {
          upstream.destroy();
          return;
        }
        void splice(stream, upstream, { upstreamBytes: () => undefined, downstreamBytes: () => undefined });
      },
      (error: unknown) => {
        this.options.log.warn({ source: context.peerIdentity, upstream: plan.endpoint, err: errorText(error) }, 'TCP upstream through the waypoint failed');
        abort(stream);
      },
    );
  }
}
