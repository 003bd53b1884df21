/**
 * kube-proxy equivalent for the lab: turns Services + Endpoints into nftables rulesets.
 *
 * Two renderers, both pure (views in, `nft -f -` script out):
 *  - renderNodeServiceRules: per node netns. ClusterIP and NodePort DNAT to a random ready
 *    endpoint, reject (tcp reset / icmp port-unreachable) for service ports without endpoints,
 *    hairpin masquerade (pod -> own service -> itself) and masquerade of NodePort traffic.
 *  - renderLoadBalancerRules: for the "network router" netns in front of the pods' network.
 *    LB_IP:port DNAT to a random ready endpoint, masqueraded on the way out.
 *
 * Each script recreates one `table ip <name>` in a single nft transaction
 * (`table ip X {}` + `delete table ip X` + full table), so re-applying is atomic and never
 * leaves a half-updated ruleset. Conntrack state survives a re-apply, so established
 * connections keep their NAT binding.
 *
 * IPv4 only (`table ip`): IPv6 ClusterIPs / endpoints are ignored by the renderers.
 */
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';

import type { V1Endpoints, V1Service } from '@kubernetes/client-node';

import { run } from '../../util/exec.js';

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type ServiceProtocol = 'TCP' | 'UDP' | 'SCTP';
export type SessionAffinity = 'None' | 'ClientIP';

/** One ready backend of one service port, with the target port already resolved. */
export interface ServiceEndpointView {
  ip: string;
  /** Resolved target port number on this endpoint (from the Endpoints subset's ports). */
  port: number;
  nodeName?: string;
}

export interface ServicePortView {
  /** Service port name; '' when unnamed (single-port services). */
  name: string;
  protocol: ServiceProtocol;
  /** The service (ClusterIP / LB) port. */
  port: number;
  /** Allocated node port (NodePort and LoadBalancer services). */
  nodePort?: number;
  /** targetPort as declared on the Service (defaults to `port`); informational, see endpoints[].port. */
  targetPort: number | string;
  /** Ready endpoints only, deduplicated, sorted by IP then port. Empty = reject. */
  endpoints: ServiceEndpointView[];
}

export interface ServiceBackendView {
  namespace: string;
  name: string;
  type: ServiceType;
  /** Primary ClusterIP (undefined when not allocated). Headless services never produce a view. */
  clusterIP?: string;
  ports: ServicePortView[];
  /** status.loadBalancer.ingress[].ip for LoadBalancer services. */
  loadBalancerIPs: string[];
  sessionAffinity: SessionAffinity;
  /** spec.sessionAffinityConfig.clientIP.timeoutSeconds (not enforced, see renderers). */
  sessionAffinityTimeoutSeconds?: number;
}

export const DEFAULT_NODE_TABLE = 'ambit-lab-services';
/** Same bit kube-proxy uses for "masquerade this connection". */
export const DEFAULT_MASQUERADE_MARK = 0x4000;

const PROTOCOLS: readonly ServiceProtocol[] = ['TCP', 'UDP', 'SCTP'];
const SERVICE_TYPES: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];

// ---------------------------------------------------------------------------------------------
// Services + Endpoints -> views
// ---------------------------------------------------------------------------------------------

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

function toProtocol(p: string | undefined): ServiceProtocol | undefined {
  const upper = (p ?? 'TCP').toUpperCase();
  return PROTOCOLS.find((x) => x === upper);
}

function normalizeTargetPort(target: number | string | undefined, port: number): number | string {
  if (target === undefined || target === '' || target === 0) return port;
  if (typeof target === 'string' && /^[0-9]+$/.test(target)) return Number(target);
  return target;
}

function compareIPv4(a: string, b: string): number {
  const na = isIPv4(a) ? a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0) : -1;
  const nb = isIPv4(b) ? b.split('.').reduce((acc, o) => acc * 256 + Number(o), 0) : -1;
  return na !== nb ? na - nb : a < b ? -1 : a > b ? 1 : 0;
}

