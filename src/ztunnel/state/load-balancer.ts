import {
  LoadBalancing_HealthPolicy,
  LoadBalancing_Mode,
  LoadBalancing_Scope,
  WorkloadStatus,
  type LoadBalancing,
  type Port,
  type Workload,
} from '../../gen/istio/workload/workload_pb.js';
import type { Endpoint } from './endpoints.js';
import { reachabilityOf, type WorkloadLookup } from './reachability.js';
import type { NetworkGatewayTarget } from './types.js';

export interface SelectionRequest {
  source: Workload;
  sourceNetwork: string;
  /** Resource name of the service, for messages. */
  serviceName: string;
  loadBalancing: LoadBalancing | undefined;
  /** The service's entry for the port the client dialled. */
  servicePort: Port;
  endpoints: Endpoint[];
  /** Family of the dialled VIP: an endpoint's address of the same family is preferred. */
  destinationFamily: 4 | 6;
  /** The workload at a network gateway's address, for endpoints on other networks. */
  gatewayWorkload: WorkloadLookup;
  random: () => number;
}

export type Selection =
  /** `address` is the endpoint's own, or its gateway's when `gateway` is set. */
  | { kind: 'selected'; endpoint: Endpoint; address: string; port: number; gateway?: NetworkGatewayTarget }
  | { kind: 'unavailable'; reason: string };

interface Candidate {
  endpoint: Endpoint;
  address: string;
  port: number;
  gateway?: NetworkGatewayTarget;
}

/**
 * The port to dial on an endpoint for a service port: the workload's own mapping, else the service's
 * numeric target port, else the service port itself. Without a mapping and without a service target
 * port (a named targetPort the pod lacks) the endpoint does not serve the port, as in ztunnel.
 */
function targetPortOf(endpoint: Endpoint, servicePort: Port): number | undefined {
  return targetPortFor(endpoint.targetPorts.get(servicePort.servicePort), servicePort);
}

/** {@link targetPortOf} given the workload's own mapping for the service port (undefined when it has none). */
export function targetPortFor(mapped: number | undefined, servicePort: Port): number | undefined {
  if (mapped !== undefined) return mapped || servicePort.targetPort || servicePort.servicePort;
  return servicePort.targetPort || undefined;
}

/** Whether an endpoint matches the source for one routing scope; a locality level also requires the broader levels. */
function matchesScope(scope: LoadBalancing_Scope, source: Workload, sourceNetwork: string, endpoint: Endpoint): boolean {
  const here = source.locality;
  const there = endpoint.workload.locality;
  const sameRegion = (here?.region ?? '') === (there?.region ?? '');
  const sameZone = sameRegion && (here?.zone ?? '') === (there?.zone ?? '');
  switch (scope) {
    case LoadBalancing_Scope.REGION:
      return sameRegion;
    case LoadBalancing_Scope.ZONE:
      return sameZone;
    case LoadBalancing_Scope.SUBZONE:
      return sameZone && (here?.subzone ?? '') === (there?.subzone ?? '');
    case LoadBalancing_Scope.NODE:
      return source.node === endpoint.workload.node;
    case LoadBalancing_Scope.CLUSTER:
      return source.clusterId === endpoint.workload.clusterId;
    case LoadBalancing_Scope.NETWORK:
      return sourceNetwork === endpoint.network;
    default:
      return false;
  }
}

/**
 * ztunnel's rank: the number of preferences matched in order, stopping at the first miss. When NETWORK
 * is the first preference, an endpoint on another network skips it and is ranked on the remaining
 * scopes, below every same-network endpoint (which gets a bonus of `preferences - 1`); that lets
 * cross-network failover still prefer the closest remote locality.
 * Returns undefined when STRICT drops the endpoint.
 */
export function routingRank(loadBalancing: LoadBalancing, source: Workload, sourceNetwork: string, endpoint: Endpoint): number | undefined {
  const preferences = loadBalancing.routingPreference;
  const networkFirst = preferences[0] === LoadBalancing_Scope.NETWORK;
  let rank = 0;
  let bonus = 0;
  for (const scope of preferences) {
    const matched = matchesScope(scope, source, sourceNetwork, endpoint);
    if (scope === LoadBalancing_Scope.NETWORK && networkFirst) {
      if (!matched) continue;
      bonus = preferences.length - 1;
    }
    if (!matched) break;
    rank += 1;
  }
  if (loadBalancing.mode === LoadBalancing_Mode.STRICT && rank !== preferences.length) return undefined;
  return rank + bonus;
}

