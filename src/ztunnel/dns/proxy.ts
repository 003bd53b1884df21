/**
 * ztunnel's DNS proxy (port 15053): captured pods' DNS queries arrive here (UDP and TCP). Names
 * the mesh knows (for example a global service that only exists in a remote cluster, with a VIP
 * allocated by the control plane) are answered from the mesh; everything else is relayed
 * unchanged to the upstream resolvers.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Registry } from 'prom-client';
import { normalizeIp } from '../../api/ip.js';
import type { Logger } from '../../util/log.js';
import { FrameReader, frame } from './framing.js';
import { buildMeshAnswer, buildServfail, parseQuery, type DnsQuery, type Transport } from './message.js';
import { DnsMetrics } from './metrics.js';
import type { DnsUpstream } from './resolv-conf.js';
import { forwardQuery } from './upstream.js';

export { upstreamsFromResolvConf, type DnsUpstream } from './resolv-conf.js';

export interface DnsProxyOptions {
  /** Looks up a fully qualified name (lower-case, no trailing dot), for a client IP: the IPv4 addresses to answer, or undefined when the mesh does not know the name. */
  resolve: (name: string, clientIp: string) => string[] | undefined;
  /** Upstream resolver(s) for everything else, e.g. from /etc/resolv.conf: [{ host, port }]. */
  upstreams: DnsUpstream[];
  log: Logger;
  /** Default 15053; 0 picks free ports (UDP and TCP may then differ: read them from port()). */
  port?: number;
  /** Default '0.0.0.0'. */
  host?: string;
  /** Per upstream attempt; default 2000. */
  upstreamTimeoutMs?: number;
  /** TTL of mesh answers; default 30. */
  ttlSeconds?: number;
  /** Where to register `ambit_dns_requests_total{result}`; no metrics without it. */
  registry?: Registry;
}

const DEFAULT_PORT = 15053;
const DEFAULT_HOST = '0.0.0.0';
const DEFAULT_UPSTREAM_TIMEOUT_MS = 2000;
const DEFAULT_TTL_SECONDS = 30;
const TCP_IDLE_MS = 30_000;
/** UDP queries being forwarded at once (each holds a socket); more are dropped, clients retry. */
const MAX_UDP_IN_FLIGHT = 1024;

type Outcome = { reply: Buffer } | { drop: string };

export class DnsProxy {
  private readonly opts: DnsProxyOptions;
  private readonly log: Logger;
  private readonly metrics: DnsMetrics;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly conns = new Set<net.Socket>();
  private lifetime = new AbortController();
  private udpInFlight = 0;

  constructor(opts: DnsProxyOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.metrics = new DnsMetrics(opts.registry);
  }

  async start(): Promise<void> {
    if (this.udp || this.tcp) throw new Error('DNS proxy already started');
    const host = this.opts.host ?? DEFAULT_HOST;
    const port = this.opts.port ?? DEFAULT_PORT;
    this.lifetime = new AbortController();
    const udp = await this.bindUdp(host, port);
    try {
      this.tcp = await this.listenTcp(host, port);
    } catch (err) {
      udp.close();
      throw err;
    }
    this.udp = udp;
    this.log.info({ host, ...this.port(), upstreams: this.opts.upstreams }, 'DNS proxy listening');
  }

  async stop(): Promise<void> {
    const { udp, tcp } = this;
    this.udp = undefined;
    this.tcp = undefined;
    this.lifetime.abort();
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    await Promise.all([
      udp ? new Promise<void>((resolve) => udp.close(() => resolve())) : undefined,
      tcp ? new Promise<void>((resolve) => tcp.close(() => resolve())) : undefined,
    ]);
  }

  /** The bound ports once started, else the configured one. */
  port(): { udp: number; tcp: number } {
    const configured = this.opts.port ?? DEFAULT_PORT;
    const tcpAddress = this.tcp?.address();
    return {
      udp: this.udp?.address().port ?? configured,
      tcp: tcpAddress && typeof tcpAddress === 'object' ? tcpAddress.port : configured,
    };
  }

  // ------------------------------------------------------------------------------- listeners

