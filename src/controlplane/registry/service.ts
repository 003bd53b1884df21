import { create } from '@bufbuild/protobuf';

import { ipToBytes } from '../../api/ip.js';
import { serviceHostname, serviceResourceName } from '../../api/resources.js';
import {
  AppProtocol,
  LoadBalancing_Mode,
  LoadBalancing_Scope,
  LoadBalancingSchema,
  NetworkAddressSchema,
  PortListSchema,
  PortSchema,
  ServiceSchema,
  type GatewayAddress,
  type LoadBalancing,
  type Port,
  type PortList,
  type Service,
} from '../../gen/istio/workload/workload_pb.js';
import type { Labels, PodView, ServicePortView, ServiceView } from './kube-objects.js';
import type { FieldProblem } from './problems.js';

export const TRAFFIC_DISTRIBUTION_ANNOTATION = 'networking.istio.io/traffic-distribution';

const TRAFFIC_DISTRIBUTIONS = ['PreferClose', 'PreferSameZone', 'PreferSameNode', 'Any'] as const;
export type TrafficDistribution = (typeof TRAFFIC_DISTRIBUTIONS)[number];

function isTrafficDistribution(value: string): value is TrafficDistribution {
  return (TRAFFIC_DISTRIBUTIONS as readonly string[]).includes(value);
}

function annotationField(annotation: string): string {
  return `metadata.annotations[${JSON.stringify(annotation)}]`;
}

export interface Setting<T> {
  value: T | undefined;
  problems: FieldProblem[];
}

/**
 * The first valid value among `candidates` (in order), reporting every invalid one: an unknown
 * value counts as unset, so the next source decides.
 */
function firstTrafficDistribution(candidates: Array<[string | undefined, string]>): Setting<TrafficDistribution> {
  const problems: FieldProblem[] = [];
  let value: TrafficDistribution | undefined;
  for (const [raw, field] of candidates) {
    if (!raw) continue;
    if (isTrafficDistribution(raw)) {
      value ??= raw;
      continue;
    }
    problems.push({
      field,
      message: `unknown traffic distribution ${JSON.stringify(raw)} (want one of ${TRAFFIC_DISTRIBUTIONS.join(', ')}); treated as unset`,
    });
  }
  return { value, problems };
}

/** A namespace's default traffic distribution, from its annotation. */
export function namespaceTrafficDistribution(annotations: Labels): Setting<TrafficDistribution> {
  const annotation = TRAFFIC_DISTRIBUTION_ANNOTATION;
  return firstTrafficDistribution([[annotations[annotation], annotationField(annotation)]]);
}

/** `spec.trafficDistribution`, else the Service's annotation, else its namespace's default. */
export function serviceTrafficDistribution(
  service: ServiceView,
  namespaceDefault: TrafficDistribution | undefined,
): Setting<TrafficDistribution> {
  const annotation = TRAFFIC_DISTRIBUTION_ANNOTATION;
  const own = firstTrafficDistribution([
    [service.trafficDistribution, 'spec.trafficDistribution'],
    [service.annotations[annotation], annotationField(annotation)],
  ]);
  return { value: own.value ?? namespaceDefault, problems: own.problems };
}

const { NETWORK, REGION, ZONE, SUBZONE, NODE } = LoadBalancing_Scope;

export function loadBalancing(
  distribution: TrafficDistribution | undefined,
  internalTrafficPolicy: string,
): LoadBalancing | undefined {
  if (internalTrafficPolicy === 'Local') {
    return create(LoadBalancingSchema, { routingPreference: [NODE], mode: LoadBalancing_Mode.STRICT });
  }
  switch (distribution) {
    case 'PreferClose':
    case 'PreferSameZone':
      return create(LoadBalancingSchema, { routingPreference: [NETWORK, REGION, ZONE], mode: LoadBalancing_Mode.FAILOVER });
    case 'PreferSameNode':
      return create(LoadBalancingSchema, {
        routingPreference: [NETWORK, REGION, ZONE, SUBZONE, NODE],
        mode: LoadBalancing_Mode.FAILOVER,
      });
    default:
      return undefined;
  }
}