function resolveEndpoints(
  endpoints: V1Endpoints | undefined,
  portName: string,
  protocol: ServiceProtocol,
  targetPort: number | string,
): ServiceEndpointView[] {
  const seen = new Map<string, ServiceEndpointView>();
  for (const subset of endpoints?.subsets ?? []) {
    let port: number | undefined;
    if (subset.ports && subset.ports.length > 0) {
      // The endpoints controller names each subset port after the service port and carries the
      // resolved number (named targetPorts may resolve differently per pod -> separate subsets).
      const match = subset.ports.find(
        (p) => (p.name ?? '') === portName && toProtocol(p.protocol) === protocol,
      );
      port = match?.port;
    } else if (typeof targetPort === 'number') {
      // Hand-written Endpoints without ports: only a numeric targetPort can be used.
      port = targetPort;
    }
    if (!isPort(port)) continue;
    for (const address of subset.addresses ?? []) {
      if (!address.ip) continue;
      const ep: ServiceEndpointView = { ip: address.ip, port };
      if (address.nodeName) ep.nodeName = address.nodeName;
      const key = `${ep.ip}:${ep.port}`;
      if (!seen.has(key)) seen.set(key, ep);
    }
  }
  return [...seen.values()].sort((a, b) => compareIPv4(a.ip, b.ip) || a.port - b.port);
}

/**
 * Joins Services with their Endpoints (same namespace/name). Skips headless (clusterIP None)
 * and ExternalName services; only ready addresses (`subsets[].addresses`) become endpoints;
 * named targetPorts are resolved through the Endpoints subsets' port names.
 */
export function buildServiceViews(services: V1Service[], endpoints: V1Endpoints[]): ServiceBackendView[] {
  const endpointsByKey = new Map<string, V1Endpoints>();
  for (const ep of endpoints) {
    const name = ep.metadata?.name;
    if (!name) continue;
    endpointsByKey.set(`${ep.metadata?.namespace ?? 'default'}/${name}`, ep);
  }

  const views: ServiceBackendView[] = [];
  for (const svc of services) {
    const name = svc.metadata?.name;
    if (!name) continue;
    const namespace = svc.metadata?.namespace ?? 'default';
    const spec = svc.spec ?? {};
    const type = SERVICE_TYPES.find((t) => t === spec.type) ?? 'ClusterIP';
    if (type === 'ExternalName') continue;
    if (spec.clusterIP === 'None') continue; // headless: DNS only, no virtual IP

    const ep = endpointsByKey.get(`${namespace}/${name}`);
    const ports: ServicePortView[] = [];
    for (const p of spec.ports ?? []) {
      const protocol = toProtocol(p.protocol);
      if (!protocol || !isPort(p.port)) continue;
      const portName = p.name ?? '';
      const targetPort = normalizeTargetPort(p.targetPort, p.port);
      const view: ServicePortView = {
        name: portName,
        protocol,
        port: p.port,
        targetPort,
        endpoints: resolveEndpoints(ep, portName, protocol, targetPort),
      };
      if ((type === 'NodePort' || type === 'LoadBalancer') && isPort(p.nodePort)) view.nodePort = p.nodePort;
      ports.push(view);
    }

    const loadBalancerIPs: string[] = [];
    if (type === 'LoadBalancer') {
      for (const ingress of svc.status?.loadBalancer?.ingress ?? []) {
        if (ingress.ip && !loadBalancerIPs.includes(ingress.ip)) loadBalancerIPs.push(ingress.ip);
      }
    }

    const view: ServiceBackendView = {
      namespace,
      name,
      type,
      ports,
      loadBalancerIPs,
      sessionAffinity: spec.sessionAffinity === 'ClientIP' ? 'ClientIP' : 'None',
    };
    if (spec.clusterIP) view.clusterIP = spec.clusterIP;
    const timeout = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds;
    if (view.sessionAffinity === 'ClientIP' && typeof timeout === 'number') {
      view.sessionAffinityTimeoutSeconds = timeout;
    }
    views.push(view);
  }
  return views.sort((a, b) =>
    a.namespace === b.namespace ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.namespace < b.namespace ? -1 : 1,
  );
}

