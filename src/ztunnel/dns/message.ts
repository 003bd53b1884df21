/**
 * DNS message handling for the ztunnel DNS proxy: parsing a client query into what the proxy
 * decides on, and building the few replies it makes itself (mesh answers, SERVFAIL). Everything
 * else is relayed as raw bytes and never re-encoded here.
 */
import dnsPacket from 'dns-packet';
import type { Answer, OptAnswer, RecordClass, RecordType } from 'dns-packet';
import { EDNS_DO, FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RA, FLAG_RD, FLAG_TC } from '../../util/dns-wire.js';

export const HEADER_LEN = 12;
export type Transport = 'udp' | 'tcp';


export const RCODE = { NOERROR: 0, SERVFAIL: 2 } as const;

/** Classic DNS-over-UDP limit without EDNS (RFC 1035 4.2.1). */
const UDP_DEFAULT_MAX = 512;
/** Upper bound on a client's advertised EDNS buffer that we honour. */
const UDP_EDNS_CAP = 4096;
/** The payload size we advertise in our own OPT record (the DNS flag day 2020 value). */
const ADVERTISED_UDP_SIZE = 1232;

export interface DnsQuery {
  id: number;
  flags: number;
  opcode: number;
  /** The question section exactly as the client sent it (case included). */
  questionSection: Buffer;
  questionCount: number;
  /** The only question, when there is exactly one. */
  question?: { name: string; type: RecordType; class: RecordClass };
  /** The client's OPT record, when it sent one. */
  edns?: { version: number; udpPayloadSize: number; doBit: boolean };
}

/** Parses a client query; throws an Error naming the problem when the bytes are not a DNS query. */
export function parseQuery(msg: Buffer): DnsQuery {
  if (msg.length < HEADER_LEN) throw new Error(`DNS message of ${msg.length} bytes is shorter than a header`);
  const flags = msg.readUInt16BE(2);
  if (flags & FLAG_QR) throw new Error('DNS message is a response, not a query');
  const decoded = dnsPacket.decode(msg); // throws on truncated or inconsistent sections
  const questions = decoded.questions ?? [];
  const questionCount = msg.readUInt16BE(4);
  const questionSection = msg.subarray(HEADER_LEN, HEADER_LEN + questionSectionLength(msg, questionCount));
  const opt = (decoded.additionals ?? []).find((a): a is OptAnswer => a.type === 'OPT');
  const only = questions.length === 1 ? questions[0] : undefined;
  return {
    id: msg.readUInt16BE(0),
    flags,
    opcode: (flags >> 11) & 0xf,
    questionSection,
    questionCount,
    ...(only ? { question: { name: only.name, type: only.type, class: only.class ?? 'IN' } } : {}),
    ...(opt ? { edns: { version: opt.ednsVersion, udpPayloadSize: opt.udpPayloadSize, doBit: (opt.flags & EDNS_DO) !== 0 } } : {}),
  };
}

/** Largest reply the client accepts over this transport. */
export function maxReplySize(query: DnsQuery, transport: Transport): number {
  if (transport === 'tcp') return 0xffff;
  if (!query.edns) return UDP_DEFAULT_MAX;
  return Math.min(Math.max(query.edns.udpPayloadSize, UDP_DEFAULT_MAX), UDP_EDNS_CAP);
}

/**
 * An authoritative NOERROR reply with one A record per address (none: NODATA). Sets TC with no
 * answers when it does not fit the client's size limit.
 */
export function buildMeshAnswer(query: DnsQuery, addresses: string[], ttlSeconds: number, transport: Transport): Buffer {
  const name = query.question?.name ?? '';
  const answers: Answer[] = addresses.map((data) => ({ name, type: 'A', class: 'IN', ttl: ttlSeconds, data }));
  const flags = replyFlags(query) | FLAG_AA;
  const reply = buildReply(query, flags, RCODE.NOERROR, answers);
  if (reply.length <= maxReplySize(query, transport)) return reply;
  return buildReply(query, flags | FLAG_TC, RCODE.NOERROR, []);
}

/** SERVFAIL for a query no upstream answered. */
export function buildServfail(query: DnsQuery): Buffer {
  return buildReply(query, replyFlags(query), RCODE.SERVFAIL, []);
}

function replyFlags(query: DnsQuery): number {
  return FLAG_QR | (query.opcode << 11) | FLAG_RA | (query.flags & (FLAG_RD | FLAG_CD));
}

function buildReply(query: DnsQuery, flags: number, rcode: number, answers: Answer[]): Buffer {
  const additionals: Answer[] = [];
  if (query.edns) {
    additionals.push({
      name: '.',
      type: 'OPT',
      udpPayloadSize: ADVERTISED_UDP_SIZE,
      extendedRcode: 0,
      ednsVersion: 0,
      flags: query.edns.doBit ? EDNS_DO : 0,
      flag_do: query.edns.doBit,
      options: [],
    });
  }
  const body = dnsPacket.encode({
    id: query.id,
    type: 'response',
    flags: (flags & ~0xf) | (rcode & 0xf),
    questions: [],
    answers,
    additionals,
  });
  // Echo the question section byte for byte (resolvers using 0x20 case randomisation check it).
  const out = Buffer.concat([body.subarray(0, HEADER_LEN), query.questionSection, body.subarray(HEADER_LEN)]);
  out.writeUInt16BE(query.questionCount, 4);
  return out;
}

/** Byte length of the first `count` questions of a message that dns-packet already decoded. */
function questionSectionLength(msg: Buffer, count: number): number {
  let off = HEADER_LEN;
  for (let i = 0; i < count; i++) {
    for (;;) {
      const len = msg[off];
      if (len === undefined) throw new Error('DNS question runs past the end of the message');
      if ((len & 0xc0) === 0xc0) {
        off += 2; // compression pointer ends the name
        break;
      }
      off += 1 + len;
      if (len === 0) break;
    }
    off += 4; // type and class
  }
  if (off > msg.length) throw new Error('DNS question runs past the end of the message');
  return off - HEADER_LEN;
}
