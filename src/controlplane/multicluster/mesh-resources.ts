import { createHash } from 'node:crypto';
import { clone, create } from '@bufbuild/protobuf';

import { bytesToIp, ipToBytes } from '../../api/ip.js';
import { DEFAULT_TRUST_DOMAIN, HBONE_PORT } from '../../api/resources.js';
import {
  AddressSchema,
  GatewayAddressSchema,
  NamespacedHostnameSchema,
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

/**
 * The service standing for every east-west gateway of a network: synthetic workloads name it as
 * their `network_gateway` (by hostname), so ztunnel spreads over the network's gateways and fails
 * over between them; the gateway workloads are its endpoints.
 */
export function networkGatewayHostname(network: string): string {
  return `${network}.east-west.ambit.internal`;
}

/** `<system ns>/<network>.east-west.ambit.internal`. */
export function networkGatewayServiceKey(systemNamespace: string, network: string): string {
  return `${systemNamespace}/${networkGatewayHostname(network)}`;
}

export function buildNetworkGatewayService(network: string, systemNamespace: string): Service {
  return create(ServiceSchema, {
    name: `east-west-${network}`,
    namespace: systemNamespace,
    hostname: networkGatewayHostname(network),
    ports: [create(PortSchema, { servicePort: HBONE_PORT, targetPort: HBONE_PORT })],
  });
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
export function buildGatewayWorkload(gateway: GatewayInfo, trustDomain: string, systemNamespace: string): Workload {
  const hbonePorts = create(PortListSchema, { ports: [create(PortSchema, { servicePort: HBONE_PORT, targetPort: HBONE_PORT })] });
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
    status: gateway.programmed ? WorkloadStatus.HEALTHY : WorkloadStatus.UNHEALTHY,
    clusterId: gateway.clusterId,
    services: { [networkGatewayServiceKey(systemNamespace, gateway.network)]: hbonePorts },
  });
}

export interface SyntheticWorkloadInput {
  network: string;
  serviceKey: string;
  /** Namespace of the service standing for the network's gateways. */
  systemNamespace: string;
  /** The service's endpoints in that network (pod workloads of any cluster), in a stable order. */
  endpoints: readonly Workload[];
  /** The service as defined in that network's clusters, for its ports when it has no endpoint. */
  services: readonly Service[];
}

/**
 * One workload for all endpoints of a service in another network, reached through that network's
 * east-west gateways. Its identity is the one the inner tunnel expects from the destination.
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
        case: 'hostname',
        value: create(NamespacedHostnameSchema, { namespace: input.systemNamespace, hostname: networkGatewayHostname(input.network) }),
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

export interface PodSyntheticInput {
  /** A pod workload of another network with its own DNS name (`hostname`). */
  pod: Workload;
  /** Its ports in the headless service named like its subdomain. */
  ports: PortList;
  systemNamespace: string;
  localNetwork: string;
}

/** `<network>/SyntheticPod/<cluster>/<ns>/<name>`. */
export function podSyntheticWorkloadUid(pod: Pick<Workload, 'network' | 'clusterId' | 'namespace' | 'name'>): string {
  return `${pod.network}/SyntheticPod/${pod.clusterId}/${pod.namespace}/${pod.name}`;
}

/**
 * A StatefulSet pod of another network by its own name: a service named like the pod (its VIP,
 * allocated on the local network, is what ztunnel's DNS answers) whose only endpoint is a workload
 * standing for the pod behind its network's gateways. Ports are the pod's own: clients of a
 * headless service dial the pod's port, so service port and target port are the same.
 */
export function buildPodSynthetic(input: PodSyntheticInput): { service: Service; workload: Workload } {
  const { pod } = input;
  const serviceKey = `${pod.namespace}/${pod.hostname}`;
  const podPorts = [...new Set(input.ports.ports.map((port) => port.targetPort || port.servicePort))].sort((a, b) => a - b);
  const ports = podPorts.map((port) => create(PortSchema, { servicePort: port, targetPort: port }));
  const service = create(ServiceSchema, {
    name: pod.hostname.split('.', 1)[0]!,
    namespace: pod.namespace,
    hostname: pod.hostname,
    addresses: [create(NetworkAddressSchema, { network: input.localNetwork, address: ipToBytes(allocatedVip(pod.hostname)) })],
    ports,
  });
  const workload = create(WorkloadSchema, {
    uid: podSyntheticWorkloadUid(pod),
    name: pod.name,
    namespace: pod.namespace,
    hostname: pod.hostname,
    network: pod.network,
    tunnelProtocol: TunnelProtocol.HBONE,
    trustDomain: pod.trustDomain,
    serviceAccount: pod.serviceAccount,
    networkGateway: create(GatewayAddressSchema, {
      destination: {
        case: 'hostname',
        value: create(NamespacedHostnameSchema, { namespace: input.systemNamespace, hostname: networkGatewayHostname(pod.network) }),
      },
      hboneMtlsPort: HBONE_PORT,
    }),
    services: { [serviceKey]: create(PortListSchema, { ports: ports.map((port) => clone(PortSchema, port)) }) },
    status: pod.status,
    capacity: 1,
    clusterId: pod.clusterId,
    locality: pod.locality,
    canonicalName: pod.canonicalName,
    canonicalRevision: pod.canonicalRevision,
    workloadName: pod.workloadName,
    workloadType: pod.workloadType,
  });
  return { service, workload };
}
