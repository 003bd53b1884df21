/** The hops a connection takes for one resolution, and the authorization decision at its end. */
import { isIP } from 'node:net';
import { TunnelProtocol, type Workload } from '../gen/istio/workload/workload_pb.js';
import { HBONE_PORT, INBOUND_PLAINTEXT_PORT, OUTBOUND_CAPTURE_PORT } from '../api/resources.js';
import type { ZtunnelState } from '../ztunnel/state/store.js';
import type { Resolution } from '../ztunnel/state/types.js';
import { workloadLabel } from './facts.js';
import type { AuthorizationFacts, Hop, PathFacts, WaypointFacts } from './types.js';

export function hostPort(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** What every path of one connection shares. */
export interface PathContext {
  state: ZtunnelState;
  /** The source workload (or a stand-in built from the pod when ztunnel does not know it). */
  source: Workload;
  /** `pod <ns>/<name> (<ip>)` */
  sourceLabel: string;
  sourceIp?: string;
  sourceIdentity?: string;
  /** The address and port the pod connects to (a VIP, a pod IP, or the host's address). */
  original: { ip: string; port: number };
}

const identities = (ids: readonly string[]) => ids.join(' or ');

function ztunnelHere(context: PathContext): string {
  return `ztunnel on node ${context.state.nodeName}`;
}

function captureHop(context: PathContext): Hop {
  return { kind: 'capture', text: `${context.sourceLabel} → ${ztunnelHere(context)} (captured on ${OUTBOUND_CAPTURE_PORT})` };
}

function nodeOf(workload: Workload): string {
  const where = [workload.node ? `node ${workload.node}` : 'its node', workload.clusterId ? `cluster ${workload.clusterId}` : ''].filter(Boolean);
  return where.join(', ');
}

/**
 * The destination ztunnel's decision for this source identity, with the policies this ztunnel knows
 * (the ones the destination's ztunnel holds, when both get them from the same control plane).
 */
function authorizationAt(context: PathContext, destination: Workload, address: string, port: number, sourceIdentity: string | undefined): AuthorizationFacts {
  const decision = context.state.authorize({ sourceIdentity, sourceIp: context.sourceIp ?? '', destinationIp: address, destinationPort: port, destination });
  const facts: AuthorizationFacts = { evaluated: true, allowed: decision.allowed, reason: decision.reason, ...(decision.policy ? { policy: decision.policy } : {}) };
  if (destination.clusterId && destination.clusterId !== context.state.clusterId) {
    return { ...facts, note: `evaluated with the policies of cluster ${context.state.clusterId}'s ztunnel; the destination's ztunnel in cluster ${destination.clusterId} decides with the policies it receives` };
  }
  return facts;
}

function directHbonePath(context: PathContext, resolution: Extract<Resolution, { kind: 'hbone' }>, probability: number): PathFacts {
  const { upstream } = resolution;
  const tunnel = hostPort(upstream.address, HBONE_PORT);
  const authority = hostPort(upstream.address, upstream.port);
  return {
    kind: 'hbone',
    probability,
    endpoint: workloadLabel(upstream.workload),
    hops: [
      captureHop(context),
      {
        kind: 'hbone',
        text: `HBONE mTLS to ${tunnel}, CONNECT ${authority}, expecting SAN ${identities(upstream.expectedIdentities)}`,
        address: tunnel,
        authority,
        expectedIdentities: upstream.expectedIdentities,
      },
      { kind: 'destination-ztunnel', text: `ztunnel on the destination node (${nodeOf(upstream.workload)}) terminates the tunnel and applies authorization` },
      { kind: 'deliver', text: `→ pod ${workloadLabel(upstream.workload)} at ${authority}`, address: authority },
    ],
    authorization: authorizationAt(context, upstream.workload, upstream.address, upstream.port, context.sourceIdentity),
  };
}

/**
 * Through the destination's waypoint: HBONE to the waypoint pod (its name, pod, identity), where L7
 * policy applies and the endpoint is picked per request; then the waypoint's own HBONE to the
 * destination ztunnel, which lets only the waypoint in (the sandwich rule) and applies L4 policy
 * for the waypoint's identity. For a service's waypoint the endpoint is the waypoint's choice.
 */
function waypointPath(context: PathContext, resolution: Extract<Resolution, { kind: 'waypoint' }>, probability: number): PathFacts {
  const { upstream, authority, destination } = resolution;
  const tunnel = hostPort(upstream.address, upstream.port);
  const name = resolution.waypointName ?? upstream.workload.name;
  const waypointIdentity = upstream.expectedIdentities[0];
  const waypoint: WaypointFacts = { name, pod: `${upstream.workload.namespace}/${upstream.workload.name}`, address: tunnel, identity: waypointIdentity ?? '' };
  const hops: Hop[] = [
    captureHop(context),
    {
      kind: 'hbone',
      text: `HBONE mTLS to waypoint ${name} (pod ${workloadLabel(upstream.workload)}) at ${tunnel}, CONNECT ${authority}, expecting SAN ${identities(upstream.expectedIdentities)}`,
      address: tunnel,
      authority,
      expectedIdentities: upstream.expectedIdentities,
    },
    {
      kind: 'waypoint',
      text: `waypoint ${name} applies L7 policy, picks ${destination ? `pod ${workloadLabel(destination)}` : `an endpoint of ${resolution.service ? resolution.service.hostname : 'the service'}`} per request and tunnels to its node's ztunnel over HBONE as ${waypointIdentity ?? 'its own identity'}`,
    },
  ];
  if (destination) {
    const [address, port] = splitHostPort(authority);
    hops.push(
      { kind: 'destination-ztunnel', text: `ztunnel on the destination node (${nodeOf(destination)}) accepts only the waypoint for this pod (sandwich rule) and applies authorization for the waypoint's identity` },
      { kind: 'deliver', text: `→ pod ${workloadLabel(destination)} at ${authority}`, address: authority },
    );
    const atDestination = authorizationAt(context, destination, address, port, waypointIdentity);
    const note = 'L4 policy at the destination, for the waypoint\'s identity; L7 policy is decided at the waypoint';
    return {
      kind: 'waypoint',
      probability,
      endpoint: workloadLabel(destination),
      hops,
      waypoint,
      authorization: atDestination.evaluated ? { ...atDestination, note: atDestination.note ? `${note}; ${atDestination.note}` : note } : atDestination,
    };
  }
  return {
    kind: 'waypoint',
    probability,
    hops,
    waypoint,
    authorization: { evaluated: false, why: 'decided at the waypoint (L7, per request) and at the destination ztunnel for the waypoint\'s identity' },
  };
}

function splitHostPort(authority: string): [string, number] {
  const at = authority.lastIndexOf(':');
  return [authority.slice(0, at).replace(/^\[|\]$/g, ''), Number(authority.slice(at + 1))];
}

function doubleHbonePath(context: PathContext, resolution: Extract<Resolution, { kind: 'gateway' }>, probability: number): PathFacts {
  const { upstream, gateway, authority } = resolution;
  const outer = hostPort(gateway.address, gateway.port);
  const gatewayWorkload = context.state.workloadByIp(gateway.address, gateway.network);
  const gatewayName = gatewayWorkload ? `east-west gateway ${workloadLabel(gatewayWorkload)}` : 'east-west gateway';
  const network = context.state.network;
  const headers: Record<string, string> = network ? { 'x-forwarded-network': network } : {};
  const headerText = network ? `, x-forwarded-network: ${network}` : '';
  const destinationNetwork = upstream.workload.network || gateway.network;
  return {
    kind: 'double-hbone',
    probability,
    endpoint: workloadLabel(upstream.workload),
    hops: [
      captureHop(context),
      {
        kind: 'outer-hbone',
        text: `outer HBONE mTLS to ${gatewayName} at ${outer} (network ${gateway.network}), expecting SAN ${identities(gateway.identities)}, CONNECT ${authority}${headerText}`,
        address: outer,
        authority,
        expectedIdentities: gateway.identities,
        headers,
      },
      {
        kind: 'inner-hbone',
        text: `inner HBONE inside it, mTLS end to end with the destination: CONNECT ${authority}${headerText}, expecting SAN ${identities(upstream.expectedIdentities)}`,
        authority,
        expectedIdentities: upstream.expectedIdentities,
        headers,
      },
      { kind: 'gateway', text: `${gatewayName} → ztunnel of an endpoint of ${upstream.service.hostname} on network ${destinationNetwork} (the gateway picks the endpoint)` },
      { kind: 'deliver', text: `destination ztunnel → a pod of ${upstream.service.hostname} on target port ${upstream.port}` },
    ],
    authorization: {
      evaluated: false,
      why: `the destination pod is on network ${destinationNetwork}, behind its gateway: its ztunnel decides with its own policies, and the pod is not in this ztunnel's state`,
    },
  };
}

function plaintextPath(context: PathContext, resolution: Extract<Resolution, { kind: 'plaintext' }>, probability: number): PathFacts {
  const { upstream } = resolution;
  const address = hostPort(upstream.address, upstream.port);
  return {
    kind: 'plaintext',
    probability,
    endpoint: workloadLabel(upstream.workload),
    hops: [
      captureHop(context),
      { kind: 'plaintext', text: `plain TCP to ${address} (the destination is not enrolled: tunnel protocol NONE, no mTLS)`, address },
      { kind: 'deliver', text: `→ pod ${workloadLabel(upstream.workload)} at ${address}`, address },
    ],
    authorization: { evaluated: false, why: 'the destination is not enrolled in the mesh: no ztunnel applies policies to it' },
  };
}

export function passthroughPath(context: PathContext, reason: string): PathFacts {
  const { ip, port } = context.original;
  const address = isIP(ip) ? hostPort(ip, port) : `the address ${ip} resolves to, port ${port},`;
  return {
    kind: 'passthrough',
    probability: 1,
    hops: [captureHop(context), { kind: 'passthrough', text: `${ztunnelHere(context)} dials ${address} unchanged, in plain TCP (passthrough: ${reason})`, ...(isIP(ip) ? { address } : {}) }],
    authorization: { evaluated: false, why: 'not a mesh destination' },
  };
}

/** The path of a resolution that routes the connection; undefined for `unavailable`. */
export function pathOf(context: PathContext, resolution: Resolution, probability: number): PathFacts | undefined {
  switch (resolution.kind) {
    case 'hbone':
      return directHbonePath(context, resolution, probability);
    case 'gateway':
      return doubleHbonePath(context, resolution, probability);
    case 'waypoint':
      return waypointPath(context, resolution, probability);
    case 'plaintext':
      return plaintextPath(context, resolution, probability);
    case 'passthrough':
      return passthroughPath(context, 'not a mesh destination');
    case 'unavailable':
      return undefined;
  }
}

/**
 * A source ztunnel does not capture: the connection leaves the pod as is. When it goes to an
 * enrolled pod's own address, that pod's ztunnel still captures it inbound, in plaintext.
 */
export function uncapturedPath(context: PathContext, why: string, destination: Workload | undefined): PathFacts {
  const address = hostPort(context.original.ip, context.original.port);
  const first: Hop = { kind: 'uncaptured', text: `${context.sourceLabel} → ${address} directly, not through ztunnel (${why}); the cluster network routes it (kube-proxy for a service VIP)`, address };
  const enrolled = destination?.tunnelProtocol === TunnelProtocol.HBONE ? destination : undefined;
  if (!enrolled) {
    return { kind: 'uncaptured', probability: 1, hops: [first], authorization: { evaluated: false, why: 'no ztunnel on the path is known to see this connection' } };
  }
  return {
    kind: 'uncaptured',
    probability: 1,
    hops: [
      first,
      { kind: 'destination-ztunnel', text: `ztunnel on the destination node (${nodeOf(enrolled)}) captures it inbound in plaintext (port ${INBOUND_PLAINTEXT_PORT}) and applies authorization without a source identity` },
      { kind: 'deliver', text: `→ pod ${workloadLabel(enrolled)} at ${address}`, address },
    ],
    authorization: authorizationAt(context, enrolled, context.original.ip, context.original.port, undefined),
  };
}
