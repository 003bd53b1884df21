/**
 * Who may subscribe to the control plane's xDS, to which types, and to which names of the types that
 * belong to one proxy each: node proxies (ztunnel), the east-west gateways this control plane runs,
 * ingresses (their own routes) and waypoints (their own Waypoint resource). Other proxies (sidecars)
 * get a role here, with the types they need, when they exist.
 */
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js';
import { AUTHORIZATION_HEADER, CLUSTER_ID_HEADER } from '../../api/grpc.js';
import { spiffeUri } from '../../api/identity.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, ROUTE_TYPE_URL, WAYPOINT_TYPE_URL } from '../../api/resources.js';
import type { CaCaller } from '../ca/authorize.js';
import { CaRequestError } from '../ca/errors.js';
import { XdsAuthError, type XdsAuthenticator, type XdsNameScope } from './server.js';

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

/**
 * Types whose resources each belong to one proxy (its routes, its waypoint's policies): a caller reads
 * only the names its grant lists. Addresses and authorizations are not secret within the mesh.
 */
export const PER_NAME_XDS_TYPES: ReadonlySet<string> = new Set([ROUTE_TYPE_URL, WAYPOINT_TYPE_URL]);

const NO_NAMES: ReadonlySet<string> = new Set();

/** A caller's role, and per type read by name the names it may read, evaluated from the controllers' state on every call. */
export interface XdsGrant {
  role: XdsRole;
  names: ReadonlyMap<string, () => ReadonlySet<string>>;
}

/** Every type URL the server knows; requests for any other are ignored without creating state. */
export const KNOWN_XDS_TYPES: ReadonlySet<string> = new Set(Object.values(XDS_ROLE_TYPES).flatMap((types) => [...types]));

export interface XdsAccessOptions {
  systemNamespace: string;
  /** `<namespace>/<name>` of node proxies; default `<systemNamespace>/ztunnel`. */
  nodeProxyServiceAccounts?: readonly string[];
  /** Whether `<namespace>/<name>` is the ServiceAccount of an east-west gateway of this control plane. */
  isGatewayServiceAccount: (namespace: string, name: string) => boolean;
  /** The RouteConfig names (`<ns>/<deployment>`) of the ingresses this control plane configures that run as `<namespace>/<name>`; empty: not an ingress. */
  ingressRoutes?: (namespace: string, name: string) => ReadonlySet<string>;
  /** The Waypoint names (`<ns>/<gateway>`) of the waypoint Gateways whose Deployment runs as `<namespace>/<name>`; empty: not a waypoint. */
  waypointResources?: (namespace: string, name: string) => ReadonlySet<string>;
}

export class XdsAccessPolicy {
  private readonly nodeProxies: Set<string>;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly options: XdsAccessOptions) {
    this.nodeProxies = new Set(options.nodeProxyServiceAccounts ?? [`${options.systemNamespace}/ztunnel`]);
  }

  /** The caller's role with the names it may read, or why it has none (a message for the refusal). */
  roleOf(account: { namespace: string; serviceAccount: string }): XdsGrant | { refused: string } {
    const { namespace, serviceAccount } = account;
    const name = `${namespace}/${serviceAccount}`;
    if (this.nodeProxies.has(name)) return { role: 'node-proxy', names: new Map() };
    if (this.options.isGatewayServiceAccount(namespace, serviceAccount)) return { role: 'east-west-gateway', names: new Map() };
    const { ingressRoutes, waypointResources } = this.options;
    if (ingressRoutes && ingressRoutes(namespace, serviceAccount).size > 0) {
      return { role: 'ingress', names: new Map([[ROUTE_TYPE_URL, () => ingressRoutes(namespace, serviceAccount)]]) };
    }
    if (waypointResources && waypointResources(namespace, serviceAccount).size > 0) {
      return { role: 'waypoint', names: new Map([[WAYPOINT_TYPE_URL, () => waypointResources(namespace, serviceAccount)]]) };
    }
    return {
      refused: `service account ${name} may not subscribe to xDS: only node proxies (${[...this.nodeProxies].join(', ')}), the east-west, ingress and waypoint gateways of this control plane may`,
    };
  }

  /** The controllers' state that grants names changed: open streams re-evaluate what they may read. */
  changed(): void {
    for (const listener of this.listeners) listener();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** What a stream of this grant may read by name; undefined when its role reads no per-name type. */
  scopeOf(grant: XdsGrant, identity: string): XdsNameScope | undefined {
    if (![...XDS_ROLE_TYPES[grant.role]].some((type) => PER_NAME_XDS_TYPES.has(type))) return undefined;
    return {
      identity,
      readable: (typeUrl) => (PER_NAME_XDS_TYPES.has(typeUrl) ? (grant.names.get(typeUrl)?.() ?? NO_NAMES) : undefined),
      onChange: (listener) => this.onChange(listener),
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
    const scope = options.access.scopeOf(access, spiffeUri(caller.identity));
    return { name: caller.podName ? `${caller.identity.namespace}/${caller.podName}` : caller.username, types: XDS_ROLE_TYPES[access.role], ...(scope ? { scope } : {}) };
  };
}

function metadataValue(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return typeof value === 'string' ? value : value?.toString();
}
