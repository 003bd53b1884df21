import type { Socket } from 'node:net';

import type { Workload } from '../../gen/istio/workload/workload_pb.js';
import { identityOf, spiffeUri } from '../../api/identity.js';
import { normalizeIp } from '../../api/ip.js';
import type { Logger } from '../../util/log.js';
import type { CertificateSource } from '../identity/types.js';
import type { ProxyMetrics } from '../metrics.js';
import type { ProxyState } from '../state/types.js';
import type { SocketAddress } from './original-dst.js';
import type { DialTarget } from '../../hbone/index.js';

/** What every listener of the proxy shares. */
export interface ProxyContext {
  state: ProxyState;
  certificates: CertificateSource;
  log: Logger;
  metrics: ProxyMetrics;
  clusterId: string;
  originalDestination(socket: Socket): SocketAddress | undefined;
  dialAddress(ip: string, port: number): DialTarget;
}

/** The SPIFFE identity a workload's certificate carries. */
export function workloadIdentity(workload: Workload): string {
  return spiffeUri(identityOf(workload));
}

/** The workload on this node, captured by this ztunnel, that owns `ip`. */
export function localEnrolledWorkload(state: ProxyState, ip: string): Workload | undefined {
  const workload = state.workloadByIp(ip);
  if (!workload) return undefined;
  return state.localEnrolledWorkloads().some((local) => local === workload || (local.uid !== '' && local.uid === workload.uid)) ? workload : undefined;
}

/**
 * The original destination of a captured socket, or undefined when there is none or the socket was
 * dialled directly (conntrack then reports the listener's own address, and following it would loop).
 */
export function capturedDestination(context: ProxyContext, socket: Socket): SocketAddress | undefined {
  let original: SocketAddress | undefined;
  try {
    original = context.originalDestination(socket);
  } catch {
    return undefined;
  }
  if (!original) return undefined;
  const ip = normalizeIp(original.ip);
  const local = socket.localAddress === undefined ? undefined : normalizeIp(socket.localAddress);
  if (ip === local && original.port === socket.localPort) return undefined;
  return { ip, port: original.port };
}

/** The client address of an accepted socket, without the IPv4-mapped prefix. */
export function remoteIp(socket: Socket): string {
  return normalizeIp(socket.remoteAddress ?? '');
}
