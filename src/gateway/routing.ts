import { isIP } from 'node:net';
import { create } from '@bufbuild/protobuf';
import {
  LoadBalancing_HealthPolicy,
  PortSchema,
  TunnelProtocol,
  WorkloadStatus,
  type Port,
  type Service,
  type Workload,
} from '../gen/istio/workload/workload_pb.js';
import { bytesToIp } from '../api/ip.js';
import { serviceResourceName } from '../api/resources.js';
import { pickWeighted, targetPortFor } from '../ztunnel/state/load-balancer.js';

/** What the gateway reads from its xDS view of the mesh (ZtunnelState provides it). */
export interface GatewayStateView {
  /** The network this gateway serves. */
  readonly network: string;
  servicesByHostname(hostname: string): Service[];
  /** Workloads whose `services` map names the service (by resource name `<ns>/<hostname>`). */
  endpointsOf(serviceName: string): Workload[];
  /** Pods by their own DNS name (`<hostname>.<subdomain>.<ns>.svc.<domain>`). */
  workloadsByDnsName(hostname: string): Workload[];
}

export type ServiceAuthority = { ok: true; hostname: string; port: number } | { ok: false; reason: string };

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

/** Parses the outer CONNECT `:authority`, which must be `<service hostname>:<service port>`. */
export function parseServiceAuthority(authority: string | undefined): ServiceAuthority {
  if (!authority) return { ok: false, reason: ':authority is missing' };
  const colon = authority.lastIndexOf(':');
  const host = colon > 0 ? authority.slice(0, colon) : '';
  const portText = colon > 0 ? authority.slice(colon + 1) : '';
  if (!host || !/^\d{1,5}$/.test(portText)) return { ok: false, reason: `:authority ${JSON.stringify(authority)} is not <hostname>:<port>` };
  const port = Number(portText);
  if (port < 1 || port > 65535) return { ok: false, reason: `:authority ${JSON.stringify(authority)} has port out of range` };
  const unbracketed = host.replace(/^\[(.*)\]$/, '$1');
  if (isIP(unbracketed) !== 0) return { ok: false, reason: `:authority ${JSON.stringify(authority)} is an address; the gateway only forwards to <service hostname>:<port>` };
  const hostname = host.toLowerCase();
  if (!HOSTNAME.test(hostname)) return { ok: false, reason: `:authority ${JSON.stringify(authority)} does not name a valid hostname` };
  return { ok: true, hostname, port };
}

/** A service and the port of it a CONNECT asked for. */
export interface ServiceTarget {
  /** Resource name `<ns>/<hostname>`. */
  serviceName: string;
  service: Service;
  port: Port;
  /** The one endpoint allowed, when the CONNECT named a pod by its own DNS name. */
  pinned?: Workload;
}

export type ServiceLookup = { ok: true; target: ServiceTarget } | { ok: false; reason: string };

/** The known service with this hostname that has this service port. */
export function findServiceTarget(state: GatewayStateView, hostname: string, port: number): ServiceLookup {
  const services = state.servicesByHostname(hostname);
  if (services.length === 0) return findPodTarget(state, hostname, port) ?? { ok: false, reason: `unknown service ${hostname}` };
  for (const service of services) {
    const servicePort = service.ports.find((candidate) => candidate.servicePort === port);
    if (servicePort) return { ok: true, target: { serviceName: serviceResourceName(service.namespace, service.hostname), service, port: servicePort } };
  }
  const known = [...new Set(services.flatMap((service) => service.ports.map((candidate) => candidate.servicePort)))].sort((a, b) => a - b);
  return { ok: false, reason: `unknown service port ${hostname}:${port} (the service has ports ${known.join(', ') || 'none'})` };
}

/**
 * A StatefulSet pod of this network named by its own DNS name: the target is the headless service
 * named like its subdomain, pinned to that pod, on the pod's own port (what headless clients dial).
 */
function findPodTarget(state: GatewayStateView, hostname: string, port: number): ServiceLookup | undefined {
  const pod = state.workloadsByDnsName(hostname).find((workload) => (workload.network || state.network) === state.network);
  if (!pod) return undefined;
  const headlessHostname = hostname.slice(hostname.indexOf('.') + 1);
  const service = state.servicesByHostname(headlessHostname).find((candidate) => candidate.namespace === pod.namespace);
  if (!service) return { ok: false, reason: `pod ${pod.namespace}/${pod.name} is named ${hostname} but its headless service ${headlessHostname} is unknown` };
  const target: ServiceTarget = {
    serviceName: serviceResourceName(service.namespace, service.hostname),
    service,
    port: create(PortSchema, { servicePort: port, targetPort: port }),
    pinned: pod,
  };
  return { ok: true, target };
}

