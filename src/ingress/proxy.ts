/**
 * The ingress data path: HTTP/1.1 servers on the listener ports of its RouteConfig; each request is
 * routed, its destination service resolved like ztunnel resolves (endpoint, waypoint, plaintext), and
 * sent over HBONE with the ingress's own identity through a keep-alive pool of tunnels.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import { bytesToIp } from '../api/ip.js';
import type { RouteConfig, Listener } from '../gen/ambit/route/route_pb.js';
import { Protocol } from '../gen/ambit/route/route_pb.js';
import type { Service, Workload } from '../gen/istio/workload/workload_pb.js';
import { formatAuthority, type HbonePool } from '../hbone/index.js';
import { forwardableHeaders, HttpUpstreams, type TunnelTarget } from '../l7/upstream.js';
import type { Logger } from '../util/log.js';
import type { Resolution } from '../ztunnel/state/types.js';
import type { ZtunnelState } from '../ztunnel/state/store.js';
import { findRoute, pickDestination } from './routes.js';

/** Bounds on what a client can make the ingress hold. */
export const MAX_HEADER_BYTES = 16 * 1024;
const HEADERS_TIMEOUT_MS = 20_000;
const REQUEST_TIMEOUT_MS = 300_000;

export interface IngressProxyOptions {
  state: ZtunnelState;
  pool: HbonePool;
  /** The ingress's own SPIFFE identity, presented on every tunnel. */
  identity: string;
  /** The ingress's own workload, as the mesh knows it (or a stand-in until it does). */
  self: () => Workload;
  registry: Registry;
  log: Logger;
  /** Ports always served (404 until routes arrive). */
  defaultPorts: number[];
}

type Outcome = { code: number; flags: string; service: string };

export class IngressProxy {
  private config: RouteConfig | undefined;
  private readonly servers = new Map<number, Server>();
  private readonly upstreams = new HttpUpstreams();
  private readonly requests: Counter;
  private readonly unsupported = new Set<number>();

  constructor(private readonly options: IngressProxyOptions) {
    this.requests = new Counter({
      name: 'istio_requests_total',
      help: 'Requests the ingress forwarded, by destination and response code',
      labelNames: ['reporter', 'source_workload', 'source_workload_namespace', 'source_principal', 'destination_service', 'response_code', 'response_flags', 'request_protocol', 'connection_security_policy'],
      registers: [options.registry],
    });
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

  private reply(res: ServerResponse, code: number, body: string): void {
    if (res.headersSent) return void res.destroy();
    res.writeHead(code, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  private record(outcome: Outcome): void {
    const self = this.options.self();
    this.requests.inc({
      reporter: 'source',
      source_workload: self.workloadName || self.name || 'unknown',
      source_workload_namespace: self.namespace || 'unknown',
      source_principal: this.options.identity,
      destination_service: outcome.service || 'unknown',
      response_code: String(outcome.code),
      response_flags: outcome.flags,
      request_protocol: 'http',
      connection_security_policy: outcome.flags === '-' ? 'mutual_tls' : 'unknown',
    });
  }

  private handle(port: number, req: IncomingMessage, res: ServerResponse): void {
    const finish = (outcome: Outcome, body?: string) => {
      if (body !== undefined) this.reply(res, outcome.code, body);
      this.record(outcome);
    };
    const listener = this.listener(port);
    const route = listener && findRoute(listener, { method: req.method ?? 'GET', url: req.url ?? '/', host: req.headers.host ?? '', headers: req.headers });
    if (!route) return finish({ code: 404, flags: 'NR', service: '' }, '');
    if (route.directStatus) return finish({ code: route.directStatus, flags: '-', service: '' }, '');
    const destination = pickDestination(route.destinations);
    const service = destination && this.options.state.services().find((s) => s.hostname === destination.hostname);
    if (!destination || !service) return finish({ code: 503, flags: 'UH', service: destination?.hostname ?? '' }, 'no healthy upstream');
    const servicePort = destination.port || (service.ports.length === 1 ? service.ports[0]!.servicePort : 0);
    const target = servicePort ? this.target(service, servicePort) : undefined;
    if (!target) return finish({ code: 503, flags: 'UH', service: service.hostname }, 'no healthy upstream');
    const headers = forwardableHeaders(req.headers);
    const client = req.socket.remoteAddress ?? '';
    headers['x-forwarded-for'] = headers['x-forwarded-for'] ? `${String(headers['x-forwarded-for'])}, ${client}` : client;
    headers['x-forwarded-proto'] = 'http';
    const upstream = this.upstreams.http1(target, { method: req.method ?? 'GET', path: req.url ?? '/', headers });
    let done = false;
    upstream.on('response', (response) => {
      res.writeHead(response.statusCode ?? 502, forwardableHeaders(response.headers));
      response.pipe(res);
      response.on('end', () => {
        if (!done) finish({ code: response.statusCode ?? 502, flags: '-', service: service.hostname });
        done = true;
      });
      response.on('error', () => res.destroy());
    });
    upstream.on('error', (err) => {
      if (done) return;
      done = true;
      this.options.log.debug({ service: service.hostname, err: err.message }, 'upstream failed');
      finish({ code: 503, flags: res.headersSent ? 'UC' : 'UF', service: service.hostname }, 'upstream connect error or disconnect/reset before headers');
    });
    req.on('aborted', () => upstream.destroy());
    req.pipe(upstream);
  }

  /** Where a request to the service port goes, as ztunnel would send a connection there; undefined when nowhere. */
  private target(service: Service, port: number): TunnelTarget | undefined {
    const { state } = this.options;
    const address = service.addresses.find((a) => a.network === state.network) ?? service.addresses[0];
    if (!address) return undefined;
    const resolution = state.resolve(this.options.self(), bytesToIp(address.address), port);
    return this.tunnelFor(resolution);
  }

  private tunnelFor(resolution: Resolution): TunnelTarget | undefined {
    const { pool, identity } = this.options;
    switch (resolution.kind) {
      case 'hbone': {
        const { upstream } = resolution;
        const authority = formatAuthority(upstream.address, upstream.port);
        return { key: `hbone|${upstream.address}|${authority}`, open: () => pool.connect({ sourceIdentity: identity, expectedIdentities: upstream.expectedIdentities, destination: upstream.address, authority, headers: {} }) as Promise<Duplex> };
      }
      case 'waypoint': {
        const { upstream, authority } = resolution;
        return {
          key: `waypoint|${upstream.address}:${upstream.port}|${authority}`,
          open: () => pool.connect({ sourceIdentity: identity, expectedIdentities: upstream.expectedIdentities, destination: upstream.address, port: upstream.port, authority, headers: {} }) as Promise<Duplex>,
        };
      }
      case 'plaintext': {
        const { upstream } = resolution;
        return {
          key: `tcp|${formatAuthority(upstream.address, upstream.port)}`,
          open: () =>
            new Promise<Duplex>((resolve, reject) => {
              const socket = netConnect({ host: upstream.address, port: upstream.port });
              socket.once('connect', () => resolve(socket));
              socket.once('error', reject);
            }),
        };
      }
      default:
        // Remote networks (double HBONE) are not reached from the ingress yet; unavailable and passthrough have no endpoint.
        return undefined;
    }
  }
}
