import { TunnelProtocol, WorkloadStatus, type Workload } from '../../gen/istio/workload/workload_pb.js';
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

/** How a network gateway named by hostname is chosen among the workloads behind that name. */
export interface GatewayChooser {
  /** The workloads backing a service, by resource name `<ns>/<hostname>`. */
  endpointsOf(serviceKey: string): readonly Workload[];
  /** `<address>:<port>` of gateways that failed recently: used only when no other gateway is left. */
  avoid?: ReadonlySet<string>;
  random: () => number;
}

/**
 * Endpoints on the source's network (the same network name, whatever the cluster) are dialled by
 * address; endpoints on another network only through their `network_gateway`, in double HBONE, so
 * they must speak HBONE and the gateway must be a known workload (its identity is what the outer
 * tunnel expects).
 */
export function reachabilityOf(endpoint: Endpoint, sourceNetwork: string, family: 4 | 6, lookup: WorkloadLookup, chooser?: GatewayChooser): Reachability {
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
  if (destination.case === 'hostname') {
    const { namespace, hostname } = destination.value;
    const port = gateway.hboneMtlsPort || HBONE_PORT;
    const chosen = chooser && chooseGateway(chooser, `${namespace}/${hostname}`, endpoint.network, port);
    if (!chosen) return { kind: 'unusable', why: `on network ${endpoint.network} whose network gateway ${namespace}/${hostname} has no healthy gateway` };
    return { kind: 'gateway', gateway: chosen };
  }
  if (destination.case !== 'address') return { kind: 'unusable', why: `on network ${endpoint.network} whose network gateway has no address` };
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

/**
 * One of the gateways behind a gateway hostname, at random so connections spread over them; gateways
 * in the avoid set are skipped while another one is left.
 */
function chooseGateway(chooser: GatewayChooser, serviceKey: string, network: string, port: number): NetworkGatewayTarget | undefined {
  const targets: NetworkGatewayTarget[] = [];
  for (const workload of chooser.endpointsOf(serviceKey)) {
    if (workload.status !== WorkloadStatus.HEALTHY || workload.addresses.length === 0) continue;
    const address = bytesToIp(workload.addresses[0]!);
    targets.push({ address, port, network: workload.network || network, identities: [spiffeUri(identityOf(workload))] });
  }
  const preferred = targets.filter((target) => !chooser.avoid?.has(`${target.address}:${target.port}`));
  const pool = preferred.length > 0 ? preferred : targets;
  if (pool.length === 0) return undefined;
  return pool[Math.min(pool.length - 1, Math.floor(chooser.random() * pool.length))];
}