/**
 * The candidates of one slot (`x-ambit-endpoint-slot`): in a stable order, every `slots`-th one
 * starting at `slot`, so a client's sessions over all slots cover every endpoint; a slot beyond
 * the endpoints known here takes one of them.
 */
function slotShare<T extends { workload: Workload }>(candidates: T[], slot: { slot: number; slots: number } | undefined): T[] {
  if (!slot || candidates.length <= 1) return candidates;
  const sorted = [...candidates].sort((a, b) => (a.workload.uid < b.workload.uid ? -1 : a.workload.uid > b.workload.uid ? 1 : 0));
  const share = sorted.filter((_, index) => index % slot.slots === slot.slot);
  return share.length > 0 ? share : [sorted[slot.slot % sorted.length]!];
}

export type EndpointChoice = { kind: 'selected'; workload: Workload; address: string } | { kind: 'unavailable'; reason: string };

/**
 * Whether an endpoint serves a service port: its own mapping for the port, else the service's
 * numeric target port (as ztunnel decides; a named target port the pod lacks means no).
 */
function servesPort(workload: Workload, serviceName: string, port: Port): boolean {
  const mapped = workload.services[serviceName]?.ports.find((candidate) => candidate.servicePort === port.servicePort);
  return targetPortFor(mapped?.targetPort, port) !== undefined;
}

function firstAddress(workload: Workload): string | undefined {
  for (const bytes of workload.addresses) {
    try {
      return bytesToIp(bytes);
    } catch {
      // invalid bytes were refused by the state's validation; skip defensively
    }
  }
  return undefined;
}

interface Candidate {
  workload: Workload;
  address: string;
  capacity: number;
}

/**
 * Picks the endpoint of a service the gateway forwards to: a workload on the gateway's own network
 * that speaks HBONE (its node captures `<pod IP>:15008`), healthy (unless the service allows any),
 * serving the port, weighted by capacity. Says why when there is none.
 */
export function pickEndpoint(state: GatewayStateView, target: ServiceTarget, random: () => number = Math.random, slot?: { slot: number; slots: number }): EndpointChoice {
  const { serviceName, port } = target;
  const allowUnhealthy = target.service.loadBalancing?.healthPolicy === LoadBalancing_HealthPolicy.ALLOW_ALL;
  const skipped = new Map<string, number>();
  const skip = (why: string) => skipped.set(why, (skipped.get(why) ?? 0) + 1);
  const candidates: Candidate[] = [];
  const endpoints = target.pinned ? [target.pinned] : state.endpointsOf(serviceName);
  for (const workload of endpoints) {
    const network = workload.network || state.network;
    if (network !== state.network) skip(`on network ${network}`);
    else if (workload.networkGateway) skip('behind a network gateway');
    else if (workload.tunnelProtocol !== TunnelProtocol.HBONE) skip('not in the mesh (no HBONE)');
    else if (!allowUnhealthy && workload.status !== WorkloadStatus.HEALTHY) skip('unhealthy');
    else if (!servesPort(workload, serviceName, port)) skip(`not serving port ${port.servicePort}`);
    else if ((workload.capacity ?? 1) <= 0) skip('with capacity 0');
    else {
      const address = firstAddress(workload);
      if (address === undefined) skip('without an address');
      else candidates.push({ workload, address, capacity: workload.capacity ?? 1 });
    }
  }
  if (candidates.length === 0) {
    if (endpoints.length === 0) return { kind: 'unavailable', reason: `no healthy endpoint: service ${serviceName} has no endpoints` };
    const whys = [...skipped].map(([why, count]) => `${count} ${why}`).join(', ');
    return { kind: 'unavailable', reason: `no healthy endpoint on network ${state.network || '(default)'} for service ${serviceName} port ${port.servicePort}: ${whys}` };
  }
  const chosen = pickWeighted(slotShare(candidates, slot), (candidate) => candidate.capacity, random);
  return { kind: 'selected', workload: chosen.workload, address: chosen.address };
}