  private bindUdp(host: string, port: number): Promise<dgram.Socket> {
    const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: host, port }, () => {
        sock.off('error', reject);
        sock.on('error', (err) => this.log.warn({ err }, 'DNS proxy udp socket error'));
        sock.on('message', (msg, rinfo) => this.onUdpMessage(sock, msg, rinfo));
        resolve(sock);
      });
    });
  }

  private listenTcp(host: string, port: number): Promise<net.Server> {
    const server = net.createServer((c) => this.onTcpConnection(c));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.warn({ err }, 'DNS proxy tcp server error'));
        resolve(server);
      });
    });
  }

  private onUdpMessage(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const client = normalizeIp(rinfo.address);
    if (this.udpInFlight >= MAX_UDP_IN_FLIGHT) {
      this.log.debug({ client }, 'DNS proxy: too many udp queries in flight; dropped');
      return;
    }
    this.udpInFlight++;
    void this.handle(msg, 'udp', client)
      .then((outcome) => {
        if ('drop' in outcome) {
          this.log.debug({ client, transport: 'udp', reason: outcome.drop }, 'DNS proxy dropped a message');
          return;
        }
        if (this.udp !== sock) return; // stopped meanwhile
        sock.send(outcome.reply, rinfo.port, rinfo.address, (err) => {
          if (err) this.log.debug({ err, client }, 'DNS proxy udp send failed');
        });
      })
      .finally(() => this.udpInFlight--);
  }

  private onTcpConnection(c: net.Socket): void {
    const client = normalizeIp(c.remoteAddress ?? '?');
    this.conns.add(c);
    c.setNoDelay(true);
    c.setTimeout(TCP_IDLE_MS, () => c.destroy());
    c.on('error', (err) => this.log.debug({ err, client }, 'DNS proxy tcp connection error'));
    c.on('close', () => this.conns.delete(c));
    const reader = new FrameReader();
    c.on('data', (chunk: Buffer) => {
      // Queries on one connection are handled concurrently; replies may come back out of order
      // (RFC 7766 6.2.1.1), clients match them by ID.
      for (const msg of reader.push(chunk)) {
        void this.handle(msg, 'tcp', client).then((outcome) => {
          if (c.destroyed) return;
          if ('drop' in outcome) {
            this.log.debug({ client, transport: 'tcp', reason: outcome.drop }, 'DNS proxy closed a connection');
            c.destroy();
            return;
          }
          c.write(frame(outcome.reply));
        });
      }
    });
  }

  // ----------------------------------------------------------------------------------- queries

  /** Decides and builds the reply to one message. Never rejects. */
  private async handle(msg: Buffer, transport: Transport, client: string): Promise<Outcome> {
    let query: DnsQuery;
    try {
      query = parseQuery(msg);
    } catch (err) {
      return { drop: `malformed DNS message: ${(err as Error).message}` };
    }
    try {
      const local = this.answerFromMesh(query, transport, client);
      if (local) {
        this.metrics.record('answered');
        return { reply: local };
      }
      const relayed = await forwardQuery(msg, transport, this.opts.upstreams, {
        timeoutMs: this.opts.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS,
        signal: this.lifetime.signal,
        log: this.log,
      });
      if (relayed) {
        this.metrics.record('forwarded');
        return { reply: relayed };
      }
      this.log.debug({ client, transport, name: query.question?.name }, 'DNS proxy: every upstream failed; SERVFAIL');
      this.metrics.record('failed');
      return { reply: buildServfail(query) };
    } catch (err) {
      this.log.warn({ err, client, transport }, 'DNS proxy failed to handle a query; SERVFAIL');
      this.metrics.record('failed');
      return { reply: buildServfail(query) };
    }
  }

  /** The mesh's reply to a single A/AAAA question for a name it knows; undefined to forward. */
  private answerFromMesh(query: DnsQuery, transport: Transport, client: string): Buffer | undefined {
    const q = query.question;
    if (!q || query.opcode !== 0 || q.class !== 'IN' || (q.type !== 'A' && q.type !== 'AAAA')) return undefined;
    // Unknown EDNS versions are the upstream's to refuse (BADVERS).
    if (query.edns && query.edns.version !== 0) return undefined;
    const name = q.name.toLowerCase().replace(/\.$/, '');
    let addresses: string[] | undefined;
    try {
      addresses = this.opts.resolve(name, client);
    } catch (err) {
      this.log.warn({ err, name, client }, 'DNS proxy: mesh lookup threw; forwarding the query');
      return undefined;
    }
    if (!addresses) return undefined;
    // The mesh is IPv4 here: AAAA of a mesh name is NODATA, not forwarded, so clients use the VIP.
    const ipv4 = q.type === 'A' ? addresses.filter((a) => net.isIPv4(a)) : [];
    const ttl = this.opts.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    return buildMeshAnswer(query, ipv4, ttl, transport);
  }
}
