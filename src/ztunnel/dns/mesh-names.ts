import { WorkloadStatus, type Service, type Workload } from '../../gen/istio/workload/workload_pb.js';
import { bytesToIp } from '../../api/ip.js';

/** What the DNS proxy reads of ztunnel's state. */
export interface MeshNameView {
  servicesByHostname(hostname: string): Service[];
  endpointsOf(serviceName: string): Workload[];
  workloadsByDnsName(hostname: string): Workload[];
}

/**
 * The IPv4 addresses the mesh answers for a name on a network, or undefined to let cluster DNS
 * answer. In order:
 * - a service with a VIP on this network (also VIPs the control plane allocated for services or
 *   StatefulSet pods that only exist elsewhere): its VIPs;
 * - a headless service: its healthy endpoints on this network (pods of every cluster sharing it);
 * - a pod's own name `<hostname>.<subdomain>.<ns>.svc.<domain>` on this network, while the
 *   headless service named like the subdomain is known: the pod's address.
 */
export function meshAddressesOf(state: MeshNameView, hostname: string, network: string): string[] | undefined {
  const services = state.servicesByHostname(hostname);
  const vips = services.flatMap((service) => service.addresses.filter((a) => (a.network || network) === network).flatMap((a) => ipv4(a.address)));
  if (vips.length > 0) return unique(vips);
  const headless = services.filter((service) => service.addresses.length === 0);
  if (headless.length > 0) {
    const endpoints = headless.flatMap((service) => state.endpointsOf(`${service.namespace}/${service.hostname}`));
    const addresses = endpoints.filter((w) => reachableHere(w, network)).flatMap(podIpv4);
    return addresses.length > 0 ? unique(addresses) : undefined;
  }
  const pods = state.workloadsByDnsName(hostname).filter((w) => reachableHere(w, network) && hasHeadlessService(state, w, hostname));
  const addresses = pods.flatMap(podIpv4);
  return addresses.length > 0 ? unique(addresses) : undefined;
}

/** A healthy workload on this network with its own address (not a stand-in behind a gateway). */
function reachableHere(workload: Workload, network: string): boolean {
  return (workload.network || network) === network && !workload.networkGateway && workload.status === WorkloadStatus.HEALTHY;
}

/** Cluster DNS serves a pod's own name only while a headless Service named like its subdomain exists. */
function hasHeadlessService(state: MeshNameView, pod: Workload, hostname: string): boolean {
  const serviceHostname = hostname.slice(hostname.indexOf('.') + 1);
  return state.servicesByHostname(serviceHostname).some((service) => service.namespace === pod.namespace && service.addresses.length === 0);
}

function podIpv4(workload: Workload): string[] {
  return workload.addresses.flatMap(ipv4);
}

function ipv4(bytes: Uint8Array): string[] {
  try {
    const ip = bytesToIp(bytes);
    return ip.includes('.') ? [ip] : [];
  } catch {
    return [];
  }
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
