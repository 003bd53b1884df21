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
import { reachabilityOf, type GatewayChooser, type Reachability, type WorkloadLookup } from './reachability.js';
import type { NetworkGatewayTarget } from './types.js';

/** What endpoint evaluation needs: the service, its endpoints, and the source's place in the mesh. */
export interface EvaluationRequest {
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
  /**
   * Network gateways that recently failed, by {@link gatewayKey}: endpoints behind them are not
   * chosen while another endpoint can be; when every one is behind such a gateway, the set is ignored.
   */
  avoidGateways?: ReadonlySet<string>;
  /** Picks one of the gateways behind a gateway hostname (several gateways per network). */
  gatewayChooser?: GatewayChooser;
}

export interface SelectionRequest extends EvaluationRequest {
  random: () => number;
}

export type Selection =
  /** `address` is the endpoint's own, or its gateway's when `gateway` is set. */
  | { kind: 'selected'; endpoint: Endpoint; address: string; port: number; gateway?: NetworkGatewayTarget }
  | { kind: 'unavailable'; reason: string };

/** Why an endpoint cannot be chosen, in the order the checks run (the first failed check is reported). */
export type ExclusionKind = 'not-serving-port' | 'unhealthy' | 'unreachable' | 'no-capacity' | 'strict-mismatch' | 'avoided-gateway' | 'lower-rank';

export interface Exclusion {
  kind: ExclusionKind;
  /** The reason in words, e.g. "rank 2 below the best rank 4". */
  detail: string;
}

/** One endpoint as load balancing sees it; every field is filled whether or not it is excluded. */
export interface EndpointEvaluation {
  endpoint: Endpoint;
  /** Port to dial on the endpoint for the service port; undefined when it does not serve that port. */
  targetPort: number | undefined;
  healthy: boolean;
  reachability: Reachability;
  /** Relative weight; 0 means never picked. */
  capacity: number;
  /** Routing rank (higher is closer); undefined when the service does not rank (mode neither STRICT nor FAILOVER). */
  rank: number | undefined;
  /** Whether the endpoint is in the set the pick is made from (the best rank present, after the checks). */
  inBestRank: boolean;
  /** Chance of being picked: its capacity over the total capacity of that set; 0 when excluded. */
  probability: number;
  excluded?: Exclusion;
}

export interface EndpointsEvaluation {
  /** Every endpoint, in the order given. */
  endpoints: EndpointEvaluation[];
  /** The endpoints the pick is made from (in the order given), weighted by capacity. Empty when unavailable. */
  chosenFrom: EndpointEvaluation[];
  /** The best rank present among the eligible endpoints, when the service ranks and one is eligible. */
  bestRank?: number;
  /** True when every eligible endpoint was behind an avoided gateway, so the avoid set was ignored. */
  avoidGatewaysIgnored: boolean;
  /** Why no endpoint can be chosen; absent when one can. */
  unavailable?: string;
}

/** Key of a network gateway in {@link EvaluationRequest.avoidGateways}: `<address>:<port>`. */
export function gatewayKey(gateway: Pick<NetworkGatewayTarget, 'address' | 'port'>): string {
  return `${gateway.address}:${gateway.port}`;
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
      // Node names repeat across clusters: the same node is the same name in the same cluster.
      return source.node === endpoint.workload.node && source.clusterId === endpoint.workload.clusterId;
    case LoadBalancing_Scope.CLUSTER:
      return source.clusterId === endpoint.workload.clusterId;
    case LoadBalancing_Scope.NETWORK:
      return sourceNetwork === endpoint.network;
    default:
      return false;
  }
}

/** Rank of an endpoint before STRICT is applied, and whether it matched every preference (what STRICT requires). */
function rankOf(loadBalancing: LoadBalancing, source: Workload, sourceNetwork: string, endpoint: Endpoint): { rank: number; matchesEvery: boolean } {
  const preferences = loadBalancing.routingPreference;
  const networkFirst = preferences[0] === LoadBalancing_Scope.NETWORK;
  let matched = 0;
  let bonus = 0;
  for (const scope of preferences) {
    const matches = matchesScope(scope, source, sourceNetwork, endpoint);
    if (scope === LoadBalancing_Scope.NETWORK && networkFirst) {
      if (!matches) continue;
      bonus = preferences.length - 1;
    }
    if (!matches) break;
    matched += 1;
  }
  return { rank: matched + bonus, matchesEvery: matched === preferences.length };
}

