// Which waypoint a Service uses (istio.io/use-waypoint on the Service or its namespace): the GatewayAddress of Service.waypoint.
import { create } from '@bufbuild/protobuf';

import {
  GATEWAY_MANAGED_LABEL,
  HBONE_PORT,
  serviceHostname,
  USE_WAYPOINT_LABEL,
  USE_WAYPOINT_NAMESPACE_LABEL,
  USE_WAYPOINT_NONE,
  WAYPOINT_MANAGED_VALUE,
} from '../../api/resources.js';
import { GatewayAddressSchema, NamespacedHostnameSchema, type GatewayAddress } from '../../gen/istio/workload/workload_pb.js';
import type { Labels } from './kube-objects.js';

/** A namespace's enrolment: its `istio.io/use-waypoint` and `istio.io/use-waypoint-namespace` labels. */
export interface WaypointEnrolment {
  name?: string;
  namespace?: string;
}

/** The Service of a waypoint (the control plane labels it `gateway.istio.io/managed`). */
export function isWaypointService(service: { labels: Labels } | undefined): boolean {
  return service?.labels[GATEWAY_MANAGED_LABEL] === WAYPOINT_MANAGED_VALUE;
}

export function enrolmentOf(labels: Labels): WaypointEnrolment {
  return { name: labels[USE_WAYPOINT_LABEL] || undefined, namespace: labels[USE_WAYPOINT_NAMESPACE_LABEL] || undefined };
}

/**
 * The waypoint of an object in `namespace`: its own `istio.io/use-waypoint` wins over its
 * namespace's (`none` opts out); the waypoint lives in `istio.io/use-waypoint-namespace` of whichever
 * said so, else in the object's namespace. A waypoint's own Service never uses a waypoint.
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
