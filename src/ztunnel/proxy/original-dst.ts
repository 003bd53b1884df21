import { isIP, type Socket } from 'node:net';

import koffi from 'koffi';

import { normalizeIp } from '../../api/ip.js';

/** Where a captured connection was going before nftables REDIRECTed it to us. */
export interface SocketAddress {
  ip: string;
  port: number;
}

const SOL_IP = 0;
const SOL_IPV6 = 41;
/** SO_ORIGINAL_DST and IP6T_SO_ORIGINAL_DST share the same option number. */
const SO_ORIGINAL_DST = 80;
const AF_INET = 2;
const AF_INET6 = 10;
const SOCKADDR_IN_SIZE = 16;
const SOCKADDR_IN6_SIZE = 28;

type GetSockOpt = (fd: number, level: number, name: number, value: Buffer, length: number[]) => number;

let getsockopt: GetSockOpt | null | undefined;

function loadGetsockopt(): GetSockOpt | null {
  if (getsockopt === undefined) {
    try {
      const libc = koffi.load('libc.so.6');
      getsockopt = libc.func('int getsockopt(int sockfd, int level, int optname, _Out_ uint8_t *optval, _Inout_ uint32_t *optlen)') as GetSockOpt;
    } catch {
      getsockopt = null;
    }
  }
  return getsockopt;
}

function socketFd(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

function parseSockaddr(buffer: Buffer, length: number): SocketAddress | undefined {
  const family = buffer.readUInt16LE(0);
  const port = buffer.readUInt16BE(2);
  if (family === AF_INET && length >= SOCKADDR_IN_SIZE) {
    return { ip: `${buffer[4]}.${buffer[5]}.${buffer[6]}.${buffer[7]}`, port };
  }
  if (family === AF_INET6 && length >= SOCKADDR_IN6_SIZE) {
    const groups: string[] = [];
    for (let offset = 8; offset < 24; offset += 2) groups.push(buffer.readUInt16BE(offset).toString(16));
    // Let the URL parser produce the canonical compressed form.
    const ip = new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
    return { ip: normalizeIp(ip), port };
  }
  return undefined;
}

function query(fd: number, level: number, size: number): SocketAddress | undefined {
  const call = loadGetsockopt();
  if (!call) return undefined;
  const buffer = Buffer.alloc(SOCKADDR_IN6_SIZE);
  const length = [size];
  if (call(fd, level, SO_ORIGINAL_DST, buffer, length) !== 0) return undefined;
  return parseSockaddr(buffer, length[0] ?? 0);
}

/**
 * Reads SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6) of an accepted socket.
 * Returns undefined when the connection was not NATed by conntrack (ENOENT) or on any error.
 */
export function getOriginalDestination(socket: Socket): SocketAddress | undefined {
  try {
    const fd = socketFd(socket);
    if (fd === undefined) return undefined;
    const local = socket.localAddress;
    const ipv6 = local !== undefined && isIP(local) === 6 && !local.startsWith('::ffff:');
    return ipv6 ? query(fd, SOL_IPV6, SOCKADDR_IN6_SIZE) : query(fd, SOL_IP, SOCKADDR_IN_SIZE);
  } catch {
    return undefined;
  }
}
