/**
 * What a `--to` host names, the way a captured pod would find it: an IP address as is; a name through
 * the pod's resolv.conf search list (`<ns>.svc.<domain> svc.<domain> <domain>`, ndots:5) and
 * ztunnel's DNS proxy (its own lookup, meshAddressesOf), which answers the mesh's names with
 * addresses on the pod's network and leaves every other name to the cluster's DNS.
 */
import { isIP } from 'node:net';
import type { Service } from '../gen/istio/workload/workload_pb.js';
import { bytesToIp } from '../api/ip.js';
import { meshAddressesOf } from '../ztunnel/dns/mesh-names.js';
import type { ZtunnelState } from '../ztunnel/state/store.js';

export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

export type HostResolution =
  | { kind: 'address'; ip: string }
  /** A mesh service hostname, answered by ztunnel's DNS proxy with the service's `vip`. */
  | { kind: 'service'; hostname: string; service: Service; vip: string }
  /** A name the DNS proxy answers with pod addresses: a headless service's endpoints, or a pod's own name. */
  | { kind: 'pod-addresses'; hostname: string; addresses: string[] }
  /** A mesh service hostname the DNS proxy has no answer for on the pod's network: the cluster's DNS answers. */
  | { kind: 'service-without-answer'; hostname: string; service: Service }
  /** No name the mesh knows: the cluster's DNS answers, and the connection is not the mesh's to route. */
  | { kind: 'unknown'; tried: string[] };

export interface HostContext {
  sourceNamespace: string;
  /** The source's network: the DNS proxy answers addresses on that network. */
  network: string;
  clusterDomain?: string;
}

const NDOTS = 5;

/** The names a resolver tries for `host`, in order (Kubernetes' resolv.conf: search list, ndots:5). */
export function candidateNames(host: string, sourceNamespace: string, clusterDomain = DEFAULT_CLUSTER_DOMAIN): string[] {
  const name = host.toLowerCase();
  if (name.endsWith('.')) return [name.slice(0, -1)];
  const searched = [`${sourceNamespace}.svc.${clusterDomain}`, `svc.${clusterDomain}`, clusterDomain].map((suffix) => `${name}.${suffix}`);
  const dots = name.split('.').length - 1;
  return dots >= NDOTS ? [name, ...searched] : [...searched, name];
}

function hasVip(service: Service, ip: string): boolean {
  return service.addresses.some((address) => {
    try {
      return bytesToIp(address.address) === ip;
    } catch {
      return false;
    }
  });
}

/** The first name of the search list the mesh answers, as ztunnel's DNS proxy answers it. */
export function resolveHost(state: ZtunnelState, host: string, context: HostContext): HostResolution {
  if (isIP(host)) return { kind: 'address', ip: host };
  const tried = candidateNames(host, context.sourceNamespace, context.clusterDomain);
  for (const hostname of tried) {
    const services = state.servicesByHostname(hostname);
    const addresses = meshAddressesOf(state, hostname, context.network);
    const first = addresses?.[0];
    if (first) {
      const service = services.find((candidate) => hasVip(candidate, first));
      return service ? { kind: 'service', hostname, service, vip: first } : { kind: 'pod-addresses', hostname, addresses: addresses! };
    }
    if (services[0]) return { kind: 'service-without-answer', hostname, service: services[0] };
  }
  return { kind: 'unknown', tried };
}
