/** Names of the east-west gateway controller, as Istio spells them where Istio has them. */
import { GATEWAY_API_GROUP, MANAGED_BY_LABEL } from '../../api/names.js';

export { GATEWAY_API_GROUP, MANAGED_BY_LABEL };
export const GATEWAY_API_VERSION = 'v1';
export const GATEWAY_API_GROUP_VERSION = `${GATEWAY_API_GROUP}/${GATEWAY_API_VERSION}`;

/** The GatewayClass of east-west gateways, and the controller that answers for it. */
export const EAST_WEST_GATEWAY_CLASS = 'istio-east-west';
export const EAST_WEST_CONTROLLER_NAME = 'istio.io/eastwest-controller';

/** Listener shape an east-west gateway accepts. */
export const HBONE_PROTOCOL = 'HBONE';
export const TLS_MODE_TERMINATE = 'Terminate';
export const TLS_TERMINATE_MODE_OPTION = 'gateway.istio.io/tls-terminate-mode';
export const ISTIO_MUTUAL = 'ISTIO_MUTUAL';

/** Set by Gateway API implementations on the objects made for a Gateway; also the pod selector. */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
/** MANAGED_BY_LABEL value on the ServiceAccounts, Deployments and Services this controller made (its informers select on it). */
export const MANAGED_BY_CONTROLLER = 'ambit-eastwest-controller';
/**
 * Hash of what the controller last applied to an object: a changed hash means the desired object
 * changed (a field added or removed), so the object is applied again.
 */
export const DESIRED_HASH_ANNOTATION = 'gateway.ambit.io/desired-hash';
/** Server-side apply field manager of every write. */
export const FIELD_MANAGER = 'ambit-eastwest-controller';

export const GATEWAY_CONTAINER = 'gateway';
/** Port names of the gateway Service and container (Istio's east-west gateway names). */
export const HBONE_PORT_NAME = 'tls-hbone';
export const STATUS_PORT_NAME = 'status-port';
export const METRICS_PORT_NAME = 'http-metrics';
