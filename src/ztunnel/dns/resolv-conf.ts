import net from 'node:net';

export interface DnsUpstream {
  host: string;
  port: number;
}

const DNS_PORT = 53;

/**
 * The `nameserver` entries of a resolv.conf, in order, each on port 53 (resolv.conf has no port
 * syntax). IPv6 nameservers are kept (also with a zone, `fe80::1%eth0`): the proxy forwards over
 * udp6/tcp6 to them. Comments (`#`, `;`), other directives, invalid addresses and duplicates are
 * skipped.
 */
export function upstreamsFromResolvConf(text: string): DnsUpstream[] {
  const seen = new Set<string>();
  const out: DnsUpstream[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.replace(/[#;].*$/, '').trim();
    const [keyword, address] = line.split(/\s+/);
    if (keyword !== 'nameserver' || !address) continue;
    const host = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
    if (net.isIP(host.replace(/%.*$/, '')) === 0 || seen.has(host)) continue;
    seen.add(host);
    out.push({ host, port: DNS_PORT });
  }
  return out;
}