/**
 * ztunnel's rank: the number of preferences matched in order, stopping at the first miss. When NETWORK
 * is the first preference, an endpoint on another network skips it and is ranked on the remaining
 * scopes, below every same-network endpoint (which gets a bonus of `preferences - 1`); that lets
 * cross-network failover still prefer the closest remote locality.
 * Returns undefined when STRICT drops the endpoint.
 */
export function routingRank(loadBalancing: LoadBalancing, source: Workload, sourceNetwork: string, endpoint: Endpoint): number | undefined {
  const { rank, matchesEvery } = rankOf(loadBalancing, source, sourceNetwork, endpoint);
  if (loadBalancing.mode === LoadBalancing_Mode.STRICT && !matchesEvery) return undefined;
  return rank;
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

/** The per-endpoint facts and checks that do not depend on the other endpoints. */
function evaluateOne(request: EvaluationRequest, endpoint: Endpoint): EndpointEvaluation {
  const { servicePort, loadBalancing, source, sourceNetwork } = request;
  const targetPort = targetPortOf(endpoint, servicePort);
  const healthy = endpoint.workload.status === WorkloadStatus.HEALTHY;
  const reachability = reachabilityOf(endpoint, sourceNetwork, request.destinationFamily, request.gatewayWorkload, request.gatewayChooser);
  const ranked = usesRanking(loadBalancing) ? rankOf(loadBalancing, source, sourceNetwork, endpoint) : undefined;
  const evaluation: EndpointEvaluation = { endpoint, targetPort, healthy, reachability, capacity: endpoint.capacity, rank: ranked?.rank, inBestRank: false, probability: 0 };
  const exclude = (kind: ExclusionKind, detail: string) => ({ ...evaluation, excluded: { kind, detail } });
  if (targetPort === undefined) {
    return exclude('not-serving-port', `does not serve port ${servicePort.servicePort} (no port mapping for it, and the service's target port is not a number)`);
  }
  if (!healthy && loadBalancing?.healthPolicy !== LoadBalancing_HealthPolicy.ALLOW_ALL) return exclude('unhealthy', 'unhealthy');
  if (reachability.kind === 'unusable') return exclude('unreachable', reachability.why);
  // Capacity 0 means "never": excluded before ranking so it cannot hold the best rank and block failover.
  if (endpoint.capacity <= 0) return exclude('no-capacity', 'capacity 0');
  if (loadBalancing?.mode === LoadBalancing_Mode.STRICT && ranked && !ranked.matchesEvery) {
    return exclude('strict-mismatch', `does not match every routing preference [${scopeNames(loadBalancing)}] (STRICT)`);
  }
  return evaluation;
}

function avoidedGateway(evaluation: EndpointEvaluation, avoid: ReadonlySet<string> | undefined): string | undefined {
  if (!avoid?.size || evaluation.reachability.kind !== 'gateway') return undefined;
  const key = gatewayKey(evaluation.reachability.gateway);
  return avoid.has(key) ? key : undefined;
}

/** Why nothing can be chosen, in words, from the first check that left no endpoint. */
function unavailableReason(request: EvaluationRequest, evaluations: readonly EndpointEvaluation[]): string {
  const service = `service ${request.serviceName}`;
  const port = request.servicePort.servicePort;
  if (evaluations.length === 0) return `${service} has no endpoints`;
  const failedAt = (kinds: ExclusionKind[]) => evaluations.filter((e) => !e.excluded || !kinds.includes(e.excluded.kind));
  const serving = failedAt(['not-serving-port']);
  if (serving.length === 0) return `${service} has ${plural(evaluations.length, 'endpoint')}, none serving port ${port}`;
  const healthy = failedAt(['not-serving-port', 'unhealthy']);
  if (healthy.length === 0) return `${service} has ${plural(serving.length, 'endpoint')} for port ${port}, none healthy`;
  const usable = failedAt(['not-serving-port', 'unhealthy', 'unreachable']);
  if (usable.length === 0) {
    const whys = new Map<string, number>();
    for (const { reachability } of healthy) if (reachability.kind === 'unusable') whys.set(reachability.why, (whys.get(reachability.why) ?? 0) + 1);
    const counted = [...whys].map(([why, count]) => `${count} ${why}`).join('; ');
    return `${service} has ${plural(healthy.length, 'healthy endpoint')} for port ${port}, none reachable from network ${request.sourceNetwork}: ${counted}`;
  }
  const weighted = failedAt(['not-serving-port', 'unhealthy', 'unreachable', 'no-capacity']);
  if (weighted.length === 0) return `${service}: every usable endpoint for port ${port} has capacity 0`;
  const preferences = request.loadBalancing ? scopeNames(request.loadBalancing) : '';
  return `${service}: none of ${plural(weighted.length, 'usable endpoint')} for port ${port} matches every routing preference [${preferences}] (STRICT)`;
}

/**
 * Every endpoint of a service as load balancing sees it for one connection: its target port, health,
 * reachability, capacity and rank, why it is excluded, and its chance of being picked. Checks run in
 * this order: serves the port, healthy (unless ALLOW_ALL), reachable from the source's network,
 * capacity above 0, matches every preference (STRICT), not behind an avoided gateway (unless all
 * are), best rank present (STRICT or FAILOVER).
 */
export function evaluateEndpoints(request: EvaluationRequest): EndpointsEvaluation {
  const evaluations = request.endpoints.map((endpoint) => evaluateOne(request, endpoint));
  const eligible = evaluations.filter((evaluation) => !evaluation.excluded);
  const notAvoided = eligible.filter((evaluation) => avoidedGateway(evaluation, request.avoidGateways) === undefined);
  const avoidGatewaysIgnored = notAvoided.length === 0 && eligible.length > 0 && (request.avoidGateways?.size ?? 0) > 0;
  const pool = avoidGatewaysIgnored ? eligible : notAvoided;
  if (!avoidGatewaysIgnored) {
    for (const evaluation of eligible) {
      const key = avoidedGateway(evaluation, request.avoidGateways);
      if (key !== undefined) evaluation.excluded = { kind: 'avoided-gateway', detail: `behind network gateway ${key}, which recently failed` };
    }
  }

  let bestRank: number | undefined;
  for (const { rank } of pool) if (rank !== undefined && (bestRank === undefined || rank > bestRank)) bestRank = rank;
  const chosenFrom: EndpointEvaluation[] = [];
  for (const evaluation of pool) {
    if (bestRank !== undefined && evaluation.rank !== undefined && evaluation.rank < bestRank) {
      evaluation.excluded = { kind: 'lower-rank', detail: `rank ${evaluation.rank}, below the best rank ${bestRank} present` };
    } else {
      chosenFrom.push(evaluation);
    }
  }
  let totalCapacity = 0;
  for (const evaluation of chosenFrom) totalCapacity += evaluation.capacity;
  for (const evaluation of chosenFrom) {
    evaluation.inBestRank = true;
    evaluation.probability = evaluation.capacity / totalCapacity;
  }
  return {
    endpoints: evaluations,
    chosenFrom,
    ...(bestRank !== undefined ? { bestRank } : {}),
    avoidGatewaysIgnored,
    ...(chosenFrom.length === 0 ? { unavailable: unavailableReason(request, evaluations) } : {}),
  };
}

/** Picks the endpoint of a service a connection goes to, or says why there is none. */
export function selectEndpoint(request: SelectionRequest): Selection {
  const evaluation = evaluateEndpoints(request);
  if (evaluation.unavailable !== undefined) return { kind: 'unavailable', reason: evaluation.unavailable };
  const chosen = pickWeighted(evaluation.chosenFrom, (candidate) => candidate.capacity, request.random);
  return selectionOf(chosen);
}

/** The selection a chosen, reachable endpoint stands for. */
export function selectionOf(chosen: EndpointEvaluation): Selection {
  const { reachability, targetPort, endpoint } = chosen;
  if (targetPort === undefined || reachability.kind === 'unusable') {
    return { kind: 'unavailable', reason: chosen.excluded?.detail ?? `endpoint ${endpoint.workloadName} cannot be used` };
  }
  if (reachability.kind === 'gateway') return { kind: 'selected', endpoint, address: reachability.gateway.address, port: targetPort, gateway: reachability.gateway };
  return { kind: 'selected', endpoint, address: reachability.address, port: targetPort };
}
