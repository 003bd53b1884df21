/**
 * A small authoritative DNS server for the cluster domain, over UDP and TCP on one address/port,
 * answering from a ClusterDnsRecords. Malformed input is logged at debug and dropped (UDP) or
 * ends the connection (TCP); nothing a client sends can throw out of a handler.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { Answer, OptAnswer } from 'dns-packet';
import type { Logger } from '../../util/log.js';
import type { ClusterDnsRecords, DnsAnswer } from './dns-records.js';
import { EDNS_DO, FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RA, FLAG_RD, FLAG_TC } from '../../util/dns-wire.js';

export interface ClusterDnsServerOptions {
  records: ClusterDnsRecords;
  address: string;
  /** 0 picks a free port (the same one for UDP and TCP); read it back from `port` after start(). */
  port: number;
  log: Logger;
}

const HEADER_LEN = 12;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** Extended RCODE BADVERS (16): upper 8 bits go into the OPT record. */
const EXT_RCODE_BADVERS_HIGH = 1;

const UDP_DEFAULT_MAX = 512;
const UDP_EDNS_CAP = 4096;
/** The payload size we advertise in our own OPT record. */
const ADVERTISED_UDP_SIZE = 1232;
const TCP_IDLE_MS = 30_000;
const PORT_0_ATTEMPTS = 20;

type Transport = 'udp' | 'tcp';

export class ClusterDnsServer {
  private readonly opts: ClusterDnsServerOptions;
  private readonly log: Logger;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly conns = new Set<net.Socket>();
  private boundPort: number | undefined;

  constructor(opts: ClusterDnsServerOptions) {
    this.opts = opts;
    this.log = opts.log;
  }

  /** The bound port once started (the real one when 0 was asked for), else the configured one. */
  get port(): number {
    return this.boundPort ?? this.opts.port;
  }

  async start(): Promise<void> {
    if (this.udp || this.tcp) throw new Error('cluster DNS server already started');
    const attempts = this.opts.port === 0 ? PORT_0_ATTEMPTS : 1;
    let lastErr: unknown;
    for (let i = 0; i < attempts; i++) {
      let udp: dgram.Socket | undefined;
      try {
        udp = await this.bindUdp(this.opts.port);
        const port = udp.address().port;
        const tcp = await this.listenTcp(port);
        this.udp = udp;
        this.tcp = tcp;
        this.boundPort = port;
        this.log.info({ address: this.opts.address, port }, 'cluster DNS listening (udp+tcp)');
        return;
      } catch (err) {
        lastErr = err;
        if (udp) await closeUdp(udp);
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
      }
    }
    throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
  }

  async stop(): Promise<void> {
    const { udp, tcp } = this;
    this.udp = undefined;
    this.tcp = undefined;
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    await Promise.all([
      udp ? closeUdp(udp) : Promise.resolve(),
      tcp ? new Promise<void>((resolve) => tcp.close(() => resolve())) : Promise.resolve(),
    ]);
    this.boundPort = undefined;
  }

  // -------------------------------------------------------------------------------- transports

