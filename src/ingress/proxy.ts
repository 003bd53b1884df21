/**
 * The ingress data path: HTTP/1.1 servers on the listener ports of its RouteConfig; each request is
 * routed, its destination service resolved like ztunnel resolves (endpoint, waypoint, plaintext), and
 * sent over HBONE with the ingress's own identity through a keep-alive pool of tunnels.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { identityOf, spiffeUri } from '../api/identity.js';
import { bytesToIp } from '../api/ip.js';
import type { RouteConfig, Listener } from '../gen/ambit/route/route_pb.js';
import { Protocol } from '../gen/ambit/route/route_pb.js';
import type { Service, Workload } from '../gen/istio/workload/workload_pb.js';
import type { DialTarget, HbonePool, InnerHbonePool } from '../hbone/index.js';
import type { RequestMetrics } from '../l7/metrics.js';
import { isReachable, tunnelTargetFor, type UpstreamDialer } from '../l7/tunnel-target.js';
import { answerPlain, applyHeaderOperations, NO_HEALTHY_UPSTREAM, relayHttp1 } from '../l7/forward-http1.js';
import { drawFault, FAULT_ABORT_BODY, redirectLocation, rewrittenPath, subsetOf } from '../l7/route-match.js';
import { forwardableHeaders, HttpUpstreams, type TunnelTarget } from '../l7/upstream.js';
import type { Logger } from '../util/log.js';
import { peerFactsOf, type PeerFacts } from '../ztunnel/metrics.js';
import type { ZtunnelState } from '../ztunnel/state/store.js';
import { findRoute, pickDestination } from './routes.js';

/** Bounds on what a client can make the ingress hold. */
export const MAX_HEADER_BYTES = 16 * 1024;
const HEADERS_TIMEOUT_MS = 20_000;
const REQUEST_TIMEOUT_MS = 300_000;

export interface IngressProxyOptions {
  state: ZtunnelState;
  pool: HbonePool;
  /** Double HBONE to endpoints on other networks, through their east-west gateways. */
  inner: InnerHbonePool;
  /** The ingress's own SPIFFE identity, presented on every tunnel. */
  identity: string;
  /** The ingress's own workload, as the mesh knows it (or a stand-in until it does). */
  self: () => Workload;
  clusterId: string;
  requestMetrics: RequestMetrics;
  log: Logger;
  /** Ports always served (404 until routes arrive). */
  defaultPorts: number[];
  /** Where to dial an address (tests map pod addresses to loopback ports). */
  dialAddress?: (ip: string, port: number) => DialTarget;
}

/** Where a routed request goes: the tunnel and, for the metrics, who answers. */
interface Upstream {
  tunnel: TunnelTarget;
  destination: PeerFacts;
  mutualTls: boolean;
}

type Outcome = { code: number; flags: string; service?: Service; upstream?: Upstream };

export class IngressProxy {
  private config: RouteConfig | undefined;
  private readonly servers = new Map<number, Server>();
  private readonly upstreams = new HttpUpstreams();
  private readonly unsupported = new Set<number>();
  private readonly dialer: UpstreamDialer;

  constructor(private readonly options: IngressProxyOptions) {
    const dialAddress = options.dialAddress ?? ((ip: string, port: number) => ({ host: ip, port }));
    this.dialer = { identity: options.identity, self: options.self, clusterId: options.clusterId, network: options.state.network, pool: options.pool, inner: options.inner, dialAddress, log: options.log };
  }

  get listening(): number[] {
    return [...this.servers.keys()];
  }

  async update(config: RouteConfig | undefined): Promise<void> {
    this.config = config;
    const wanted = new Set(this.options.defaultPorts);
    for (const listener of config?.listeners ?? []) {
      if (listener.protocol === Protocol.HTTP) wanted.add(listener.port);
      else if (!this.unsupported.has(listener.port)) {
        this.unsupported.add(listener.port);
        this.options.log.warn({ port: listener.port, sources: listener.sources }, 'TLS (HTTPS) listeners are not served by the ingress yet; port not opened');
      }
    }
    for (const [port, server] of this.servers) {
      if (!wanted.has(port)) {
        server.close();
        this.servers.delete(port);
      }
    }
    for (const port of wanted) if (!this.servers.has(port)) await this.listen(port);
  }

