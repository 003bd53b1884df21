import { createHash } from 'node:crypto';
import { clone, create } from '@bufbuild/protobuf';

import { bytesToIp, ipToBytes } from '../../api/ip.js';
import { DEFAULT_TRUST_DOMAIN, HBONE_PORT } from '../../api/resources.js';
import {
  AddressSchema,
  GatewayAddressSchema,
  NetworkAddressSchema,
  PortListSchema,
  PortSchema,
  ServiceSchema,
  TunnelProtocol,
  WorkloadSchema,
  WorkloadStatus,
  WorkloadType,
  type Address,
  type PortList,
  type Service,
  type Workload,
} from '../../gen/istio/workload/workload_pb.js';
import type { GatewayInfo } from './types.js';

/**
 * The resources the merged mesh view adds to one cluster's registry: east-west gateway workloads,
 * synthetic workloads standing for another network's endpoints, merged global services, and
 * remote pods filtered to their global services. Pure functions of their inputs.
 */

/** `<cluster>/Gateway/<ns>/<name>`. */
export function gatewayWorkloadUid(gateway: Pick<GatewayInfo, 'clusterId' | 'namespace' | 'name'>): string {
  return `${gateway.clusterId}/Gateway/${gateway.namespace}/${gateway.name}`;
}

/** `<network>/SyntheticGateway/<ns>/<hostname>` (the service key is `<ns>/<hostname>`). */
export function syntheticWorkloadUid(network: string, serviceKey: string): string {
  return `${network}/SyntheticGateway/${serviceKey}`;
}

export function workloadAddress(workload: Workload): Address {
  return create(AddressSchema, { type: { case: 'workload', value: workload } });
}

export function serviceAddress(service: Service): Address {
  return create(AddressSchema, { type: { case: 'service', value: service } });
}

/**
 * The workload of an east-west gateway: ztunnel looks it up by IP to learn the identity the outer
 * tunnel must present (the gateway Deployment runs as a ServiceAccount named like the Gateway).
 */
export function buildGatewayWorkload(gateway: GatewayInfo, trustDomain: string): Workload {
  return create(WorkloadSchema, {
    uid: gatewayWorkloadUid(gateway),
    name: gateway.name,
    namespace: gateway.namespace,
    addresses: [ipToBytes(gateway.address)],
    network: gateway.network,
    tunnelProtocol: TunnelProtocol.HBONE,
    trustDomain: trustDomain === DEFAULT_TRUST_DOMAIN ? '' : trustDomain,
    serviceAccount: gateway.name,
    workloadType: WorkloadType.POD,
    workloadName: gateway.name,
    canonicalName: gateway.name,
    status: WorkloadStatus.HEALTHY,
    clusterId: gateway.clusterId,
  });
}

export interface SyntheticWorkloadInput {
  network: string;
  serviceKey: string;
  gateway: GatewayInfo;
  /** The service's endpoints in that network (pod workloads of any cluster), in a stable order. */
  endpoints: readonly Workload[];
  /** The service as defined in that network's clusters, for its ports when it has no endpoint. */
  services: readonly Service[];
}

/**
 * One workload for all endpoints of a service in another network, reached through that network's
 * east-west gateway. Its identity is the one the inner tunnel expects from the destination.
 */
export function buildSyntheticWorkload(input: SyntheticWorkloadInput): Workload {
  const { namespace, name } = splitServiceKey(input.serviceKey);
  const capacity = input.endpoints.filter((endpoint) => endpoint.status === WorkloadStatus.HEALTHY).length;
  const identity = sharedIdentity(input.endpoints, namespace);
  return create(WorkloadSchema, {
    uid: syntheticWorkloadUid(input.network, input.serviceKey),
    name,
    namespace: identity.namespace,
    network: input.network,
    tunnelProtocol: TunnelProtocol.HBONE,
    trustDomain: identity.trustDomain,
    serviceAccount: identity.serviceAccount,
    networkGateway: create(GatewayAddressSchema, {
      destination: {
        case: 'address',
        value: create(NetworkAddressSchema, { network: input.network, address: ipToBytes(input.gateway.address) }),
      },
      hboneMtlsPort: HBONE_PORT,
    }),
    services: { [input.serviceKey]: syntheticPorts(input) },
    status: capacity > 0 ? WorkloadStatus.HEALTHY : WorkloadStatus.UNHEALTHY,
    capacity,
  });
}

