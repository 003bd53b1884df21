import { Action, Scope } from '../../gen/istio/security/authorization_pb.js';
import type { Authorization } from '../../gen/istio/security/authorization_pb.js';
import { LoadBalancing_Mode, LoadBalancing_Scope, TunnelProtocol, WorkloadStatus, WorkloadType, type Service, type Workload } from '../../gen/istio/workload/workload_pb.js';
import { identityOf, spiffeUri } from '../../api/identity.js';
import { bytesToIp } from '../../api/ip.js';
import { serviceResourceName } from '../../api/resources.js';
import { waypointNameOf } from '../state/waypoints.js';
import type { XdsStatus } from '../xds/client.js';
import type { CertificateView, ConfigDump, PolicyView, ServiceView, WorkloadView } from './types.js';

/** What the admin view reads from ztunnel's state. */
export interface AdminStateView {
  workloads(): Iterable<Workload>;
  services(): Iterable<Service>;
  authorizations(): Iterable<Authorization>;
  /** Workloads backing a service (by its resource name `<ns>/<hostname>`). */
  endpointsOf(serviceName: string): Iterable<Workload>;
}

export interface ConfigDumpSources {
  node: string;
  clusterId: string;
  network: string;
  state: AdminStateView;
  certificates: () => CertificateView[];
  xds: () => XdsStatus;
  captured: () => ReadonlySet<string>;
}

export function buildConfigDump(sources: ConfigDumpSources): ConfigDump {
  const captured = sources.captured();
  return {
    node: sources.node,
    clusterId: sources.clusterId,
    network: sources.network,
    controlPlane: sources.xds(),
    workloads: [...sources.state.workloads()].map((w) => workloadView(w, sources.network, captured)).sort(byNamespaceName),
    services: [...sources.state.services()].map((s) => serviceView(s, sources.state)).sort(byNamespaceName),
    certificates: sources.certificates(),
    policies: [...sources.state.authorizations()].map(policyView).sort(byNamespaceName),
  };
}

function byNamespaceName(a: { namespace: string; name: string }, b: { namespace: string; name: string }): number {
  return a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name);
}

function addressList(addresses: Uint8Array[]): string[] {
  return addresses.flatMap((bytes) => {
    try {
      return [bytesToIp(bytes)];
    } catch {
      return [];
    }
  });
}

function workloadView(w: Workload, localNetwork: string, captured: ReadonlySet<string>): WorkloadView {
  const addresses = addressList(w.addresses);
  return {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    addresses,
    node: w.node,
    network: w.network || localNetwork,
    clusterId: w.clusterId,
    protocol: w.tunnelProtocol === TunnelProtocol.HBONE ? 'HBONE' : 'TCP',
    serviceAccount: w.serviceAccount || 'default',
    identity: spiffeUri(identityOf(w)),
    status: w.status === WorkloadStatus.HEALTHY ? 'Healthy' : 'Unhealthy',
    canonicalName: w.canonicalName,
    canonicalRevision: w.canonicalRevision,
    workloadType: WorkloadType[w.workloadType] ?? String(w.workloadType),
    workloadName: w.workloadName,
    services: Object.keys(w.services).sort(),
    locality: { region: w.locality?.region ?? '', zone: w.locality?.zone ?? '', subzone: w.locality?.subzone ?? '' },
    captured: addresses.some((ip) => captured.has(ip)),
    capacity: w.capacity ?? 1,
    ...(w.hostname ? { dnsName: w.hostname } : {}),
    ...(w.networkGateway ? { networkGateway: gatewayLabel(w.networkGateway.destination) } : {}),
    ...(w.waypoint ? { waypoint: waypointNameOf(w.waypoint) } : {}),
  };
}

function serviceView(s: Service, state: AdminStateView): ServiceView {
  const endpoints = [...state.endpointsOf(serviceResourceName(s.namespace, s.hostname))];
  return {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    vips: s.addresses.flatMap((a) => addressList([a.address]).map((ip) => `${a.network}/${ip}`)),
    ports: s.ports.map((p) => ({ port: p.servicePort, targetPort: p.targetPort, protocol: 'TCP' })),
    endpoints: endpoints.length,
    healthyEndpoints: endpoints.filter((w) => w.status === WorkloadStatus.HEALTHY).length,
    loadBalancing: s.loadBalancing
      ? {
          mode: LoadBalancing_Mode[s.loadBalancing.mode] ?? String(s.loadBalancing.mode),
          routingPreference: s.loadBalancing.routingPreference.map((p) => LoadBalancing_Scope[p] ?? String(p)),
        }
      : undefined,
    ...(s.waypoint ? { waypoint: waypointNameOf(s.waypoint) } : {}),
  };
}

function policyView(a: Authorization): PolicyView {
  return {
    name: a.name,
    namespace: a.namespace,
    scope: Scope[a.scope] ?? String(a.scope),
    action: Action[a.action] ?? String(a.action),
    rules: a.rules.length,
    dryRun: a.dryRun,
  };
}

function gatewayLabel(destination: NonNullable<Workload['networkGateway']>['destination']): string {
  if (destination.case === 'hostname') return `${destination.value.namespace}/${destination.value.hostname}`;
  if (destination.case === 'address') return addressList([destination.value.address])[0] ?? '(invalid address)';
  return '(none)';
}
