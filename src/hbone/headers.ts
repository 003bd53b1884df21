// HBONE request headers: authority parsing, baggage, forwarded, traceparent, the double-HBONE and endpoint-slot extensions.
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';

import { WorkloadType, type Workload } from '../gen/istio/workload/workload_pb.js';
import { normalizeIp } from '../api/ip.js';

/** Source workload facts a client describes itself with in `baggage`: claims, never used for decisions or metric labels. */
export interface BaggageFacts {
  workload?: string;
  canonicalService?: string;
  canonicalRevision?: string;
  namespace?: string;
  cluster?: string;
}

/** The first value of a request header. */
export function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Header values that may become log fields: short, label-safe names. */
const LABEL_SAFE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** The value when it is short, label-safe text (nothing a client could flood logs with), else nothing. */
export function labelSafe(value: string | undefined): string | undefined {
  return value !== undefined && LABEL_SAFE.test(value) ? value : undefined;
}

/** `ip:port`, with IPv6 addresses in brackets. */
export function formatAuthority(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export type ParsedAuthority = { ok: true; ip: string; port: number } | { ok: false; reason: string };

/** Parses an HBONE `:authority` that must be `ip:port` (or `[ipv6]:port`). */
export function parseAuthority(authority: string | undefined): ParsedAuthority {
  if (!authority) return { ok: false, reason: ':authority is missing' };
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(authority);
  const host = match?.[1] ?? match?.[2];
  if (!match || host === undefined) return { ok: false, reason: `:authority ${JSON.stringify(authority)} is not ip:port` };
  if (isIP(host) === 0) return { ok: false, reason: `:authority ${JSON.stringify(authority)} does not name an IP address` };
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return { ok: false, reason: `:authority ${JSON.stringify(authority)} has port out of range` };
  return { ok: true, ip: normalizeIp(host), port };
}

/** On the CONNECTs of double HBONE: the network the client is on. */
export const X_FORWARDED_NETWORK = 'x-forwarded-network';

/**
 * Outer CONNECT header `<slot>/<slots>`: which share of the service's endpoints the east-west
 * gateway should pick from. Pooled inner sessions stick to the endpoint the gateway picked when
 * they were opened, so a client keeps one session per slot and spreads its connections over the
 * slots; a gateway without this extension picks at random, as Istio's does.
 */
export const X_ENDPOINT_SLOT = 'x-ambit-endpoint-slot';

/** Parses `<slot>/<slots>`; undefined when absent or malformed. */
export function parseEndpointSlot(value: string | undefined): { slot: number; slots: number } | undefined {
  const match = value === undefined ? null : /^(\d{1,4})\/(\d{1,4})$/.exec(value);
  if (!match) return undefined;
  const slot = Number(match[1]);
  const slots = Number(match[2]);
  return slots > 0 && slot < slots ? { slot, slots } : undefined;
}

export type HboneTarget =
  | { ok: true; kind: 'address'; ip: string; port: number }
  | { ok: true; kind: 'hostname'; hostname: string; port: number }
  | { ok: false; reason: string };

const HOSTNAME_AUTHORITY = /^((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?):(\d{1,5})$/i;

/**
 * Parses an HBONE `:authority`: `ip:port` (a pod, same network), or `<hostname>:<port>` (a service,
 * through an east-west gateway). Hostnames are lower-cased.
 */
export function parseHboneTarget(authority: string | undefined): HboneTarget {
  const address = parseAuthority(authority);
  if (address.ok) return { ...address, kind: 'address' };
  const match = authority === undefined ? null : HOSTNAME_AUTHORITY.exec(authority);
  const hostname = match?.[1];
  if (!match || hostname === undefined || isIP(hostname) !== 0 || /^[\d.]+$/.test(hostname)) {
    return authority ? { ok: false, reason: `:authority ${JSON.stringify(authority)} is neither ip:port nor hostname:port` } : address;
  }
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return { ok: false, reason: `:authority ${JSON.stringify(authority)} has port out of range` };
  return { ok: true, kind: 'hostname', hostname: hostname.toLowerCase(), port };
}

const BAGGAGE_WORKLOAD_KEY: Record<WorkloadType, string> = {
  [WorkloadType.DEPLOYMENT]: 'k8s.deployment.name',
  [WorkloadType.CRONJOB]: 'k8s.cronjob.name',
  [WorkloadType.POD]: 'k8s.pod.name',
  [WorkloadType.JOB]: 'k8s.job.name',
};

/** W3C baggage describing the source workload, as ztunnel sends it. */
export function baggageFor(source: Workload, clusterId: string): string {
  const entries: Array<[string, string]> = [
    ['k8s.cluster.name', source.clusterId || clusterId],
    ['k8s.namespace.name', source.namespace],
    [BAGGAGE_WORKLOAD_KEY[source.workloadType] ?? 'k8s.deployment.name', source.workloadName || source.name],
    ['service.name', source.canonicalName],
    ['service.version', source.canonicalRevision],
  ];
  return entries
    .filter(([, value]) => value !== '')
    .map(([key, value]) => `${key}=${encodeURIComponent(value)}`)
    .join(',');
}

/** Source workload facts from a baggage header; unknown keys and malformed members are ignored. */
export function parseBaggage(baggage: string | undefined): BaggageFacts {
  const facts: BaggageFacts = {};
  if (!baggage) return facts;
  for (const member of baggage.split(',')) {
    const [pair = ''] = member.split(';');
    const equals = pair.indexOf('=');
    if (equals <= 0) continue;
    const key = pair.slice(0, equals).trim();
    let value: string;
    try {
      value = decodeURIComponent(pair.slice(equals + 1).trim());
    } catch {
      continue;
    }
    if (key === 'k8s.cluster.name') facts.cluster = value;
    else if (key === 'k8s.namespace.name') facts.namespace = value;
    else if (Object.values(BAGGAGE_WORKLOAD_KEY).includes(key)) facts.workload = value;
    else if (key === 'service.name') facts.canonicalService = value;
    else if (key === 'service.version') facts.canonicalRevision = value;
  }
  return facts;
}

/** `forwarded: for="<ip>"` (RFC 7239; IPv6 in brackets). */
export function forwardedFor(ip: string): string {
  return isIP(ip) === 6 ? `for="[${ip}]"` : `for="${ip}"`;
}

/** The first `for=` address of a Forwarded header, when it is an IP address. */
export function parseForwardedFor(forwarded: string | undefined): string | undefined {
  if (!forwarded) return undefined;
  const match = /(?:^|[;,\s])for=("?)\[?([0-9A-Fa-f.:]+)\]?(?::\d+)?\1(?=$|[;,\s])/i.exec(forwarded);
  const ip = match?.[2];
  return ip !== undefined && isIP(ip) !== 0 ? normalizeIp(ip) : undefined;
}

/** A fresh W3C traceparent: version 00, random trace and span ids, not sampled. */
export function newTraceparent(): string {
  const bytes = randomBytes(24);
  // All-zero ids are invalid; make sure neither can be.
  bytes[15] = (bytes[15] ?? 0) | 1;
  bytes[23] = (bytes[23] ?? 0) | 1;
  return `00-${bytes.subarray(0, 16).toString('hex')}-${bytes.subarray(16, 24).toString('hex')}-00`;
}
