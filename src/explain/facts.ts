/** Workloads, endpoints and load-balancing settings in the words and shapes the explanation uses. */
import {
  LoadBalancing_HealthPolicy,
  LoadBalancing_Mode,
  LoadBalancing_Scope,
  NetworkMode,
  TunnelProtocol,
  WorkloadStatus,
  type LoadBalancing,
  type Workload,
} from '../gen/istio/workload/workload_pb.js';
import { identityOf, spiffeUri } from '../api/identity.js';
import { bytesToIp } from '../api/ip.js';
import type { EndpointEvaluation } from '../ztunnel/state/load-balancer.js';
import type { EndpointFacts, ServiceFacts, WorkloadFacts } from './types.js';

export function workloadLabel(workload: Workload): string {
  return workload.name ? `${workload.namespace}/${workload.name}` : workload.uid;
}

export function localityText(workload: Workload): string {
  const { region = '', zone = '', subzone = '' } = workload.locality ?? {};
  return [region, zone, subzone].filter(Boolean).join('/');
}

export function workloadFacts(workload: Workload, localNetwork: string): WorkloadFacts {
  return {
    name: workloadLabel(workload),
    uid: workload.uid,
    addresses: workload.addresses.map((bytes) => bytesToIp(bytes)),
    node: workload.node,
    cluster: workload.clusterId,
    network: workload.network || localNetwork,
    locality: localityText(workload),
    identity: spiffeUri(identityOf(workload)),
    protocol: workload.tunnelProtocol === TunnelProtocol.HBONE ? 'HBONE' : 'NONE',
    hostNetwork: workload.networkMode === NetworkMode.HOST_NETWORK,
    status: workload.status === WorkloadStatus.HEALTHY ? 'Healthy' : 'Unhealthy',
  };
}

const scopeName = (scope: LoadBalancing_Scope) => LoadBalancing_Scope[scope] ?? String(scope);
const NETWORK_REGION_ZONE = ['NETWORK', 'REGION', 'ZONE'];
const SAME_NODE = ['NETWORK', 'REGION', 'ZONE', 'SUBZONE', 'NODE'];

/** The Kubernetes setting the control plane translates into these preferences (DESIGN §4), when one does. */
function trafficDistributionOf(mode: LoadBalancing_Mode, preferences: string[]): string | undefined {
  const is = (expected: string[]) => preferences.join() === expected.join();
  if (mode === LoadBalancing_Mode.FAILOVER && is(NETWORK_REGION_ZONE)) return 'PreferClose';
  if (mode === LoadBalancing_Mode.FAILOVER && is(SAME_NODE)) return 'PreferSameNode';
  if (mode === LoadBalancing_Mode.STRICT && is(['NODE'])) return 'internalTrafficPolicy: Local';
  return undefined;
}

function loadBalancingSummary(loadBalancing: LoadBalancing | undefined): string {
  const mode = loadBalancing?.mode ?? LoadBalancing_Mode.UNSPECIFIED_MODE;
  const preferences = (loadBalancing?.routingPreference ?? []).map(scopeName);
  const health = loadBalancing?.healthPolicy === LoadBalancing_HealthPolicy.ALLOW_ALL ? '; unhealthy endpoints are used too (ALLOW_ALL)' : '';
  const origin = trafficDistributionOf(mode, preferences);
  const prefix = origin ? `${origin} → ` : '';
  switch (mode) {
    case LoadBalancing_Mode.FAILOVER:
      return `${prefix}FAILOVER over ${preferences.join(', ') || '(no preference)'}: the best rank present is used${health}`;
    case LoadBalancing_Mode.STRICT:
      return `${prefix}STRICT over ${preferences.join(', ') || '(no preference)'}: only endpoints matching every preference are used${health}`;
    case LoadBalancing_Mode.PASSTHROUGH:
      return 'PASSTHROUGH: no load balancing, the original address is dialled';
    default:
      return `no traffic distribution: uniform, capacity-weighted over every usable endpoint, remote ones included${health}`;
  }
}

export function loadBalancingFacts(loadBalancing: LoadBalancing | undefined): ServiceFacts['loadBalancing'] {
  return {
    mode: LoadBalancing_Mode[loadBalancing?.mode ?? LoadBalancing_Mode.UNSPECIFIED_MODE] ?? 'UNSPECIFIED_MODE',
    routingPreference: (loadBalancing?.routingPreference ?? []).map(scopeName),
    healthPolicy: LoadBalancing_HealthPolicy[loadBalancing?.healthPolicy ?? LoadBalancing_HealthPolicy.ONLY_HEALTHY] ?? 'ONLY_HEALTHY',
    summary: loadBalancingSummary(loadBalancing),
  };
}

function reachText(evaluation: EndpointEvaluation): string {
  const { reachability } = evaluation;
  switch (reachability.kind) {
    case 'direct':
      return `direct ${reachability.address}`;
    case 'gateway':
      return `gateway ${reachability.gateway.address}:${reachability.gateway.port}`;
    case 'unusable':
      return 'unusable';
  }
}

export function endpointFacts(evaluation: EndpointEvaluation, localNetwork: string): EndpointFacts {
  return {
    workload: workloadFacts(evaluation.endpoint.workload, localNetwork),
    ...(evaluation.targetPort !== undefined ? { targetPort: evaluation.targetPort } : {}),
    reach: reachText(evaluation),
    capacity: evaluation.capacity,
    ...(evaluation.rank !== undefined ? { rank: evaluation.rank } : {}),
    probability: evaluation.probability,
    ...(evaluation.excluded ? { excluded: evaluation.excluded.detail, exclusionKind: evaluation.excluded.kind } : {}),
  };
}
