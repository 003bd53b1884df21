import { isIP } from 'node:net';
import { bytesToIp, ipToBytes, normalizeIp } from '../../api/ip.js';

/** Index key of an address on a network: `<network>/<ip>`. */
export function networkAddressKey(network: string, ip: string): string {
  return `${network}/${ip}`;
}

/**
 * The one textual form used for index keys, so that an IP from a socket and one decoded from
 * xDS bytes compare equal (IPv6 has several spellings; IPv4-mapped IPv6 is reduced to IPv4).
 * Undefined when the text is not an IP address.
 */
export function canonicalIp(ip: string): string | undefined {
  const plain = normalizeIp(ip);
  const family = isIP(plain);
  if (family === 4) return plain;
  if (family === 6) return bytesToIp(ipToBytes(plain));
  return undefined;
}

export function ipFamily(ip: string): 4 | 6 {
  return ip.includes(':') ? 6 : 4;
}

/** Decodes validated xDS address bytes. */
export function decodeAddresses(addresses: Uint8Array[]): string[] {
  return addresses.map((bytes) => bytesToIp(bytes));
}
