// What `ambit waypoint apply|list|delete|status` do against a cluster, given its WaypointKube, a clock and where output goes.
import { DATAPLANE_MODE_AMBIENT, DATAPLANE_MODE_LABEL, USE_WAYPOINT_LABEL, type WaypointFor } from '../api/resources.js';
import type { Clock } from '../multicluster-cli/kube-access.js';
import type { WaypointKube } from './cluster.js';
import { validateWaypointName, waypointGateway, WaypointCliError } from './gateway.js';
import { describeCondition, isWaypoint, NO_WAYPOINTS, programmedCondition, renderList, renderStatus, waypointRows, type WaypointRow } from './tables.js';

export interface WaypointIo {
  clock: Clock;
  /** Results, on stdout in the CLI. */
  out: (line: string) => void;
  /** Warnings and notes, on stderr in the CLI. */
  warn: (line: string) => void;
}

/** How often --wait reads the Gateway, as istioctl. */
export const POLL_INTERVAL_MS = 1000;
export const DEFAULT_WAYPOINT_TIMEOUT_MS = 90_000;

const seconds = (ms: number) => `${ms / 1000}s`;

export interface ApplyOptions {
  namespace: string;
  name?: string;
  for?: WaypointFor;
  enrollNamespace?: boolean;
  overwrite?: boolean;
  wait?: boolean;
  timeoutMs?: number;
}

/** Waits until the Gateway's Programmed condition is True; the timeout error names the Gateway and its last condition. */
export async function waitProgrammed(kube: WaypointKube, namespace: string, name: string, timeoutMs: number, clock: Clock): Promise<void> {
  const deadline = clock.now() + timeoutMs;
  for (;;) {
    const gateway = await kube.getGateway(namespace, name);
    if (!gateway) throw new WaypointCliError(`waypoint ${namespace}/${name} was deleted while waiting for it to be Programmed`);
    const condition = programmedCondition(gateway);
    if (condition?.status === 'True') return;
    if (clock.now() >= deadline) {
      throw new WaypointCliError(`timed out after ${seconds(timeoutMs)} waiting for waypoint ${namespace}/${name} (Gateway of context "${kube.context}") to be Programmed; last condition: ${describeCondition(condition)}`);
    }
    await clock.sleep(POLL_INTERVAL_MS);
  }
}

export async function applyWaypoint(kube: WaypointKube, options: ApplyOptions, io: WaypointIo): Promise<void> {
  const gateway = waypointGateway({ name: options.name, namespace: options.namespace, for: options.for });
  const { name } = gateway.metadata;
  const ns = options.namespace;
  const labels = await kube.namespaceLabels(ns);
  if (options.enrollNamespace) {
    const current = labels[USE_WAYPOINT_LABEL];
    // istioctl warns and stops here; an error (exit 1) tells a script that nothing was done.
    if (current && current !== name && !options.overwrite) {
      throw new WaypointCliError(`namespace ${ns} already uses waypoint "${current}" (${USE_WAYPOINT_LABEL}); add --overwrite to enroll it in "${name}" instead`);
    }
    if (labels[DATAPLANE_MODE_LABEL] !== DATAPLANE_MODE_AMBIENT) {
      io.warn(`namespace ${ns} is not enrolled in ambient; consider \`kubectl label namespace ${ns} ${DATAPLANE_MODE_LABEL}=${DATAPLANE_MODE_AMBIENT}\``);
    }
  }
  await kube.applyGateway(gateway);
  io.out(`waypoint ${ns}/${name} applied`);
  if (options.wait) {
    await waitProgrammed(kube, ns, name, options.timeoutMs ?? DEFAULT_WAYPOINT_TIMEOUT_MS, io.clock);
    io.out(`waypoint ${ns}/${name} is ready!`);
  }
  if (options.enrollNamespace) {
    await kube.labelNamespace(ns, USE_WAYPOINT_LABEL, name);
    io.out(`namespace ${ns} labeled with "${USE_WAYPOINT_LABEL}: ${name}"`);
  }
}

export async function listWaypoints(kube: WaypointKube, options: { namespace: string; allNamespaces?: boolean }): Promise<string> {
  const all = options.allNamespaces ?? false;
  return renderList(waypointRows(await kube.listGateways(all ? undefined : options.namespace)), all);
}

export interface DeleteOptions {
  namespace: string;
  names: string[];
  all?: boolean;
}

/** Names or --all, never both nor neither; names must be valid waypoint names. */
export function checkDeleteTargets(names: readonly string[], all: boolean | undefined): void {
  if (all && names.length) throw new WaypointCliError('give either waypoint names or --all, not both');
  if (!all && !names.length) throw new WaypointCliError('give the name of a waypoint to delete (see `ambit waypoint list`), or --all');
  for (const name of names) validateWaypointName(name, 'waypoint name');
}

/** Deletes the named waypoints (or all of the namespace); Gateways of other classes are never touched. */
export async function deleteWaypoints(kube: WaypointKube, options: DeleteOptions, io: WaypointIo): Promise<void> {
  const ns = options.namespace;
  checkDeleteTargets(options.names, options.all);
  const gateways = await kube.listGateways(ns);
  const waypoints = new Set(waypointRows(gateways).map((r) => r.name));
  const targets = options.all ? [...waypoints] : options.names.filter((n) => waypoints.has(n));
  if (options.all && !targets.length) {
    io.out(NO_WAYPOINTS.trim());
    return;
  }
  for (const name of targets) {
    await kube.deleteGateway(ns, name);
    io.out(`waypoint ${ns}/${name} deleted`);
  }
  const enrolled = (await kube.namespaceLabels(ns))[USE_WAYPOINT_LABEL];
  if (enrolled && targets.includes(enrolled)) {
    io.warn(`namespace ${ns} still has ${USE_WAYPOINT_LABEL}=${enrolled}: its traffic goes directly (L4 only) until a waypoint of that name exists again`);
  }
  const missing = options.names.filter((n) => !waypoints.has(n));
  if (missing.length) {
    const reasons = missing.map((name) => {
      const other = gateways.find((g) => g.metadata?.name === name && !isWaypoint(g));
      return other ? `Gateway ${ns}/${name} is not a waypoint (class ${other.spec?.gatewayClassName ?? 'none'}), not deleted` : `waypoint ${ns}/${name} not found`;
    });
    throw new WaypointCliError(reasons.join('; '));
  }
}

export interface StatusOptions {
  namespace: string;
  allNamespaces?: boolean;
  wait?: boolean;
  timeoutMs?: number;
}

/** The Programmed condition of each waypoint; with wait, once all are Programmed (or the timeout names those that are not). */
export async function waypointStatus(kube: WaypointKube, options: StatusOptions, io: WaypointIo): Promise<string> {
  const all = options.allNamespaces ?? false;
  const read = async () => waypointRows(await kube.listGateways(all ? undefined : options.namespace));
  let rows = await read();
  if (options.wait) {
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAYPOINT_TIMEOUT_MS;
    const deadline = io.clock.now() + timeoutMs;
    const pending = (list: WaypointRow[]) => list.filter((r) => r.programmed?.status !== 'True');
    while (pending(rows).length && io.clock.now() < deadline) {
      await io.clock.sleep(POLL_INTERVAL_MS);
      rows = await read();
    }
    const late = pending(rows);
    if (late.length) {
      io.out(renderStatus(rows, all).trimEnd());
      throw new WaypointCliError(`timed out after ${seconds(timeoutMs)} waiting for ${late.map((r) => `waypoint ${r.namespace}/${r.name} (${describeCondition(r.programmed)})`).join(', ')}`);
    }
  }
  return renderStatus(rows, all);
}