/** `<ns>/<name>.<ns>.svc.<suffix>` → namespace and service name. */
export function splitServiceKey(serviceKey: string): { namespace: string; name: string } {
  const slash = serviceKey.indexOf('/');
  const namespace = serviceKey.slice(0, slash);
  const hostname = serviceKey.slice(slash + 1);
  return { namespace, name: hostname.split('.', 1)[0] ?? hostname };
}

/** The endpoints' identity when they all share it; else the service namespace's default account. */
function sharedIdentity(endpoints: readonly Workload[], serviceNamespace: string) {
  const first = endpoints[0];
  if (!first) return { trustDomain: '', serviceAccount: '', namespace: serviceNamespace };
  const sameTrustDomain = endpoints.every((e) => e.trustDomain === first.trustDomain);
  const sameIdentity =
    sameTrustDomain && endpoints.every((e) => e.serviceAccount === first.serviceAccount && e.namespace === first.namespace);
  if (sameIdentity) return { trustDomain: first.trustDomain, serviceAccount: first.serviceAccount, namespace: first.namespace };
  return { trustDomain: sameTrustDomain ? first.trustDomain : '', serviceAccount: '', namespace: serviceNamespace };
}

/** Ports as a healthy endpoint has them (named target ports resolved), else any endpoint, else the Service's. */
function syntheticPorts(input: SyntheticWorkloadInput): PortList {
  const healthy = input.endpoints.find((e) => e.status === WorkloadStatus.HEALTHY && e.services[input.serviceKey]);
  const any = healthy ?? input.endpoints.find((e) => e.services[input.serviceKey]);
  const fromEndpoint = any?.services[input.serviceKey];
  if (fromEndpoint) return clone(PortListSchema, fromEndpoint);
  const service = input.services[0];
  // A named target port (0 in the Service message) is only known on the pods.
  const ports = (service?.ports ?? []).filter((port) => port.targetPort !== 0).map((port) => clone(PortSchema, port));
  return create(PortListSchema, { ports });
}

/**
 * A global service over several clusters: the first definition (the local one when present) with
 * the virtual IPs of every definition, each tagged with its cluster's network.
 */
export function mergeServices(definitions: readonly [Service, ...Service[]]): Service {
  const [base, ...others] = definitions;
  if (others.length === 0) return base;
  const merged = clone(ServiceSchema, base);
  const seen = new Set(merged.addresses.map((a) => `${a.network}/${addressKey(a.address)}`));
  for (const other of others) {
    for (const address of other.addresses) {
      const key = `${address.network}/${addressKey(address.address)}`;
      if (seen.has(key)) continue;
      seen.add(key);
      merged.addresses.push(clone(NetworkAddressSchema, address));
    }
  }
  return merged;
}

/**
 * A virtual IP on the local network for a global service that has no Service (so no ClusterIP)
 * in this cluster: ztunnel captures connections to it and answers its name in DNS. Derived from
 * the hostname, in 240.240.0.0/16 as Istio's auto-allocation, so every control plane agrees.
 */
export function allocatedVip(hostname: string): string {
  const digest = createHash('sha256').update(hostname).digest();
  return `240.240.${digest[0]!}.${1 + (digest[1]! % 254)}`;
}

/** The merged service of a global service that exists only remotely, reachable here by its allocated VIP. */
export function withAllocatedVip(service: Service, localNetwork: string): Service {
  const result = clone(ServiceSchema, service);
  result.addresses.unshift(create(NetworkAddressSchema, { network: localNetwork, address: ipToBytes(allocatedVip(service.hostname)) }));
  return result;
}

function addressKey(bytes: Uint8Array): string {
  try {
    return bytesToIp(bytes);
  } catch {
    return Buffer.from(bytes).toString('hex');
  }
}

/** A remote pod as ztunnels of this cluster see it: only its global services, no policies of its cluster. */
export function filterRemoteWorkload(workload: Workload, serviceKeys: readonly string[]): Workload {
  const filtered = clone(WorkloadSchema, workload);
  filtered.services = {};
  for (const key of serviceKeys) {
    const ports = workload.services[key];
    if (ports) filtered.services[key] = clone(PortListSchema, ports);
  }
  // Authorization names refer to the remote cluster's policies, which are not served here;
  // the remote cluster's own control plane enforces them at the destination.
  filtered.authorizationPolicies = [];
  return filtered;
}