  /** Stops listening; requests in flight may finish for `drainTimeoutMs`, then every connection is cut. */
  async stop(drainTimeoutMs = 5000): Promise<void> {
    const servers = [...this.servers.values()];
    this.servers.clear();
    const closed = servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const server of servers) server.closeIdleConnections();
    const cut = setTimeout(() => {
      for (const server of servers) server.closeAllConnections();
    }, drainTimeoutMs);
    cut.unref();
    await Promise.all(closed);
    clearTimeout(cut);
    this.upstreams.close();
  }

  private listen(port: number): Promise<void> {
    const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, keepAliveTimeout: 60_000 }, (req, res) => this.handle(port, req, res));
    // Bad HTTP (garbage, oversized headers) gets a 400/431 and the connection closed; never a crash.
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable) return socket.destroy();
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    });
    this.servers.set(port, server);
    return new Promise((resolve, reject) => {
      server.once('error', (err) => {
        this.servers.delete(port);
        this.options.log.error({ port, err: err.message }, 'cannot listen');
        reject(err);
      });
      server.listen(port, '0.0.0.0', () => {
        this.options.log.info({ port }, 'listening for HTTP');
        resolve();
      });
    });
  }

  private listener(port: number): Listener | undefined {
    return this.config?.listeners.find((l) => l.port === port && l.protocol === Protocol.HTTP);
  }

  private record(outcome: Outcome, started: number, requestBytes: number, responseBytes: number): void {
    const self = this.options.self();
    this.options.requestMetrics.record({
      reporter: 'source',
      connection: {
        source: peerFactsOf(self, this.options.identity, this.options.clusterId),
        destination: outcome.upstream?.destination ?? {},
        service: outcome.service,
        mutualTls: outcome.upstream?.mutualTls ?? false,
      },
      protocol: 'http',
      responseCode: outcome.code,
      responseFlags: outcome.flags,
      durationMs: performance.now() - started,
      requestBytes,
      responseBytes,
    });
  }

  private handle(port: number, req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    const answer = (outcome: Outcome, body: string, headers?: Record<string, string>) => {
      const responseBytes = answerPlain(res, outcome.code, body, headers);
      req.resume();
      this.record(outcome, started, 0, responseBytes);
    };
    const facts = { method: req.method ?? 'GET', url: req.url ?? '/', host: req.headers.host ?? '', headers: req.headers };
    const listener = this.listener(port);
    const route = listener && findRoute(listener, facts);
    if (!route) return answer({ code: 404, flags: 'NR' }, '');
    if (route.directStatus) return answer({ code: route.directStatus, flags: '-' }, '');
    if (route.redirect) return answer({ code: route.redirect.code || 301, flags: '-' }, '', { location: redirectLocation(route, facts) });
    const fault = drawFault(route);
    if (fault.abortStatus) return answer({ code: fault.abortStatus, flags: 'FI' }, FAULT_ABORT_BODY);
    const destination = pickDestination(route.destinations);
    const service = destination && this.options.state.servicesByHostname(destination.hostname)[0];
    if (!destination || !service) return answer({ code: 503, flags: 'UH' }, NO_HEALTHY_UPSTREAM);
    const servicePort = destination.port || (service.ports.length === 1 ? service.ports[0]!.servicePort : 0);
    const subset = subsetOf(destination);
    const pick = () => (servicePort ? this.upstreamFor(service, servicePort, subset) : undefined);
    const upstream = pick();
    if (!upstream) return answer({ code: 503, flags: 'UH', service }, NO_HEALTHY_UPSTREAM);
    const headers = forwardableHeaders(req.headers);
    const client = req.socket.remoteAddress ?? '';
    headers['x-forwarded-for'] = headers['x-forwarded-for'] ? `${String(headers['x-forwarded-for'])}, ${client}` : client;
    headers['x-forwarded-proto'] = 'http';
    applyHeaderOperations(headers, route.requestHeaders);
    if (route.rewrite?.authority) headers.host = route.rewrite.authority;
    relayHttp1({
      upstreams: this.upstreams,
      tunnel: upstream.tunnel,
      req,
      res,
      headers,
      path: rewrittenPath(route, facts),
      timeoutMs: route.timeoutMs,
      retry: route.retry,
      nextTunnel: () => pick()?.tunnel,
      responseHeaders: route.responseHeaders,
      delayMs: fault.delayMs,
      onDone: (outcome) => {
        if (outcome.error) this.options.log.debug({ service: service.hostname, err: outcome.error.message }, 'upstream failed');
        this.record({ code: outcome.status, flags: fault.delayMs && outcome.flags === '-' ? 'DI' : outcome.flags, service, upstream }, started, outcome.requestBytes, outcome.responseBytes);
      },
    });
  }

  /** Where a request to the service port goes, as ztunnel would send a connection there; undefined when nowhere. */
  private upstreamFor(service: Service, port: number, subset?: { name: string; workloads: ReadonlySet<string> }): Upstream | undefined {
    const { state } = this.options;
    const address = service.addresses.find((a) => a.network === state.network) ?? service.addresses[0];
    if (!address) return undefined;
    // A subset narrows the endpoints; a service with a waypoint still goes there (its mesh routes decide).
    const resolution = state.resolve(this.options.self(), bytesToIp(address.address), port, subset ? { subset } : {});
    if (isReachable(resolution)) {
      const workload = resolution.upstream.workload;
      return {
        tunnel: tunnelTargetFor(resolution, this.dialer),
        destination: peerFactsOf(workload, spiffeUri(identityOf(workload)), this.options.clusterId),
        mutualTls: resolution.kind !== 'plaintext',
      };
    }
    // The waypoint reports the destination; the ingress knows only that it went through one.
    if (resolution.kind === 'waypoint') return { tunnel: tunnelTargetFor(resolution, this.dialer), destination: {}, mutualTls: true };
    // Unavailable services and passthrough have no endpoint.
    return undefined;
  }
}
