// Reading waypoint Gateways from the API server's JSON, and the tables of `ambit waypoint list` and `status` (istioctl's columns).
import { REVISION_LABEL, WAYPOINT_FOR, WAYPOINT_FOR_LABEL, WAYPOINT_GATEWAY_CLASS } from '../api/resources.js';

export interface GatewayCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

/** The parts of a Gateway the waypoint commands read. */
export interface GatewayJson {
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  spec?: { gatewayClassName?: string };
  status?: { conditions?: GatewayCondition[] };
}

export interface WaypointRow {
  namespace: string;
  name: string;
  revision: string;
  trafficType: string;
  /** The Programmed condition, when the control plane has written one. */
  programmed?: GatewayCondition;
}

export const isWaypoint = (gateway: GatewayJson): boolean => gateway.spec?.gatewayClassName === WAYPOINT_GATEWAY_CLASS;

export const programmedCondition = (gateway: GatewayJson): GatewayCondition | undefined => gateway.status?.conditions?.find((c) => c.type === 'Programmed');

/** The waypoints among the Gateways (class istio-waypoint only), by namespace then name. */
export function waypointRows(gateways: readonly GatewayJson[]): WaypointRow[] {
  return gateways
    .filter(isWaypoint)
    .map((gateway) => ({
      namespace: gateway.metadata?.namespace ?? '',
      name: gateway.metadata?.name ?? '',
      revision: gateway.metadata?.labels?.[REVISION_LABEL] || 'default',
      // A Gateway without the label serves services (the control plane's default), so say that.
      trafficType: gateway.metadata?.labels?.[WAYPOINT_FOR_LABEL] || WAYPOINT_FOR.service,
      programmed: programmedCondition(gateway),
    }))
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
}

/** Columns padded to the widest cell plus a gap, as Go's tabwriter (padding 5) lays them out for istioctl. */
export function tabulate(rows: readonly string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]! + 5))).join('')).join('\n') + '\n';
}

export const NO_WAYPOINTS = 'No waypoints found.\n';

export function renderList(rows: readonly WaypointRow[], allNamespaces: boolean): string {
  if (!rows.length) return NO_WAYPOINTS;
  const header = ['NAME', 'REVISION', 'TRAFFIC TYPE', 'PROGRAMMED'];
  const cells = rows.map((r) => [r.name, r.revision, r.trafficType, r.programmed?.status ?? 'False']);
  return tabulate(allNamespaces ? [['NAMESPACE', ...header], ...cells.map((c, i) => [rows[i]!.namespace, ...c])] : [header, ...cells]);
}

export function renderStatus(rows: readonly WaypointRow[], allNamespaces: boolean): string {
  if (!rows.length) return NO_WAYPOINTS;
  const header = ['NAME', 'STATUS', 'TYPE', 'REASON', 'MESSAGE'];
  const cells = rows.map((r) => [r.name, r.programmed?.status ?? 'Unknown', 'Programmed', r.programmed?.reason ?? '', r.programmed?.message ?? 'no status written yet']);
  return tabulate(allNamespaces ? [['NAMESPACE', ...header], ...cells.map((c, i) => [rows[i]!.namespace, ...c])] : [header, ...cells]);
}

/** A condition for messages: `Programmed=False (Pending: waiting for …)`. */
export function describeCondition(condition: GatewayCondition | undefined): string {
  if (!condition) return 'no Programmed condition yet (is the ambit control plane installed and running?)';
  const detail = [condition.reason, condition.message].filter(Boolean).join(': ');
  return `${condition.type}=${condition.status}${detail ? ` (${detail})` : ''}`;
}
