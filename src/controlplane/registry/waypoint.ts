// Waypoints as the registry sees them (from their Services) and enrolment (istio.io/use-waypoint, seed 004's service-account waypoints): who uses which waypoint.
import { create } from '@bufbuild/protobuf';

import {
  GATEWAY_MANAGED_LABEL,
  HBONE_PORT,
  serviceHostname,
  USE_WAYPOINT_LABEL,
  USE_WAYPOINT_NAMESPACE_LABEL,
  USE_WAYPOINT_NONE,
  WAYPOINT_FOR,
  WAYPOINT_FOR_LABEL,
  WAYPOINT_MANAGED_VALUE,
  WAYPOINT_SERVICE_ACCOUNT_ANNOTATION,
  waypointResourceName,
  type WaypointFor,
} from '../../api/resources.js';
import { GatewayAddressSchema, NamespacedHostnameSchema, type GatewayAddress } from '../../gen/istio/workload/workload_pb.js';
import type { Labels, ServiceView } from './kube-objects.js';

/** Set by Gateway API implementations on the objects made for a Gateway. */
const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

/** An object's (or namespace's) enrolment: its `istio.io/use-waypoint` and `istio.io/use-waypoint-namespace` labels. */
export interface WaypointEnrolment {
  name?: string;
  namespace?: string;
}

/** One waypoint, known from the Service the control plane made for its Gateway. */
export interface WaypointView {
  /** `<ns>/<gateway>`: the Waypoint resource name, and the registry's key. */
  key: string;
  namespace: string;
  gateway: string;
  for: WaypointFor;
  /** Seed 004's istio-mesh: the service account whose workloads it serves. */
  serviceAccount?: string;
  address: GatewayAddress;
}

/** The Service (or a pod) of a waypoint (the control plane labels them `gateway.istio.io/managed`). */
export function isWaypointService(object: { labels: Labels } | undefined): boolean {
  return object?.labels[GATEWAY_MANAGED_LABEL] === WAYPOINT_MANAGED_VALUE;
}

export function enrolmentOf(labels: Labels): WaypointEnrolment {
  return { name: labels[USE_WAYPOINT_LABEL] || undefined, namespace: labels[USE_WAYPOINT_NAMESPACE_LABEL] || undefined };
}

const FOR_VALUES = new Set<string>(Object.values(WAYPOINT_FOR));

/**
 * The waypoint a Service belongs to: named by its gateway-name label (else the Service's name), for
 * what its `istio.io/waypoint-for` label says (default service; istio-mesh's are for workloads).
 */
export function waypointFromService(service: ServiceView, domainSuffix: string): WaypointView | undefined {
  if (!isWaypointService(service)) return undefined;
  const gateway = service.labels[GATEWAY_NAME_LABEL] || service.name;
  const label = service.labels[WAYPOINT_FOR_LABEL];
  const sa = service.annotations[WAYPOINT_SERVICE_ACCOUNT_ANNOTATION] || undefined;
  return {
    key: waypointResourceName(service.namespace, gateway),
    namespace: service.namespace,
    gateway,
    for: sa ? WAYPOINT_FOR.workload : label && FOR_VALUES.has(label) ? (label as WaypointFor) : WAYPOINT_FOR.service,
    ...(sa ? { serviceAccount: sa } : {}),
    address: create(GatewayAddressSchema, {
      destination: { case: 'hostname', value: create(NamespacedHostnameSchema, { namespace: service.namespace, hostname: serviceHostname(service.name, service.namespace, domainSuffix) }) },
      hboneMtlsPort: HBONE_PORT,
    }),
  };
}

export function sameWaypoint(a: WaypointView | undefined, b: WaypointView | undefined): boolean {
  if (!a || !b) return a === b;
  const host = (w: WaypointView) => (w.address.destination.case === 'hostname' ? w.address.destination.value.hostname : '');
  return a.key === b.key && a.for === b.for && a.serviceAccount === b.serviceAccount && host(a) === host(b);
}

export const servesServices = (w: WaypointView) => w.for === WAYPOINT_FOR.service || w.for === WAYPOINT_FOR.all;
export const servesWorkloads = (w: WaypointView) => w.for === WAYPOINT_FOR.workload || w.for === WAYPOINT_FOR.all;

/** What an enrolment names: nothing, an explicit opt-out, or the key of a waypoint (which may not exist). */
export type EnrolmentChoice = { kind: 'unset' } | { kind: 'none' } | { kind: 'waypoint'; key: string };

/** The waypoint lives in `use-waypoint-namespace` of whichever object said so, else in `namespace`. */
export function enrolmentChoice(enrolment: WaypointEnrolment | undefined, namespace: string): EnrolmentChoice {
  if (!enrolment?.name) return { kind: 'unset' };
  if (enrolment.name === USE_WAYPOINT_NONE) return { kind: 'none' };
  return { kind: 'waypoint', key: waypointResourceName(enrolment.namespace ?? namespace, enrolment.name) };
}

/** The problem field of an enrolment label. */
export const USE_WAYPOINT_FIELD = `metadata.labels["${USE_WAYPOINT_LABEL}"]`;

/**
 * The waypoint of a Service in `namespace` (today's registry use): its own `istio.io/use-waypoint`
 * wins over its namespace's (`none` opts out); a waypoint's own Service never uses a waypoint.
 */
export function waypointOf(labels: Labels, namespace: string, namespaceEnrolment: WaypointEnrolment | undefined, domainSuffix: string): GatewayAddress | undefined {
  if (isWaypointService({ labels })) return undefined;
  const own = enrolmentOf(labels);
  const chosen = own.name ? own : namespaceEnrolment?.name ? namespaceEnrolment : undefined;
  if (!chosen?.name || chosen.name === USE_WAYPOINT_NONE) return undefined;
  const waypointNamespace = chosen.namespace ?? namespace;
  return create(GatewayAddressSchema, {
    destination: { case: 'hostname', value: create(NamespacedHostnameSchema, { namespace: waypointNamespace, hostname: serviceHostname(chosen.name, waypointNamespace, domainSuffix) }) },
    hboneMtlsPort: HBONE_PORT,
  });
}