// ---------------------------------------------------------------------------------------------
// Rendering helpers
// ---------------------------------------------------------------------------------------------

const NFT_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

function checkTableName(table: string): string {
  if (!NFT_NAME.test(table)) throw new Error(`invalid nftables table name: ${JSON.stringify(table)}`);
  return table;
}

function checkMark(mark: number): string {
  if (!Number.isInteger(mark) || mark <= 0 || mark > 0xffffffff) {
    throw new Error(`invalid masquerade mark: ${mark}`);
  }
  return `0x${mark.toString(16)}`;
}

function nftProto(p: ServiceProtocol): string {
  return p.toLowerCase();
}

/** Chars allowed inside an unquoted nft identifier after the first letter. */
function sanitize(part: string): string {
  return part.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 63);
}

/**
 * Chain name for one service port, e.g. `svc-1a2b3c4d-default/web/tcp/http`. The hash (over the
 * unsanitized identity) keeps names unique even if sanitizing collapses characters.
 */
function chainName(prefix: string, view: ServiceBackendView, port: ServicePortView): string {
  const identity = `${view.namespace}/${view.name}/${port.protocol}/${port.port}`;
  const hash = createHash('sha256').update(identity).digest('hex').slice(0, 8);
  const label = port.name || String(port.port);
  return `${prefix}-${hash}-${sanitize(view.namespace)}/${sanitize(view.name)}/${nftProto(port.protocol)}/${sanitize(label)}`;
}

function usableEndpoints(port: ServicePortView): ServiceEndpointView[] {
  return port.endpoints.filter((e) => isIPv4(e.ip) && isPort(e.port));
}

/** `meta l4proto tcp dnat to ...` choosing one endpoint at random (or by client-IP hash). */
function dnatRule(view: ServiceBackendView, port: ServicePortView, eps: ServiceEndpointView[]): string {
  const proto = `meta l4proto ${nftProto(port.protocol)}`;
  const only = eps[0];
  if (eps.length === 1 && only) return `${proto} dnat to ${only.ip}:${only.port}`;
  // The map form needs the transport protocol match in the same rule (nft: "transport protocol
  // mapping is only valid after transport protocol match").
  const selector =
    view.sessionAffinity === 'ClientIP'
      ? // Fixed seed: the same client keeps hitting the same endpoint across re-applies as long
        // as the endpoint set is unchanged (no timeout, unlike kube-proxy's recent-list).
        `jhash ip saddr mod ${eps.length} seed 0x0`
      : `numgen random mod ${eps.length}`;
  const elements = eps.map((e, i) => `${i} : ${e.ip} . ${e.port}`).join(', ');
  return `${proto} dnat to ${selector} map { ${elements} }`;
}

class Script {
  private readonly lines: string[] = [];
  push(indent: number, ...lines: string[]): void {
    for (const l of lines) this.lines.push(`${'\t'.repeat(indent)}${l}`);
  }
  /** Named set/map; the `elements` clause is omitted when empty (`elements = { }` is a syntax error). */
  collection(kind: 'set' | 'map', name: string, type: string, elements: Iterable<string>, flags?: string): void {
    this.push(1, `${kind} ${name} {`);
    this.push(2, `type ${type}`);
    if (flags) this.push(2, `flags ${flags}`);
    const list = [...elements];
    if (list.length > 0) {
      this.push(2, 'elements = {');
      this.push(3, ...list.map((e) => `${e},`));
      this.push(2, '}');
    }
    this.push(1, '}');
  }
  /** Chain; base chains get a header like `type nat hook prerouting priority dstnat; policy accept;`. */
  chain(name: string, rules: string[], base?: string): void {
    this.push(1, `chain ${name} {`);
    if (base) this.push(2, `${base}; policy accept;`);
    this.push(2, ...rules);
    this.push(1, '}');
  }
  /** The recreate-atomically idiom: create-if-missing, delete, then the full table — one transaction. */
  static table(table: string, body: Script): string {
    return [
      `table ip ${table} {}`,
      `delete table ip ${table}`,
      `table ip ${table} {`,
      ...body.lines,
      '}',
      '',
    ].join('\n');
  }
}

