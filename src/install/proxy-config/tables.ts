/** Text tables of a ztunnel's config dump, in the style of `istioctl ztunnel-config`. */
import type { CertificateView, ConfigDump, PolicyView, ServiceView, WorkloadView } from '../../ztunnel/admin/types.js';

export const VIEWS = ['workloads', 'services', 'policies', 'certs', 'all'] as const;
export type View = (typeof VIEWS)[number];

/** istioctl's singular names (`ztunnel-config workload`) work too. */
const VIEW_ALIASES: Record<string, View> = { workload: 'workloads', service: 'services', policy: 'policies', cert: 'certs', certificate: 'certs', certificates: 'certs' };

export function parseView(text: string): View | undefined {
  return (VIEWS as readonly string[]).includes(text) ? (text as View) : VIEW_ALIASES[text];
}

/** Left-aligned columns, two spaces apart; no trailing spaces. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

const byKey = <T>(key: (item: T) => string) => (a: T, b: T) => key(a).localeCompare(key(b));
const orNone = (text: string) => text || 'None';

export function workloadsTable(workloads: readonly WorkloadView[]): string {
  const rows = [...workloads]
    .sort(byKey((w) => `${w.namespace}/${w.name}/${w.uid}`))
    .map((w) => [
      w.namespace,
      w.name,
      w.networkGateway ? `via ${w.networkGateway}` : orNone(w.addresses.join(',')),
      orNone(w.node),
      orNone(w.network),
      w.protocol,
      w.captured ? 'yes' : 'no',
      w.status,
      String(w.capacity),
      orNone(w.waypoint ?? ''),
    ]);
  return table(['NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'NETWORK', 'PROTOCOL', 'CAPTURED', 'STATUS', 'CAPACITY', 'WAYPOINT'], rows);
}

function portText(port: ServiceView['ports'][number]): string {
  const target = port.targetPort && port.targetPort !== port.port ? `->${port.targetPort}` : '';
  return `${port.port}${target}/${port.protocol}`;
}

export function servicesTable(services: readonly ServiceView[]): string {
  const rows = [...services]
    .sort(byKey((s) => `${s.namespace}/${s.hostname}`))
    .map((s) => [s.namespace, s.name, orNone(s.vips.join(',')), orNone(s.ports.map(portText).join(',')), `${s.healthyEndpoints}/${s.endpoints}`, orNone(s.waypoint ?? '')]);
  return table(['NAMESPACE', 'SERVICE NAME', 'VIPS', 'PORTS', 'ENDPOINTS', 'WAYPOINT'], rows);
}

export function policiesTable(policies: readonly PolicyView[]): string {
  const rows = [...policies]
    .sort(byKey((p) => `${p.namespace}/${p.name}`))
    .map((p) => [p.namespace, p.name, p.action, p.scope, String(p.rules), p.dryRun ? 'yes' : 'no']);
  return table(['NAMESPACE', 'POLICY NAME', 'ACTION', 'SCOPE', 'RULES', 'DRY RUN'], rows);
}

/** The certificates table, then each identity's chain (leaf first) or its error. */
export function certsTable(certificates: readonly CertificateView[]): string {
  const sorted = [...certificates].sort(byKey((c) => c.identity));
  const summary = table(
    ['IDENTITY', 'STATE', 'SERIAL', 'NOT AFTER', 'RENEW AT'],
    sorted.map((c) => [c.identity, c.state, c.serialNumber ?? '-', c.notAfter ?? '-', c.renewAt ?? '-']),
  );
  const details = sorted
    .filter((c) => c.chain.length || c.error)
    .map((c) => {
      const lines = [`${c.identity}:`];
      if (c.error) lines.push(`  error: ${c.error}`);
      c.chain.forEach((cert, i) => {
        lines.push(`  [${i}] subject: ${cert.subject}`);
        lines.push(`      issuer:  ${cert.issuer}`);
        if (cert.uriSans.length) lines.push(`      URI SANs: ${cert.uriSans.join(', ')}`);
        lines.push(`      valid: ${cert.notBefore} .. ${cert.notAfter}`);
      });
      return lines.join('\n');
    });
  return [summary, ...details].join('\n\n');
}

export function summaryLines(dump: ConfigDump, pod: string): string {
  const cp = dump.controlPlane;
  const state = cp.connected ? 'connected' : 'NOT connected';
  return [
    `ztunnel ${pod} on node ${dump.node} (cluster ${dump.clusterId}, network ${dump.network || '(none)'})`,
    `control plane ${cp.address}: ${state}${cp.lastUpdate ? `, last update ${cp.lastUpdate}` : ''}${cp.lastError ? `, last error: ${cp.lastError}` : ''}`,
  ].join('\n');
}

export function renderView(dump: ConfigDump, view: View, pod: string): string {
  switch (view) {
    case 'workloads':
      return workloadsTable(dump.workloads);
    case 'services':
      return servicesTable(dump.services);
    case 'policies':
      return policiesTable(dump.policies);
    case 'certs':
      return certsTable(dump.certificates);
    case 'all':
      return [
        summaryLines(dump, pod),
        `WORKLOADS\n${workloadsTable(dump.workloads)}`,
        `SERVICES\n${servicesTable(dump.services)}`,
        `POLICIES\n${policiesTable(dump.policies)}`,
        `CERTIFICATES\n${certsTable(dump.certificates)}`,
      ].join('\n\n');
  }
}

/** The JSON for `-o json`: the part of the dump the view shows (all of it for `all`). */
export function viewJson(dump: ConfigDump, view: View): unknown {
  switch (view) {
    case 'workloads':
      return dump.workloads;
    case 'services':
      return dump.services;
    case 'policies':
      return dump.policies;
    case 'certs':
      return dump.certificates;
    case 'all':
      return dump;
  }
}