function usesRanking(loadBalancing: LoadBalancing | undefined): loadBalancing is LoadBalancing {
  return loadBalancing?.mode === LoadBalancing_Mode.STRICT || loadBalancing?.mode === LoadBalancing_Mode.FAILOVER;
}

function scopeNames(loadBalancing: LoadBalancing): string {
  return loadBalancing.routingPreference.map((scope) => LoadBalancing_Scope[scope] ?? String(scope)).join(', ');
}

/** Picks one of (non-empty) candidates with probability proportional to its weight. */
export function pickWeighted<T>(candidates: readonly T[], weightOf: (candidate: T) => number, random: () => number): T {
  let total = 0;
  for (const candidate of candidates) total += weightOf(candidate);
  let point = random() * total;
  for (const candidate of candidates) {
    point -= weightOf(candidate);
    if (point < 0) return candidate;
  }
  // random() returned 1 or rounding left a remainder: the last candidate owns the end of the range.
  return candidates[candidates.length - 1]!;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** Picks the endpoint of a service a connection goes to, or says why there is none. */
export function selectEndpoint(request: SelectionRequest): Selection {
  const { endpoints, servicePort, loadBalancing, source, sourceNetwork } = request;
  const service = `service ${request.serviceName}`;
  const port = servicePort.servicePort;
  const unavailable = (reason: string): Selection => ({ kind: 'unavailable', reason });
  if (endpoints.length === 0) return unavailable(`${service} has no endpoints`);

  const allowUnhealthy = loadBalancing?.healthPolicy === LoadBalancing_HealthPolicy.ALLOW_ALL;
  let servingPort = 0;
  let healthy = 0;
  const unusable = new Map<string, number>();
  const usable: Candidate[] = [];
  for (const endpoint of endpoints) {
    const targetPort = targetPortOf(endpoint, servicePort);
    if (targetPort === undefined) continue;
    servingPort += 1;
    if (!allowUnhealthy && endpoint.workload.status !== WorkloadStatus.HEALTHY) continue;
    healthy += 1;
    const reach = reachabilityOf(endpoint, sourceNetwork, request.destinationFamily, request.gatewayWorkload);
    if (reach.kind === 'unusable') {
      unusable.set(reach.why, (unusable.get(reach.why) ?? 0) + 1);
      continue;
    }
    if (reach.kind === 'gateway') usable.push({ endpoint, address: reach.gateway.address, port: targetPort, gateway: reach.gateway });
    else usable.push({ endpoint, address: reach.address, port: targetPort });
  }
  if (servingPort === 0) return unavailable(`${service} has ${plural(endpoints.length, 'endpoint')}, none serving port ${port}`);
  if (healthy === 0) return unavailable(`${service} has ${plural(servingPort, 'endpoint')} for port ${port}, none healthy`);
  if (usable.length === 0) {
    const whys = [...unusable].map(([why, count]) => `${count} ${why}`).join('; ');
    return unavailable(`${service} has ${plural(healthy, 'healthy endpoint')} for port ${port}, none reachable from network ${sourceNetwork}: ${whys}`);
  }

  // Capacity 0 means "never": drop those before ranking so they cannot hold the best rank and block failover.
  const weighted = usable.filter((candidate) => candidate.endpoint.capacity > 0);
  if (weighted.length === 0) return unavailable(`${service}: every usable endpoint for port ${port} has capacity 0`);

  let chosenFrom = weighted;
  if (usesRanking(loadBalancing)) {
    let best = -1;
    let bestCandidates: Candidate[] = [];
    for (const candidate of weighted) {
      const rank = routingRank(loadBalancing, source, sourceNetwork, candidate.endpoint);
      if (rank === undefined || rank < best) continue;
      if (rank > best) {
        best = rank;
        bestCandidates = [];
      }
      bestCandidates.push(candidate);
    }
    if (bestCandidates.length === 0) {
      return unavailable(
        `${service}: none of ${plural(weighted.length, 'usable endpoint')} for port ${port} matches every routing preference [${scopeNames(loadBalancing)}] (STRICT)`,
      );
    }
    chosenFrom = bestCandidates;
  }
  const chosen = pickWeighted(chosenFrom, (candidate) => candidate.endpoint.capacity, request.random);
  return { kind: 'selected', endpoint: chosen.endpoint, address: chosen.address, port: chosen.port, gateway: chosen.gateway };
}