/** Dedupes set/map elements by key (first wins: `nft -f` rejects duplicate keys). */
class Elements {
  private readonly map = new Map<string, string>();
  add(key: string, value?: string): void {
    if (!this.map.has(key)) this.map.set(key, value === undefined ? key : `${key} : ${value}`);
  }
  values(): IterableIterator<string> {
    return this.map.values();
  }
}

// Note: nft 1.0.6 only accepts the symbolic `dstnat` priority on the prerouting hook and
// `srcnat` on postrouting; the output hook needs the number (dstnat = -100).
const FILTER_PREROUTING = 'type filter hook prerouting priority dstnat - 10';
const FILTER_OUTPUT = 'type filter hook output priority -110';
// Node rejects run after NAT, as iptables-mode kube-proxy's (filter INPUT/FORWARD/OUTPUT): a mesh
// capture that DNATs a service connection to its proxy must win over "no endpoints here".
const FILTER_FORWARD_AFTER_NAT = 'type filter hook forward priority 0';
const FILTER_INPUT_AFTER_NAT = 'type filter hook input priority 0';
const FILTER_OUTPUT_AFTER_NAT = 'type filter hook output priority 0';
const NAT_PREROUTING = 'type nat hook prerouting priority dstnat';
const NAT_OUTPUT = 'type nat hook output priority -100';
const NAT_POSTROUTING = 'type nat hook postrouting priority srcnat';

const REJECT_RULES = ['meta l4proto tcp reject with tcp reset', 'reject with icmp type port-unreachable'];
const SERVICE_KEY = 'ipv4_addr . inet_proto . inet_service';
const SERVICE_MATCH = 'ip daddr . meta l4proto . th dport';
// Loopback is excluded: DNAT of 127.0.0.0/8 to a remote endpoint would need route_localnet.
const NODEPORT_MATCH = 'fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport';

// ---------------------------------------------------------------------------------------------
// Node rules
// ---------------------------------------------------------------------------------------------

export interface NodeServiceRulesOptions {
  /** Table name (default 'ambit-lab-services'). */
  table?: string;
  /** Packet-mark bit(s) meaning "masquerade this connection" (default 0x4000). */
  masqueradeMark?: number;
  /**
   * Pod CIDRs of the cluster. When given, ClusterIP traffic whose source is outside them (node
   * processes, other hosts) is masqueraded, like kube-proxy's --cluster-cidr.
   */
  podCIDRs?: string[];
}

/**
 * nft script (re)defining `table ip <table>` for one node netns:
 *  - ClusterIP:port (from pods via prerouting, from node processes via output) and
 *    <local address>:nodePort -> DNAT to a random ready endpoint; lookups are verdict maps keyed
 *    by `ip daddr . meta l4proto . th dport`, so cost does not grow with the number of services.
 *  - service ports without ready endpoints -> tcp reset / icmp port-unreachable (new connections).
 *  - hairpin: a connection DNAT'd back to its own source is masqueraded (set of `ep . ep`).
 *  - NodePort connections are masqueraded (externalTrafficPolicy Cluster semantics).
 * For the output path the node netns needs a route covering the ClusterIPs (e.g. a default route),
 * as with kube-proxy; the pod path and the rejects do not depend on routes.
 */
