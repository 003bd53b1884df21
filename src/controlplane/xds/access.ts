/**
 * Who may subscribe to the control plane's xDS, and to which types: node proxies (ztunnel) and the
 * east-west gateways this control plane runs. Other proxies (waypoints, sidecars) get a role here,
 * with the types they need, when they exist.
 */
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js';
import { AUTHORIZATION_HEADER, CLUSTER_ID_HEADER } from '../../api/grpc.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, ROUTE_TYPE_URL, WAYPOINT_TYPE_URL } from '../../api/resources.js';
import type { CaCaller } from '../ca/authorize.js';
import { CaRequestError } from '../ca/errors.js';
import { XdsAuthError, type XdsAuthenticator } from './server.js';

export type XdsRole = 'node-proxy' | 'east-west-gateway' | 'ingress' | 'waypoint';

/** The type URLs each role may subscribe to. */
export const XDS_ROLE_TYPES: Record<XdsRole, ReadonlySet<string>> = {
  'node-proxy': new Set([ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]),
  // Routes by service hostname and checks the caller against the destination's policy.
  'east-west-gateway': new Set([ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]),
  // Resolves destinations like ztunnel, and reads its own routes (`<ns>/<deployment>`).
  ingress: new Set([ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, ROUTE_TYPE_URL]),
  // Picks endpoints like ztunnel and reads its own Waypoint resource (served services, L7 policies).
  waypoint: new Set([ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, WAYPOINT_TYPE_URL]),
};

/** Every type URL the server knows; requests for any other are ignored without creating state. */
export const KNOWN_XDS_TYPES: ReadonlySet<string> = new Set(Object.values(XDS_ROLE_TYPES).flatMap((types) => [...types]));

export interface XdsAccessOptions {
  systemNamespace: string;
  /** `<namespace>/<name>` of node proxies; default `<systemNamespace>/ztunnel`. */
  nodeProxyServiceAccounts?: readonly string[];
  /** Whether `<namespace>/<name>` is the ServiceAccount of an east-west gateway of this control plane. */
  isGatewayServiceAccount: (namespace: string, name: string) => boolean;
  /** Whether `<namespace>/<name>` is the ServiceAccount of an ingress gateway this control plane configures. */
  isIngressServiceAccount?: (namespace: string, name: string) => boolean;
  /** Whether `<namespace>/<name>` is the ServiceAccount a waypoint Gateway runs as. */
  isWaypointServiceAccount?: (namespace: string, name: string) => boolean;
}

export class XdsAccessPolicy {
  private readonly nodeProxies: Set<string>;

  constructor(private readonly options: XdsAccessOptions) {
    this.nodeProxies = new Set(options.nodeProxyServiceAccounts ?? [`${options.systemNamespace}/ztunnel`]);
  }

  /** The caller's role, or why it has none (a message for the refusal). */
  roleOf(account: { namespace: string; serviceAccount: string }): { role: XdsRole } | { refused: string } {
    const name = `${account.namespace}/${account.serviceAccount}`;
    if (this.nodeProxies.has(name)) return { role: 'node-proxy' };
    if (this.options.isGatewayServiceAccount(account.namespace, account.serviceAccount)) return { role: 'east-west-gateway' };
    if (this.options.isIngressServiceAccount?.(account.namespace, account.serviceAccount)) return { role: 'ingress' };
    if (this.options.isWaypointServiceAccount?.(account.namespace, account.serviceAccount)) return { role: 'waypoint' };
    return {
      refused: `service account ${name} may not subscribe to xDS: only node proxies (${[...this.nodeProxies].join(', ')}), the east-west, ingress and waypoint gateways of this control plane may`,
    };
  }
}

export interface XdsAuthenticatorOptions {
  /** Authenticates a bearer token (the CA's authorizer: audience istio-ca, cached and bounded TokenReview). */
  authenticate(metadata: { authorization?: string; clusterId?: string }): Promise<CaCaller>;
  access: XdsAccessPolicy;
  /** Until this time (ms), a caller without a role is re-checked every 500 ms: gateways may reconnect before the controller has listed them. */
  recheckUntil?: () => number;
}

/** Authenticates an xDS caller by its token, then gives it the types of its role, or refuses it. */
export function xdsAuthenticator(options: XdsAuthenticatorOptions): XdsAuthenticator {
  return async (metadata: Metadata) => {
    let caller: CaCaller;
    try {
      caller = await options.authenticate({ authorization: metadataValue(metadata, AUTHORIZATION_HEADER), clusterId: metadataValue(metadata, CLUSTER_ID_HEADER) });
    } catch (err) {
      if (err instanceof CaRequestError) throw new XdsAuthError(err.code, err.message);
      throw new XdsAuthError(GrpcStatus.UNAUTHENTICATED, (err as Error).message);
    }
    let access = options.access.roleOf(caller.identity);
    while ('refused' in access && options.recheckUntil && Date.now() < options.recheckUntil()) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      access = options.access.roleOf(caller.identity);
    }
    if ('refused' in access) throw new XdsAuthError(GrpcStatus.PERMISSION_DENIED, access.refused);
    return { name: caller.podName ? `${caller.identity.namespace}/${caller.podName}` : caller.username, types: XDS_ROLE_TYPES[access.role] };
  };
}

function metadataValue(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === 'string' ? value : value?.toString();
}