/** ztunnel carries TCP only: UDP and SCTP ports are left out of every port list. */
function tcpPorts(service: ServiceView): ServicePortView[] {
  return service.ports.filter((port) => port.protocol === 'TCP');
}

const APP_PROTOCOLS: Readonly<Record<string, AppProtocol>> = {
  http: AppProtocol.HTTP11,
  http2: AppProtocol.HTTP2,
  h2c: AppProtocol.HTTP2,
  'kubernetes.io/h2c': AppProtocol.HTTP2,
  grpc: AppProtocol.GRPC,
  tcp: AppProtocol.TCP,
  tls: AppProtocol.TLS,
  https: AppProtocol.TLS,
};

/** From `appProtocol`, else the port name's prefix before `-` (Istio's port naming convention). */
export function appProtocolOf(port: Pick<ServicePortView, 'name' | 'appProtocol'>): AppProtocol {
  const explicit = APP_PROTOCOLS[port.appProtocol.toLowerCase()];
  if (explicit !== undefined) return explicit;
  const prefix = port.name.split('-', 1)[0]!.toLowerCase();
  return APP_PROTOCOLS[prefix] ?? AppProtocol.UNKNOWN;
}

export interface ServiceContext {
  network: string;
  domainSuffix: string;
  distribution: TrafficDistribution | undefined;
  /** The waypoint the service uses (istio.io/use-waypoint), if any. */
  waypoint?: GatewayAddress;
}

export function hostnameOf(service: Pick<ServiceView, 'name' | 'namespace'>, domainSuffix: string): string {
  return serviceHostname(service.name, service.namespace, domainSuffix);
}

export function serviceResourceNameOf(service: Pick<ServiceView, 'name' | 'namespace'>, domainSuffix: string): string {
  return serviceResourceName(service.namespace, hostnameOf(service, domainSuffix));
}

/** ExternalName services have no endpoints or virtual IPs for ztunnel: they are not published. */
export function isPublished(service: ServiceView): boolean {
  return service.type !== 'ExternalName';
}

export function buildService(service: ServiceView, context: ServiceContext): Service {
  return create(ServiceSchema, {
    name: service.name,
    namespace: service.namespace,
    hostname: hostnameOf(service, context.domainSuffix),
    addresses: service.clusterIPs.map((ip) =>
      create(NetworkAddressSchema, { network: context.network, address: ipToBytes(ip) }),
    ),
    ports: tcpPorts(service).map((port) =>
      create(PortSchema, {
        servicePort: port.port,
        // A named target port differs per pod: the workload's port list carries the resolved number.
        targetPort: typeof port.targetPort === 'number' ? port.targetPort : port.targetPort === undefined ? port.port : 0,
        appProtocol: appProtocolOf(port),
      }),
    ),
    loadBalancing: loadBalancing(context.distribution, service.internalTrafficPolicy),
    waypoint: context.waypoint,
  });
}

/** The service's ports as seen on one pod: named target ports resolved against its container ports. */
export function workloadPortList(service: ServiceView, pod: Pick<PodView, 'namedPorts'>): PortList {
  const ports: Port[] = [];
  for (const port of tcpPorts(service)) {
    let targetPort: number;
    if (typeof port.targetPort === 'string') {
      const resolved = pod.namedPorts.get(port.targetPort);
      if (resolved === undefined) continue; // this pod does not serve that port
      targetPort = resolved;
    } else {
      targetPort = port.targetPort ?? port.port;
    }
    ports.push(create(PortSchema, { servicePort: port.port, targetPort, appProtocol: appProtocolOf(port) }));
  }
  return create(PortListSchema, { ports });
}

/** What pods see of a service (its selector and ports); when this is unchanged, no pod needs rebuilding. */
export function podFacingShape(service: ServiceView | undefined): string {
  if (!service || !isPublished(service)) return '';
  return JSON.stringify([service.selector, service.ports]);
}