export function renderNodeServiceRules(views: ServiceBackendView[], opts: NodeServiceRulesOptions = {}): string {
  const table = checkTableName(opts.table ?? DEFAULT_NODE_TABLE);
  const mark = checkMark(opts.masqueradeMark ?? DEFAULT_MASQUERADE_MARK);
  const podCIDRs = (opts.podCIDRs ?? []).filter((c) => {
    const [addr, len, ...rest] = c.split('/');
    return rest.length === 0 && addr !== undefined && isIPv4(addr) && (len === undefined || /^([0-9]|[12][0-9]|3[0-2])$/.test(len));
  });

  const serviceIPs = new Elements();
  const nodePorts = new Elements();
  const noEndpointServices = new Elements();
  const noEndpointNodePorts = new Elements();
  const hairpin = new Elements();
  const chains = new Map<string, string[]>();

  for (const view of views) {
    const clusterIP = view.clusterIP !== undefined && isIPv4(view.clusterIP) ? view.clusterIP : undefined;
    for (const port of view.ports) {
      const proto = nftProto(port.protocol);
      const eps = usableEndpoints(port);
      const nodePort = port.nodePort !== undefined && isPort(port.nodePort) ? port.nodePort : undefined;
      if (eps.length === 0) {
        if (clusterIP) noEndpointServices.add(`${clusterIP} . ${proto} . ${port.port}`);
        if (nodePort) noEndpointNodePorts.add(`${proto} . ${nodePort}`);
        continue;
      }
      if (!clusterIP && !nodePort) continue;
      const svcChain = chainName('svc', view, port);
      if (chains.has(svcChain)) continue;
      const rules: string[] = [];
      if (podCIDRs.length > 0) rules.push(`ip saddr != @pod-cidrs meta mark set meta mark | ${mark}`);
      rules.push(dnatRule(view, port, eps));
      chains.set(svcChain, rules);
      for (const e of eps) hairpin.add(`${e.ip} . ${e.ip}`);
      if (clusterIP) serviceIPs.add(`${clusterIP} . ${proto} . ${port.port}`, `goto ${svcChain}`);
      if (nodePort) {
        const npChain = chainName('np', view, port);
        chains.set(npChain, [`meta mark set meta mark | ${mark}`, `goto ${svcChain}`]);
        nodePorts.add(`${proto} . ${nodePort}`, `goto ${npChain}`);
      }
    }
  }

  const s = new Script();
  if (podCIDRs.length > 0) s.collection('set', 'pod-cidrs', 'ipv4_addr', podCIDRs, 'interval');
  s.collection('map', 'service-ips', `${SERVICE_KEY} : verdict`, serviceIPs.values());
  s.collection('map', 'service-nodeports', 'inet_proto . inet_service : verdict', nodePorts.values());
  s.collection('set', 'no-endpoint-services', SERVICE_KEY, noEndpointServices.values());
  s.collection('set', 'no-endpoint-nodeports', 'inet_proto . inet_service', noEndpointNodePorts.values());
  s.collection('set', 'hairpin-endpoints', 'ipv4_addr . ipv4_addr', hairpin.values());

  s.chain('reject-service', REJECT_RULES);
  s.chain('endpoints-check', [
    `${SERVICE_MATCH} @no-endpoint-services goto reject-service`,
    `${NODEPORT_MATCH} @no-endpoint-nodeports goto reject-service`,
  ]);
  s.chain('filter-forward', ['ct state new jump endpoints-check'], FILTER_FORWARD_AFTER_NAT);
  s.chain('filter-input', ['ct state new jump endpoints-check'], FILTER_INPUT_AFTER_NAT);
  s.chain('filter-output', ['ct state new jump endpoints-check'], FILTER_OUTPUT_AFTER_NAT);

  s.chain('services', [`${SERVICE_MATCH} vmap @service-ips`, `${NODEPORT_MATCH} vmap @service-nodeports`]);
  for (const [name, rules] of chains) s.chain(name, rules);
  s.chain('nat-prerouting', ['jump services'], NAT_PREROUTING);
  s.chain('nat-output', ['jump services'], NAT_OUTPUT);
  s.chain(
    'nat-postrouting',
    [
      // Hairpin: after DNAT the packet goes back to its sender; without SNAT the pod would drop it
      // (its own address as source) or answer itself directly, bypassing the reverse NAT.
      'ct status dnat ip saddr . ip daddr @hairpin-endpoints masquerade',
      `meta mark & ${mark} == ${mark} meta mark set meta mark ^ ${mark} masquerade fully-random`,
    ],
    NAT_POSTROUTING,
  );
  return Script.table(table, s);
}

