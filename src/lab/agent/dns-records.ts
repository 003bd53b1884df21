/**
 * Cluster DNS records, the way CoreDNS's kubernetes plugin serves them, following the
 * Kubernetes DNS-based service discovery specification
 * (https://github.com/kubernetes/dns/blob/master/docs/specification.md).
 *
 * Services and Endpoints are fed in per watch event; each event rebuilds only the records of
 * the one service it concerns and swaps them into a name index, so a query is a couple of map
 * look-ups and never a scan over all objects.
 */
import { isIP, isIPv4, isIPv6 } from 'node:net';
import type { V1Endpoints, V1Service } from '@kubernetes/client-node';
import type { SoaAnswer, SrvAnswer, StringAnswer } from 'dns-packet';

/** One resource record, in the shape dns-packet encodes. */
export type DnsAnswer = StringAnswer | SrvAnswer | SoaAnswer;

export type DnsRcode = 'NOERROR' | 'NXDOMAIN';

/** Query types with special handling; any other type name (dns-packet spelling) is accepted too. */
export type DnsQueryType = 'A' | 'AAAA' | 'CNAME' | 'SRV' | 'PTR' | 'SOA' | 'ANY' | (string & Record<never, never>);

export interface DnsLookupResult {
  rcode: DnsRcode;
  /** Answer section. */
  answers: DnsAnswer[];
  /** Additional section: the A/AAAA records of SRV targets. */
  additionals: DnsAnswer[];
  /** Authority section: the zone's SOA on NXDOMAIN / NODATA for names in a zone we serve. */
  authorities: DnsAnswer[];
}

/** TTL of every record we serve, in seconds. */
export const CLUSTER_DNS_TTL = 5;

const REVERSE_V4 = 'in-addr.arpa';
const REVERSE_V6 = 'ip6.arpa';
const MAX_CNAME_CHAIN = 8;

interface PortInfo {
  name: string;
  port: number;
  protocol: string;
}

interface ServiceInfo {
  namespace: string;
  name: string;
  kind: 'ClusterIP' | 'Headless' | 'ExternalName';
  clusterIPs: string[];
  externalName: string;
  ports: PortInfo[];
  publishNotReadyAddresses: boolean;
}

interface AddressInfo {
  ip: string;
  hostname: string;
}

interface SubsetInfo {
  addresses: AddressInfo[];
  notReadyAddresses: AddressInfo[];
  ports: PortInfo[];
}

interface EndpointsInfo {
  subsets: SubsetInfo[];
}

/** What one service contributes to the index: records grouped by owner name, plus names that exist. */
interface Contribution {
  records: Map<string, DnsAnswer[]>;
  names: Set<string>;
}

export class ClusterDnsRecords {
  readonly domain: string;
  private readonly services = new Map<string, ServiceInfo>();
  private readonly endpoints = new Map<string, EndpointsInfo>();
  private readonly contributions = new Map<string, Contribution>();
  /** owner name -> contributing service key -> records at that name. */
  private readonly byName = new Map<string, Map<string, DnsAnswer[]>>();
  /** Reference counts of names that exist (record owners, services, and their ancestors). */
  private readonly nameRefs = new Map<string, number>();
  private serial = Math.floor(Date.now() / 1000) >>> 0;

  constructor(domain = 'cluster.local') {
    const d = normalizeName(domain);
    if (d === '') throw new Error('cluster DNS domain must not be empty');
    this.domain = d;
  }

  upsertService(svc: V1Service): void {
    const namespace = svc.metadata?.namespace ?? 'default';
    const name = svc.metadata?.name;
    if (!name) return;
    const spec = svc.spec ?? {};
    const type = spec.type ?? 'ClusterIP';
    let kind: ServiceInfo['kind'];
    if (type === 'ExternalName') kind = 'ExternalName';
    else if (spec.clusterIP === 'None') kind = 'Headless';
    else kind = 'ClusterIP';
    const ips = (spec.clusterIPs && spec.clusterIPs.length > 0 ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [])
      .filter((ip) => isIP(ip) !== 0);
    const info: ServiceInfo = {
      namespace: namespace.toLowerCase(),
      name: name.toLowerCase(),
      kind,
      clusterIPs: kind === 'ClusterIP' ? unique(ips) : [],
      externalName: kind === 'ExternalName' ? stripDot(spec.externalName ?? '') : '',
      ports: (spec.ports ?? []).map((p) => portInfo(p.name, p.port, p.protocol)).filter(isDefined),
      publishNotReadyAddresses: spec.publishNotReadyAddresses === true,
    };
    const key = objKey(info.namespace, info.name);
    this.services.set(key, info);
    this.rebuild(key);
  }

  deleteService(namespace: string, name: string): void {
    const key = objKey(namespace.toLowerCase(), name.toLowerCase());
    if (this.services.delete(key)) this.rebuild(key);
  }

