import { isIP } from 'node:net';
import { DNS_PROXY_PORT, HBONE_PORT, INBOUND_PLAINTEXT_PORT, OUTBOUND_CAPTURE_PORT } from '../../api/resources.js';

export const CAPTURE_TABLE = 'ambit';
/** Packet mark bit that routes diverted inbound packets to the local stack (policy routing). */
export const DIVERT_MARK = 0x400;
/** Routing table (and rule priority) holding `local 0.0.0.0/0 dev lo` for marked packets. */
export const DIVERT_ROUTE_TABLE = 15006;

export interface CapturePorts {
  /** DNS proxy: answers mesh hostnames (e.g. remote-only global services), forwards the rest. */
  dns: number;
  outbound: number;
  inbound: number;
  inboundPlaintext: number;
}

export const DEFAULT_CAPTURE_PORTS: CapturePorts = { dns: DNS_PROXY_PORT, outbound: OUTBOUND_CAPTURE_PORT, inbound: HBONE_PORT, inboundPlaintext: INBOUND_PLAINTEXT_PORT };

/**
 * nftables script that atomically replaces `table inet ambit` in the node's namespace.
 *
 * Outbound and HBONE packets are DNAT'd to the node address rather than REDIRECTed: REDIRECT
 * targets the incoming interface's address, and pod-side veths of many CNIs (and the lab) have
 * none. That chain runs at priority -150, before kube-proxy style service DNAT (-100), so the
 * original destination ztunnel reads is still the service VIP.
 *
 * Plaintext inbound is diverted later (-90), after service DNAT, with tproxy: a client outside
 * the mesh on the same node that dials a Service VIP only shows the enrolled pod's address
 * after that DNAT, and NAT cannot apply twice to one connection.
 */
export function renderCaptureRuleset(nodeIp: string, enrolledPodIps: readonly string[], ports: CapturePorts = DEFAULT_CAPTURE_PORTS): string {
  if (isIP(nodeIp) !== 4) throw new Error(`node address must be IPv4, got ${JSON.stringify(nodeIp)}`);
  const pods = [...new Set(enrolledPodIps.filter((ip) => isIP(ip) === 4))].sort();
  const to = (port: number) => `dnat ip to ${nodeIp}:${port}`;
  const lines = [
    `table inet ${CAPTURE_TABLE}`,
    `delete table inet ${CAPTURE_TABLE}`,
    `table inet ${CAPTURE_TABLE} {`,
    '  set enrolled4 {',
    '    type ipv4_addr',
    ...(pods.length ? [`    elements = { ${pods.join(', ')} }`] : []),
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority -150; policy accept;',
    `    ip saddr @enrolled4 udp dport 53 ${to(ports.dns)}`,
    `    ip saddr @enrolled4 tcp dport 53 ${to(ports.dns)}`,
    `    ip saddr @enrolled4 meta l4proto tcp ${to(ports.outbound)}`,
    `    ip daddr @enrolled4 tcp dport ${HBONE_PORT} ${to(ports.inbound)}`,
    '  }',
    '  chain divert {',
    '    type filter hook prerouting priority -90; policy accept;',
    // Packets of connections already diverted follow their transparent socket; new ones are
    // diverted; connections that predate enrolment keep flowing to the pod untouched.
    `    ip daddr @enrolled4 meta l4proto tcp socket transparent 1 meta mark set meta mark | ${hex(DIVERT_MARK)} accept`,
    `    ip daddr @enrolled4 tcp dport != ${HBONE_PORT} ct state new meta mark set meta mark | ${hex(DIVERT_MARK)} tproxy ip to :${ports.inboundPlaintext} accept`,
    '  }',
    '  chain output {',
    '    type nat hook output priority -150; policy accept;',
    `    ip daddr @enrolled4 tcp dport ${HBONE_PORT} ${to(ports.inbound)}`,
    '  }',
    '}',
    '',
  ];
  return lines.join('\n');
}

export function renderCaptureRemoval(): string {
  return [`table inet ${CAPTURE_TABLE}`, `delete table inet ${CAPTURE_TABLE}`, ''].join('\n');
}

function hex(value: number): string {
  return `0x${value.toString(16)}`;
}
