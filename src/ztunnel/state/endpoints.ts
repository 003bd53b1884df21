import type { Workload } from '../../gen/istio/workload/workload_pb.js';
import { identityOf, spiffeUri } from '../../api/identity.js';
import { decodeAddresses } from './addresses.js';
import { networkOf, type WorkloadIndex } from './workload-index.js';

/** A workload backing one service, with what load balancing needs precomputed. */
export interface Endpoint {
  workloadName: string;
  workload: Workload;
  network: string;
  addresses: string[];
  /** SPIFFE URI of the workload. */
  identity: string;
  /** service_port → target_port from the workload's PortList for this service (first entry wins). */
  targetPorts: Map<number, number>;
  /** Relative weight; 0 means never picked. */
  capacity: number;
}

function toEndpoint(serviceName: string, workloadName: string, workload: Workload, localNetwork: string): Endpoint {
  const targetPorts = new Map<number, number>();
  for (const port of workload.services[serviceName]?.ports ?? []) {
    if (!targetPorts.has(port.servicePort)) targetPorts.set(port.servicePort, port.targetPort);
  }
  return {
    workloadName,
    workload,
    network: networkOf(workload, localNetwork),
    addresses: decodeAddresses(workload.addresses),
    identity: spiffeUri(identityOf(workload)),
    targetPorts,
    capacity: workload.capacity ?? 1,
  };
}

/**
 * Which workloads back which service (from each workload's `services` map), maintained per workload
 * change, and each service's endpoint list built on first use and dropped when a member changes.
 */
export class EndpointIndex {
  private readonly members = new Map<string, Set<string>>();
  private readonly prepared = new Map<string, Endpoint[]>();

  constructor(
    private readonly workloads: WorkloadIndex,
    private readonly localNetwork: string,
  ) {}

  /** Records a workload upsert or removal (next undefined) and invalidates the services involved. */
  workloadChanged(workloadName: string, previous: Workload | undefined, next: Workload | undefined): void {
    const before = previous ? Object.keys(previous.services) : [];
    const after = new Set(next ? Object.keys(next.services) : []);
    for (const serviceName of before) {
      if (!after.has(serviceName)) this.removeMember(serviceName, workloadName);
      this.prepared.delete(serviceName);
    }
    for (const serviceName of after) {
      let names = this.members.get(serviceName);
      if (!names) this.members.set(serviceName, (names = new Set()));
      names.add(workloadName);
      this.prepared.delete(serviceName);
    }
  }

  /** Names of the workloads backing a service. */
  memberNames(serviceName: string): string[] {
    return [...(this.members.get(serviceName) ?? [])];
  }

  endpoints(serviceName: string): Endpoint[] {
    const cached = this.prepared.get(serviceName);
    if (cached) return cached;
    const endpoints: Endpoint[] = [];
    for (const workloadName of this.members.get(serviceName) ?? []) {
      const workload = this.workloads.get(workloadName);
      if (workload) endpoints.push(toEndpoint(serviceName, workloadName, workload, this.localNetwork));
    }
    this.prepared.set(serviceName, endpoints);
    return endpoints;
  }

  private removeMember(serviceName: string, workloadName: string): void {
    const names = this.members.get(serviceName);
    if (!names) return;
    names.delete(workloadName);
    if (names.size === 0) this.members.delete(serviceName);
  }
}