  upsertEndpoints(ep: V1Endpoints): void {
    const namespace = ep.metadata?.namespace ?? 'default';
    const name = ep.metadata?.name;
    if (!name) return;
    const addr = (a: { ip: string; hostname?: string }): AddressInfo | undefined => {
      if (!a.ip || isIP(a.ip) === 0) return undefined;
      const hostname = (a.hostname ?? '').toLowerCase();
      return { ip: a.ip, hostname: isLabel(hostname) ? hostname : '' };
    };
    const info: EndpointsInfo = {
      subsets: (ep.subsets ?? []).map((s) => ({
        addresses: (s.addresses ?? []).map(addr).filter(isDefined),
        notReadyAddresses: (s.notReadyAddresses ?? []).map(addr).filter(isDefined),
        ports: (s.ports ?? []).map((p) => portInfo(p.name, p.port, p.protocol)).filter(isDefined),
      })),
    };
    const key = objKey(namespace.toLowerCase(), name.toLowerCase());
    this.endpoints.set(key, info);
    this.rebuild(key);
  }

  deleteEndpoints(namespace: string, name: string): void {
    const key = objKey(namespace.toLowerCase(), name.toLowerCase());
    if (this.endpoints.delete(key)) this.rebuild(key);
  }

  /**
   * Answers one question. `qname` is case-insensitive and may end in a dot; `qtype` is a
   * dns-packet type name ('A', 'AAAA', 'SRV', 'PTR', 'CNAME', 'SOA', 'ANY', ...).
   */
  lookup(qname: string, qtype: DnsQueryType): DnsLookupResult {
    const display = stripDot(qname);
    let name = asciiLower(display);
    const type = qtype.toUpperCase();
    const result: DnsLookupResult = { rcode: 'NOERROR', answers: [], additionals: [], authorities: [] };

    for (let depth = 0; depth <= MAX_CNAME_CHAIN; depth++) {
      const zone = this.zoneOf(name);
      if (zone === undefined) {
        // Outside every zone we serve, and there is no upstream in the lab. After a CNAME, the
        // answer stands as is (the client cannot resolve the target through us anyway).
        if (depth === 0) result.rcode = 'NXDOMAIN';
        return result;
      }
      const owner = depth === 0 ? display : name;
      const here = name === this.domain ? [...this.recordsAt(name), this.soa(zone)] : this.recordsAt(name);

      const cname = here.find((r) => r.type === 'CNAME');
      if (cname && type !== 'CNAME' && type !== 'ANY') {
        result.answers.push(withName(cname, owner));
        const target = normalizeName(cname.data as string);
        if (result.answers.some((r) => r.name.toLowerCase() === target)) return result; // loop
        name = target;
        continue;
      }

      const matched = type === 'ANY' ? here : here.filter((r) => r.type === type);
      if (matched.length > 0) {
        for (const r of matched) result.answers.push(withName(r, owner));
        this.addAdditionals(result);
        return result;
      }
      if (here.length > 0 || this.nameRefs.has(name)) {
        result.authorities.push(this.soa(zone));
        return result; // NODATA
      }
      const pod = this.podRecords(name);
      if (pod !== undefined) {
        const podMatched = type === 'ANY' ? pod : pod.filter((r) => r.type === type);
        if (podMatched.length > 0) for (const r of podMatched) result.answers.push(withName(r, owner));
        else result.authorities.push(this.soa(zone));
        return result;
      }
      if (this.isPinned(name)) {
        result.authorities.push(this.soa(zone));
        return result;
      }
      result.rcode = 'NXDOMAIN';
      result.authorities.push(this.soa(zone));
      return result;
    }
    return result; // CNAME chain too long: return what we have
  }

  // ---------------------------------------------------------------------------------------

  private rebuild(key: string): void {
    this.serial = (this.serial + 1) >>> 0;
    const old = this.contributions.get(key);
    if (old) {
      for (const n of old.records.keys()) {
        const owners = this.byName.get(n);
        if (!owners) continue;
        owners.delete(key);
        if (owners.size === 0) this.byName.delete(n);
      }
      for (const n of old.names) this.unref(n);
      this.contributions.delete(key);
    }
    const svc = this.services.get(key);
    if (!svc) return;
    const next = this.build(svc, this.endpoints.get(key));
    for (const [n, rrs] of next.records) {
      let owners = this.byName.get(n);
      if (!owners) this.byName.set(n, (owners = new Map()));
      owners.set(key, rrs);
    }
    for (const n of next.names) this.ref(n);
    this.contributions.set(key, next);
  }

