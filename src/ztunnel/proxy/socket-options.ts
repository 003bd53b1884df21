import type { Server } from 'node:net';
import koffi from 'koffi';

const SOL_IP = 0;
const IP_TRANSPARENT = 19;

type SetSockOpt = (fd: number, level: number, name: number, value: Buffer, length: number) => number;
let setsockopt: SetSockOpt | null | undefined;

function loadSetsockopt(): SetSockOpt | null {
  if (setsockopt === undefined) {
    try {
      setsockopt = koffi.load('libc.so.6').func('int setsockopt(int sockfd, int level, int optname, const uint8_t *optval, uint32_t optlen)') as SetSockOpt;
    } catch {
      setsockopt = null;
    }
  }
  return setsockopt;
}

/**
 * Marks a listening IPv4 socket IP_TRANSPARENT, so nftables `tproxy` can hand it connections
 * addressed to other hosts (the pod IPs it serves). Needs CAP_NET_ADMIN. Returns an error text
 * instead of throwing.
 */
export function makeTransparent(server: Server): string | undefined {
  const fd = (server as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return 'listener has no file descriptor';
  const call = loadSetsockopt();
  if (!call) return 'libc setsockopt is not available';
  const one = Buffer.alloc(4);
  one.writeInt32LE(1);
  return call(fd, SOL_IP, IP_TRANSPARENT, one, 4) === 0 ? undefined : 'setsockopt(IP_TRANSPARENT) failed (needs CAP_NET_ADMIN)';
}
