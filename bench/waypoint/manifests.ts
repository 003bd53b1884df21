/**
 * The waypoint case's objects in the mesh namespace: a waypoint Gateway (when `ambit waypoint apply`
 * is not there to make it) and a Service enrolled in it, selecting only the server pod, so that the
 * pod IP stays the L4 path and the Service's cluster IP goes through the waypoint.
 */
import { HBONE_PORT, USE_WAYPOINT_LABEL, WAYPOINT_FOR, WAYPOINT_FOR_LABEL, WAYPOINT_GATEWAY_CLASS, WAYPOINT_LISTENER_NAME } from '../../src/api/resources.js';
import { GATEWAY_API_GROUP } from '../../src/api/names.js';
import { HBONE_PROTOCOL } from '../../src/controlplane/gateways/constants.js';

export const WAYPOINT_NAME = 'bench-waypoint';
export const WAYPOINT_SERVICE = 'bench-server-waypoint';
/** Put on the server pod for the Service's selector: its `app` label is shared with the policy case's second server. */
export const TARGET_LABEL_KEY = 'bench.ambit.io/waypoint-target';
export const TARGET_LABEL_VALUE = 'true';

/** The waypoint as `ambit waypoint apply` makes it: class istio-waypoint, one HBONE listener, for services. */
export function waypointGateway(namespace: string, name: string = WAYPOINT_NAME): object {
  return {
    apiVersion: `${GATEWAY_API_GROUP}/v1`,
    kind: 'Gateway',
    metadata: { name, namespace, labels: { [WAYPOINT_FOR_LABEL]: WAYPOINT_FOR.service } },
    spec: { gatewayClassName: WAYPOINT_GATEWAY_CLASS, listeners: [{ name: WAYPOINT_LISTENER_NAME, port: HBONE_PORT, protocol: HBONE_PROTOCOL }] },
  };
}

/** A Service for the server pod's HTTP port whose traffic (to its cluster IP) goes through `waypoint`. */
export function waypointService(namespace: string, port: number, waypoint: string = WAYPOINT_NAME, name: string = WAYPOINT_SERVICE): object {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace, labels: { [USE_WAYPOINT_LABEL]: waypoint } },
    spec: { selector: { [TARGET_LABEL_KEY]: TARGET_LABEL_VALUE }, ports: [{ name: 'http', port, targetPort: port, protocol: 'TCP', appProtocol: 'http' }] },
  };
}

/**
 * Whether `ambit waypoint apply --help` printed that command's help: a build without it prints the
 * top-level help instead (and exits 0).
 */
export function hasWaypointApply(helpText: string): boolean {
  return /^Usage: ambit waypoint apply\b/m.test(helpText);
}

/** `ambit waypoint apply` arguments for the bench's waypoint, the context first when the command takes one. */
export function waypointApplyArgs(namespace: string, context: string | undefined, name: string = WAYPOINT_NAME): string[] {
  return ['waypoint', 'apply', ...(context ? ['--context', context] : []), '-n', namespace, '--name', name];
}

export const ROUTED_SERVICE = 'bench-server-routed';

/**
 * The routes row's objects: a second Service for the server pod, through the same waypoint, with a
 * 90/10 VirtualService between two DestinationRule subsets (both select the server pod: the row
 * measures matching, the weighted pick and the subset filter, not a second server).
 */
export function routedObjects(namespace: string, port: number): object[] {
  const host = ROUTED_SERVICE;
  const subset = (name: string) => ({ name, labels: { [TARGET_LABEL_KEY]: TARGET_LABEL_VALUE } });
  return [
    waypointService(namespace, port, WAYPOINT_NAME, ROUTED_SERVICE),
    { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: host, namespace }, spec: { host, subsets: [subset('a'), subset('b')] } },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: host, namespace },
      spec: { hosts: [host], http: [{ match: [{ uri: { prefix: '/' } }], route: [{ destination: { host, subset: 'a' }, weight: 90 }, { destination: { host, subset: 'b' }, weight: 10 }] }] },
    },
  ];
}