  private build(svc: ServiceInfo, ep: EndpointsInfo | undefined): Contribution {
    const records = new Map<string, DnsAnswer[]>();
    const names = new Set<string>();
    const seen = new Set<string>();
    const add = (rr: DnsAnswer): void => {
      const id = `${rr.name}|${rr.type}|${JSON.stringify(rr.data)}`;
      if (seen.has(id)) return;
      seen.add(id);
      let list = records.get(rr.name);
      if (!list) records.set(rr.name, (list = []));
      list.push(rr);
      names.add(rr.name);
    };
    const base = `${svc.name}.${svc.namespace}.svc.${this.domain}`;
    names.add(base);

    if (svc.kind === 'ExternalName') {
      if (svc.externalName === '') return { records, names };
      if (isIPv4(svc.externalName)) add(addrRecord(base, svc.externalName));
      else if (isIPv6(svc.externalName)) add(addrRecord(base, svc.externalName));
      else add({ name: base, type: 'CNAME', ttl: CLUSTER_DNS_TTL, class: 'IN', data: svc.externalName });
      return { records, names };
    }

    const srvs: SrvAnswer[] = [];
    const seenSrv = new Set<string>();
    const srv = (name: string, port: number, target: string): void => {
      srvs.push({ name, type: 'SRV', ttl: CLUSTER_DNS_TTL, class: 'IN', data: { priority: 0, weight: 0, port, target } });
    };
    const srvNames = (p: PortInfo): string[] =>
      p.name !== '' && isLabel(p.name) ? [`_${p.name}._${p.protocol}.${base}`, base] : [base];

    const subsets = ep?.subsets ?? [];
    const published = (s: SubsetInfo): AddressInfo[] =>
      svc.publishNotReadyAddresses ? [...s.addresses, ...s.notReadyAddresses] : s.addresses;

    if (svc.kind === 'ClusterIP') {
      for (const ip of svc.clusterIPs) {
        add(addrRecord(base, ip));
        add(ptrRecord(ip, base));
      }
      if (svc.clusterIPs.length > 0) {
        for (const p of svc.ports) for (const n of srvNames(p)) srv(n, p.port, base);
      }
      // Endpoints with a hostname are addressable by name under a ClusterIP service too.
      for (const s of subsets) {
        for (const a of published(s)) if (a.hostname) add(addrRecord(`${a.hostname}.${base}`, a.ip));
      }
    } else {
      // Headless: the service name resolves to the (ready) endpoints themselves.
      for (const s of subsets) {
        for (const a of published(s)) {
          const dashedName = `${dashed(a.ip)}.${base}`;
          const hostName = a.hostname ? `${a.hostname}.${base}` : dashedName;
          add(addrRecord(base, a.ip));
          add(addrRecord(dashedName, a.ip));
          if (a.hostname) add(addrRecord(hostName, a.ip));
          add(ptrRecord(a.ip, hostName));
          for (const p of s.ports) for (const n of srvNames(p)) srv(n, p.port, hostName);
        }
      }
    }

    // Equal weights summing to ~100 among the records of one SRV name.
    const perName = new Map<string, SrvAnswer[]>();
    for (const r of srvs) {
      const key = `${r.name}|${r.data.port}|${r.data.target}`;
      if (seenSrv.has(key)) continue;
      seenSrv.add(key);
      let list = perName.get(r.name);
      if (!list) perName.set(r.name, (list = []));
      list.push(r);
    }
    for (const list of perName.values()) {
      const weight = Math.max(1, Math.floor(100 / list.length));
      for (const r of list) add({ ...r, data: { ...r.data, weight } });
    }
    return { records, names };
  }

  private recordsAt(name: string): DnsAnswer[] {
    const owners = this.byName.get(name);
    if (!owners) return [];
    if (owners.size === 1) {
      for (const rrs of owners.values()) return rrs;
    }
    const all: DnsAnswer[] = [];
    for (const rrs of owners.values()) all.push(...rrs);
    return all;
  }

  private addAdditionals(result: DnsLookupResult): void {
    const done = new Set<string>();
    for (const r of result.answers) {
      if (r.type !== 'SRV') continue;
      const target = normalizeName(r.data.target);
      if (done.has(target)) continue;
      done.add(target);
      for (const a of this.recordsAt(target)) if (a.type === 'A' || a.type === 'AAAA') result.additionals.push(a);
    }
  }

  /** `<a-b-c-d>.<ns>.pod.<domain>` (and the IPv6 dashed form): synthesized, no state needed. */
  private podRecords(name: string): DnsAnswer[] | undefined {
    const suffix = `.pod.${this.domain}`;
    if (!name.endsWith(suffix)) return undefined;
    const labels = name.slice(0, -suffix.length).split('.');
    if (labels.length === 1 && isLabel(labels[0] ?? '')) return []; // <ns>.pod.<domain>: an empty non-terminal
    if (labels.length !== 2) return undefined;
    const [ipLabel = '', ns = ''] = labels;
    if (!isLabel(ns)) return undefined;
    const v4 = ipLabel.replaceAll('-', '.');
    if (isIPv4(v4)) return [addrRecord(name, v4)];
    const v6 = ipLabel.replaceAll('-', ':');
    if (isIPv6(v6)) return [addrRecord(name, v6)];
    return undefined;
  }

