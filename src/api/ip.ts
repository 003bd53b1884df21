import { isIP } from 'node:net';

/** Address bytes as carried in the workload API (4 bytes for IPv4, 16 for IPv6). */
export function ipToBytes(ip: string): Uint8Array {
  const family = isIP(ip);
  if (family === 4) return Uint8Array.from(ip.split('.').map(Number));
  if (family === 6) {
    const [head = '', tail = ''] = ip.split('::');
    const parse = (part: string) => (part ? part.split(':') : []).flatMap((group) => (group.includes('.') ? [...ipv4Groups(group)] : [group]));
    const headGroups = parse(head);
    const tailGroups = ip.includes('::') ? parse(tail) : [];
    const zeros = ip.includes('::') ? 8 - headGroups.length - tailGroups.length : 0;
    const groups = [...headGroups, ...Array<string>(zeros).fill('0'), ...tailGroups];
    const bytes = new Uint8Array(16);
    groups.forEach((group, i) => {
      const value = parseInt(group, 16);
      bytes[i * 2] = value >> 8;
      bytes[i * 2 + 1] = value & 0xff;
    });
    return bytes;
  }
  throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
}

function ipv4Groups(dotted: string): string[] {
  const b = dotted.split('.').map(Number);
  return [((b[0]! << 8) | b[1]!).toString(16), ((b[2]! << 8) | b[3]!).toString(16)];
}

export function bytesToIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
    return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
  }
  throw new Error(`address must be 4 or 16 bytes, got ${bytes.length}`);
}

/** Strips the IPv4-mapped IPv6 prefix Node reports on dual-stack sockets. */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}