// ---------------------------------------------------------------------------------------------
// LoadBalancer rules (network router netns)
// ---------------------------------------------------------------------------------------------

export interface LoadBalancerRulesOptions {
  table: string;
  /** Packet-mark bit(s) meaning "masquerade this connection" (default 0x4000). */
  masqueradeMark?: number;
}

/**
 * nft script (re)defining `table ip <table>` for the router netns: `LB_IP . proto . port`
 * (prerouting and router-local output) -> DNAT to a random ready endpoint podIP:targetPort, marked
 * and masqueraded on the way out so replies return through the router even when the client sits
 * on the pods' network. LB ports without ready endpoints -> tcp reset / icmp port-unreachable.
 */
export function renderLoadBalancerRules(views: ServiceBackendView[], opts: LoadBalancerRulesOptions): string {
  const table = checkTableName(opts.table);
  const mark = checkMark(opts.masqueradeMark ?? DEFAULT_MASQUERADE_MARK);

  const lbIPs = new Elements();
  const noEndpoints = new Elements();
  const chains = new Map<string, string[]>();

  for (const view of views) {
    const ips = view.loadBalancerIPs.filter((ip) => isIPv4(ip));
    if (ips.length === 0) continue;
    for (const port of view.ports) {
      const proto = nftProto(port.protocol);
      const eps = usableEndpoints(port);
      if (eps.length === 0) {
        for (const ip of ips) noEndpoints.add(`${ip} . ${proto} . ${port.port}`);
        continue;
      }
      const lbChain = chainName('lb', view, port);
      if (!chains.has(lbChain)) {
        chains.set(lbChain, [`meta mark set meta mark | ${mark}`, dnatRule(view, port, eps)]);
      }
      for (const ip of ips) lbIPs.add(`${ip} . ${proto} . ${port.port}`, `goto ${lbChain}`);
    }
  }

  const s = new Script();
  s.collection('map', 'lb-ips', `${SERVICE_KEY} : verdict`, lbIPs.values());
  s.collection('set', 'no-endpoint-services', SERVICE_KEY, noEndpoints.values());
  s.chain('reject-service', REJECT_RULES);
  const check = `ct state new ${SERVICE_MATCH} @no-endpoint-services goto reject-service`;
  s.chain('filter-prerouting', [check], FILTER_PREROUTING);
  s.chain('filter-output', [check], FILTER_OUTPUT);
  for (const [name, rules] of chains) s.chain(name, rules);
  s.chain('nat-prerouting', [`${SERVICE_MATCH} vmap @lb-ips`], NAT_PREROUTING);
  s.chain('nat-output', [`${SERVICE_MATCH} vmap @lb-ips`], NAT_OUTPUT);
  s.chain(
    'nat-postrouting',
    [`meta mark & ${mark} == ${mark} meta mark set meta mark ^ ${mark} masquerade fully-random`],
    NAT_POSTROUTING,
  );
  return Script.table(table, s);
}

// ---------------------------------------------------------------------------------------------
// Applying
// ---------------------------------------------------------------------------------------------

/** Applies an nft script inside a netns as one transaction (`ip netns exec <netns> nft -f -`). */
export async function applyRules(netns: string, script: string): Promise<void> {
  await run('ip', ['netns', 'exec', netns, 'nft', '-f', '-'], { input: script });
}

/**
 * Parses/validates a script without applying it (`nft -c -f -`). Note that check mode does not run
 * every kernel-side validation (e.g. `reject` in a hook that does not support it passes -c).
 */
export async function checkRules(netns: string, script: string): Promise<void> {
  await run('ip', ['netns', 'exec', netns, 'nft', '-c', '-f', '-'], { input: script });
}

/** Removes `table ip <table>` from a netns; succeeds when the table does not exist. */
export async function deleteTable(netns: string, table: string): Promise<void> {
  checkTableName(table);
  await applyRules(netns, `table ip ${table} {}\ndelete table ip ${table}\n`);
}