  /** The apex of the zone `name` is in, or undefined when we are not authoritative for it. */
  private zoneOf(name: string): string | undefined {
    for (const zone of [this.domain, REVERSE_V4, REVERSE_V6]) {
      if (name === zone || name.endsWith(`.${zone}`)) return zone;
    }
    return undefined;
  }

  /** Names that always exist: the apex and the svc / pod subtrees. */
  private isPinned(name: string): boolean {
    return name === this.domain || name === `svc.${this.domain}` || name === `pod.${this.domain}`;
  }

  private soa(zone: string): SoaAnswer {
    return {
      name: zone,
      type: 'SOA',
      ttl: CLUSTER_DNS_TTL,
      class: 'IN',
      data: {
        mname: `ns.dns.${this.domain}`,
        rname: `hostmaster.${this.domain}`,
        serial: this.serial,
        refresh: 7200,
        retry: 1800,
        expire: 86400,
        minimum: CLUSTER_DNS_TTL,
      },
    };
  }

  /** Counts a name and all its ancestors up to the zone apex as existing. */
  private ref(name: string): void {
    for (const n of this.withAncestors(name)) this.nameRefs.set(n, (this.nameRefs.get(n) ?? 0) + 1);
  }

  private unref(name: string): void {
    for (const n of this.withAncestors(name)) {
      const c = (this.nameRefs.get(n) ?? 0) - 1;
      if (c > 0) this.nameRefs.set(n, c);
      else this.nameRefs.delete(n);
    }
  }

  private withAncestors(name: string): string[] {
    const zone = this.zoneOf(name);
    const out = [name];
    if (zone === undefined) return out;
    let n = name;
    while (n !== zone) {
      const dot = n.indexOf('.');
      if (dot < 0) break;
      n = n.slice(dot + 1);
      out.push(n);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------

function objKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function stripDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

function normalizeName(name: string): string {
  return asciiLower(stripDot(name.trim()));
}

/** DNS names compare case-insensitively in ASCII only (RFC 4343). */
function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

function isDefined<T>(v: T | undefined): v is T {
  return v !== undefined;
}

function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

function isLabel(s: string): boolean {
  return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(s);
}

function portInfo(name: string | undefined, port: number, protocol: string | undefined): PortInfo | undefined {
  if (!Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  return { name: (name ?? '').toLowerCase(), port, protocol: (protocol ?? 'TCP').toLowerCase() };
}

function withName(rr: DnsAnswer, name: string): DnsAnswer {
  return rr.name === name ? rr : { ...rr, name };
}

function addrRecord(name: string, ip: string): StringAnswer {
  return { name, type: isIPv4(ip) ? 'A' : 'AAAA', ttl: CLUSTER_DNS_TTL, class: 'IN', data: ip };
}

function ptrRecord(ip: string, target: string): StringAnswer {
  return { name: reverseName(ip), type: 'PTR', ttl: CLUSTER_DNS_TTL, class: 'IN', data: target };
}

/** The label form of an IP used in DNS names: dots (or colons) replaced by dashes. */
export function dashed(ip: string): string {
  return ip.toLowerCase().replaceAll(isIPv4(ip) ? '.' : ':', '-');
}

/** `d.c.b.a.in-addr.arpa` for IPv4, the nibble form under `ip6.arpa` for IPv6. */
export function reverseName(ip: string): string {
  if (isIPv4(ip)) return `${ip.split('.').reverse().join('.')}.${REVERSE_V4}`;
  return `${expandIPv6(ip).split('').reverse().join('.')}.${REVERSE_V6}`;
}

/** 32 lowercase hex nibbles of an IPv6 address. */
function expandIPv6(ip: string): string {
  let s = ip.toLowerCase();
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  // Trailing dotted quad (e.g. ::ffff:10.0.0.1) -> two hextets.
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (m && m[1] !== undefined && m[2] !== undefined) {
    const o = m[2].split('.').map(Number);
    const h = (a = 0, b = 0): string => ((a << 8) | b).toString(16);
    s = `${m[1]}${h(o[0], o[1])}:${h(o[2], o[3])}`;
  }
  const [head = '', tail] = s.split('::');
  const headParts = head === '' ? [] : head.split(':');
  const tailParts = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : new Array<string>(8 - headParts.length - tailParts.length).fill('0');
  return [...headParts, ...fill, ...tailParts].map((p) => p.padStart(4, '0')).join('');
}
