// Route destinations as both proxies take them: the host qualified, and a DestinationRule subset resolved to the workloads it selects (in every cluster). Pure.
import type { DestinationRule } from './destination-rule.js';
import { qualifyHost } from './hosts.js';
import type { VsDestination } from './istio.js';

export interface DestinationInput {
  destinationRules: readonly DestinationRule[];
  domainSuffix: string;
  serviceExists(hostname: string): boolean;
  /** The endpoints (workload uids, in every cluster) of a service hostname, with their pod labels. */
  endpointsOf(hostname: string): ReadonlyArray<{ uid: string; labels: Readonly<Record<string, string>> }>;
}

const byAge = <T extends { created: number; key: string }>(a: T, b: T) => a.created - b.created || a.key.localeCompare(b.key);

/** The DestinationRule of `hostname`: the oldest naming it. */
export function destinationRuleFor(hostname: string, input: Pick<DestinationInput, 'destinationRules' | 'domainSuffix' | 'serviceExists'>): DestinationRule | undefined {
  return [...input.destinationRules].sort(byAge).find((dr) => qualifyHost(dr.host, dr.namespace, input) === hostname);
}

const selects = (selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

/** A route destination (or mirror) of object `source` (`<Kind>/<ns>/<name>`, namespace `namespace`); problems name `field`. */
export function destinationOf(d: VsDestination, source: { key: string; namespace: string }, input: DestinationInput, problems: string[], field: string) {
  const hostname = qualifyHost(d.host, source.namespace, input);
  if (!input.serviceExists(hostname)) problems.push(`${source.key}: ${field}.destination.host: no service ${hostname} in the mesh`);
  const destination = { hostname, port: d.port, weight: d.weight };
  if (!d.subset) return destination;
  const subset = destinationRuleFor(hostname, input)?.subsets.find((s) => s.name === d.subset);
  if (!subset) {
    problems.push(`${source.key}: ${field}.destination.subset: no DestinationRule of ${hostname} has a subset "${d.subset}"`);
    return { ...destination, subset: d.subset, workloads: [] };
  }
  // A uid may stand for several pods (another network's, behind its gateways): in the subset when
  // any of them is; said when only some are, since that network's gateway then picks among all.
  const members = new Map<string, { matching: number; total: number }>();
  for (const endpoint of input.endpointsOf(hostname)) {
    const entry = members.get(endpoint.uid) ?? { matching: 0, total: 0 };
    entry.total++;
    if (selects(subset.labels, endpoint.labels)) entry.matching++;
    members.set(endpoint.uid, entry);
  }
  const workloads = [...members].filter(([, m]) => m.matching > 0).map(([uid]) => uid).sort();
  for (const [uid, m] of members) {
    if (m.matching > 0 && m.matching < m.total) problems.push(`${source.key}: ${field}.destination.subset: subset "${d.subset}" has ${m.matching} of the ${m.total} endpoints that ${uid} stands for (another network, behind its gateway): requests for the subset may reach the others there`);
  }
  return { ...destination, subset: d.subset, workloads };
}

