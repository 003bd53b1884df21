import { TunnelProtocol, type Workload } from '../../gen/istio/workload/workload_pb.js';
import { identityOf, spiffeUri } from '../../api/identity.js';
import { bytesToIp } from '../../api/ip.js';
import { HBONE_PORT } from '../../api/resources.js';
import { ipFamily } from './addresses.js';
import type { Endpoint } from './endpoints.js';
import type { NetworkGatewayTarget } from './types.js';

/** How a source reaches an endpoint: directly by address, through its network's gateway, or not at all. */
export type Reachability =
  | { kind: 'direct'; address: string }
  | { kind: 'gateway'; gateway: NetworkGatewayTarget }
  | { kind: 'unusable'; why: string };

/** Finds the workload at an address on a network (the gateway's own workload gives its identity). */
export type WorkloadLookup = (ip: string, network: string) => Workload | undefined;

/**
 * Endpoints on the source's network (the same network name, whatever the cluster) are dialled by
 * address; endpoints on another network only through their `network_gateway`, in double HBONE, so
 * they must speak HBONE and the gateway must be a known workload (its identity is what the outer
 * tunnel expects).
 */
export function reachabilityOf(endpoint: Endpoint, sourceNetwork: string, family: 4 | 6, lookup: WorkloadLookup): Reachability {
  if (endpoint.network === sourceNetwork) {
    const address = endpoint.addresses.find((ip) => ipFamily(ip) === family) ?? endpoint.addresses[0];
    return address ? { kind: 'direct', address } : { kind: 'unusable', why: `on network ${endpoint.network} without an address` };
  }
  const gateway = endpoint.workload.networkGateway;
  if (!gateway) return { kind: 'unusable', why: `on network ${endpoint.network} without a network gateway` };
  if (endpoint.workload.tunnelProtocol !== TunnelProtocol.HBONE) {
    return { kind: 'unusable', why: `on network ${endpoint.network} without HBONE, so not reachable through its network gateway` };
  }
  const destination = gateway.destination;
  if (destination.case !== 'address') {
    const named = destination.case === 'hostname' ? ` names hostname ${destination.value.namespace}/${destination.value.hostname}` : ' has no address';
    return { kind: 'unusable', why: `on network ${endpoint.network} whose network gateway${named} (an address is required)` };
  }
  const network = destination.value.network || endpoint.network;
  const ip = bytesToIp(destination.value.address);
  const gatewayWorkload = lookup(ip, network);
  if (!gatewayWorkload) {
    return { kind: 'unusable', why: `on network ${endpoint.network} behind gateway ${ip} (network ${network}) that is not a known workload, so its identity is unknown` };
  }
  return {
    kind: 'gateway',
    gateway: { address: ip, port: gateway.hboneMtlsPort || HBONE_PORT, network, identities: [spiffeUri(identityOf(gatewayWorkload))] },
  };
}