  private bindUdp(port: number): Promise<dgram.Socket> {
    const type = net.isIPv6(this.opts.address) ? 'udp6' : 'udp4';
    const sock = dgram.createSocket({ type });
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      sock.once('error', onError);
      sock.bind({ address: this.opts.address, port, exclusive: true }, () => {
        sock.off('error', onError);
        sock.on('error', (err) => this.log.warn({ err }, 'cluster DNS udp socket error'));
        sock.on('message', (msg, rinfo) => this.onUdp(sock, msg, rinfo));
        resolve(sock);
      });
    });
  }

  private listenTcp(port: number): Promise<net.Server> {
    const server = net.createServer((c) => this.onTcpConnection(c));
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        server.close();
        reject(err);
      };
      server.once('error', onError);
      server.listen({ host: this.opts.address, port, exclusive: true }, () => {
        server.off('error', onError);
        server.on('error', (err) => this.log.warn({ err }, 'cluster DNS tcp server error'));
        resolve(server);
      });
    });
  }

  private onUdp(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    try {
      const reply = this.handle(msg, 'udp', rinfo.address);
      if (!reply) return;
      sock.send(reply, rinfo.port, rinfo.address, (err) => {
        if (err) this.log.debug({ err, remote: rinfo.address }, 'cluster DNS udp send failed');
      });
    } catch (err) {
      this.log.debug({ err, remote: rinfo.address }, 'cluster DNS udp handler error');
    }
  }

  private onTcpConnection(c: net.Socket): void {
    const remote = c.remoteAddress ?? '?';
    this.conns.add(c);
    c.setNoDelay(true);
    c.setTimeout(TCP_IDLE_MS, () => c.destroy());
    c.on('error', (err) => this.log.debug({ err, remote }, 'cluster DNS tcp connection error'));
    c.on('close', () => this.conns.delete(c));
    let buf: Buffer = Buffer.alloc(0);
    c.on('data', (chunk: Buffer) => {
      try {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && !c.destroyed) {
          const len = buf.readUInt16BE(0);
          if (len < HEADER_LEN) {
            this.log.debug({ remote, len }, 'cluster DNS tcp frame too short; closing');
            c.destroy();
            return;
          }
          if (buf.length < 2 + len) break;
          const msg = buf.subarray(2, 2 + len);
          buf = buf.subarray(2 + len);
          const reply = this.handle(msg, 'tcp', remote);
          if (!reply) {
            c.destroy();
            return;
          }
          const prefix = Buffer.alloc(2);
          prefix.writeUInt16BE(reply.length);
          c.write(Buffer.concat([prefix, reply]));
        }
        if (buf.length === 0) buf = Buffer.alloc(0);
        else if (buf.byteOffset !== 0 && buf.length < 4096) buf = Buffer.from(buf); // don't pin big chunks
      } catch (err) {
        this.log.debug({ err, remote }, 'cluster DNS tcp handler error; closing');
        c.destroy();
      }
    });
  }

  // ---------------------------------------------------------------------------------- messages

  /** Builds the reply to one DNS message, or undefined to drop it (and close, on TCP). */
  private handle(msg: Buffer, transport: Transport, remote: string): Buffer | undefined {
    if (msg.length < HEADER_LEN) {
      this.log.debug({ remote, transport, len: msg.length }, 'cluster DNS message shorter than a header; dropped');
      return undefined;
    }
    const id = msg.readUInt16BE(0);
    const flags = msg.readUInt16BE(2);
    if (flags & FLAG_QR) {
      this.log.debug({ remote, transport }, 'cluster DNS got a response, not a query; dropped');
      return undefined;
    }
    const opcode = (flags >> 11) & 0xf;
    const qdcount = msg.readUInt16BE(4);
    const question = qdcount >= 1 ? rawQuestion(msg) : undefined;
    const replyFlags = FLAG_QR | FLAG_AA | FLAG_RA | (opcode << 11) | (flags & (FLAG_RD | FLAG_CD));

    // Other opcodes (NOTIFY, UPDATE, ...) share the message format, so anything that does not
    // decode is garbage whatever its opcode says.
    let decoded: ReturnType<typeof dnsPacket.decode>;
    try {
      decoded = dnsPacket.decode(msg);
    } catch (err) {
      this.log.debug({ err: (err as Error).message, remote, transport }, 'malformed DNS message; dropped');
      return undefined;
    }
    if (opcode !== 0) {
      return this.encode({ id, flags: replyFlags, rcode: RCODE.NOTIMP, question, answers: [] });
    }
    if (!question) {
      if (qdcount !== 0) {
        this.log.debug({ remote, transport }, 'DNS query with an unsupported question encoding; dropped');
        return undefined;
      }
      return this.encode({ id, flags: replyFlags, rcode: RCODE.FORMERR, question, answers: [] });
    }

    const opt = (decoded.additionals ?? []).find((a): a is OptAnswer => a.type === 'OPT');
    const replyOpt: OptAnswer | undefined = opt
      ? {
          name: '.',
          type: 'OPT',
          udpPayloadSize: ADVERTISED_UDP_SIZE,
          extendedRcode: 0,
          ednsVersion: 0,
          flags: opt.flags & EDNS_DO,
          flag_do: opt.flag_do,
          options: [],
        }
      : undefined;
    const maxSize =
      transport === 'tcp'
        ? 0xffff
        : opt
          ? Math.min(Math.max(opt.udpPayloadSize, UDP_DEFAULT_MAX), UDP_EDNS_CAP)
          : UDP_DEFAULT_MAX;
    if (opt && replyOpt && opt.ednsVersion !== 0) {
      replyOpt.extendedRcode = EXT_RCODE_BADVERS_HIGH;
      return this.encode({ id, flags: replyFlags, rcode: 0, question, answers: [], opt: replyOpt });
    }
    if (qdcount !== 1) {
      return this.encode({ id, flags: replyFlags, rcode: RCODE.FORMERR, question, answers: [], opt: replyOpt });
    }

    const q = decoded.questions?.[0];
    if (!q) return undefined;
    const klass = q.class ?? 'IN';
    if ((klass !== 'IN' && klass !== 'ANY') || q.type === 'AXFR' || q.type === 'IXFR') {
      return this.encode({ id, flags: replyFlags, rcode: RCODE.REFUSED, question, answers: [], opt: replyOpt });
    }

    const res = this.opts.records.lookup(q.name, q.type);
    const rcode = RCODE[res.rcode];
    const full = { id, flags: replyFlags, rcode, question, opt: replyOpt };
    let reply = this.encode({ ...full, answers: res.answers, authorities: res.authorities, additionals: res.additionals });
    if (reply.length <= maxSize) return reply;
    // Additional data is optional: drop it before truncating the answer (RFC 2181 9).
    reply = this.encode({ ...full, answers: res.answers, authorities: res.authorities });
    if (reply.length <= maxSize) return reply;
    reply = this.encode({ ...full, answers: res.answers });
    if (reply.length <= maxSize) return reply;
    return this.encode({ ...full, flags: replyFlags | FLAG_TC, answers: [] });
  }

  private encode(r: {
    id: number;
    flags: number;
    rcode: number;
    question: Buffer | undefined;
    answers: DnsAnswer[];
    authorities?: DnsAnswer[];
    additionals?: DnsAnswer[];
    opt?: OptAnswer | undefined;
  }): Buffer {
    const additionals: Answer[] = [...(r.additionals ?? [])];
    if (r.opt) additionals.push(r.opt);
    const body = dnsPacket.encode({
      id: r.id,
      type: 'response',
      flags: (r.flags & ~0xf & 0x7fff) | (r.rcode & 0xf),
      questions: [],
      answers: r.answers,
      authorities: r.authorities ?? [],
      additionals,
    });
    if (!r.question) return body;
    // Echo the question exactly as received (byte for byte, case included).
    const out = Buffer.concat([body.subarray(0, HEADER_LEN), r.question, body.subarray(HEADER_LEN)]);
    out.writeUInt16BE(1, 4);
    return out;
  }
}

/**
 * The bytes of the first question (name, type, class), or undefined when it does not parse or
 * uses a compression pointer (never legitimate in the first question).
 */
function rawQuestion(msg: Buffer): Buffer | undefined {
  let off = HEADER_LEN;
  for (;;) {
    if (off >= msg.length) return undefined;
    const len = msg[off] ?? 0;
    if (len === 0) {
      off += 1;
      break;
    }
    if ((len & 0xc0) !== 0) return undefined;
    off += 1 + len;
  }
  if (off - HEADER_LEN > 255 || off + 4 > msg.length) return undefined;
  return msg.subarray(HEADER_LEN, off + 4);
}

function closeUdp(sock: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      sock.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}
