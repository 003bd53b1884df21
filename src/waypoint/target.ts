// What a CONNECT to the waypoint asks for: a service it serves (VIP:port) or a workload it serves (pod IP:port). Pure, tested on its own.
import { AppProtocol, type Service, type Workload } from '../gen/istio/workload/workload_pb.js';
import { parseAuthority } from '../hbone/headers.js';
import { serviceResourceName } from '../api/resources.js';
import { requestHost } from '../l7/route-match.js';
import type { ServedTraffic } from './config.js';

export type WaypointTarget =
  | { kind: 'service'; service: Service; serviceName: string; ip: string; port: number; appProtocol: AppProtocol }
  | { kind: 'workload'; workload: Workload; ip: string; port: number; appProtocol: AppProtocol }
  | { kind: 'reject'; status: number; reason: string; message: string };

export interface TargetState {
  serviceByVip(ip: string): Service | undefined;
  workloadByIp(ip: string): Workload | undefined;
}

function quoted(value: string | undefined): string {
  const text = value ?? '';
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}

/**
 * The target of a CONNECT `:authority`: `<service VIP>:<service port>` of a service whose
 * `Service.waypoint` is this waypoint, or `<pod IP>:<port>` of a workload whose `Workload.waypoint`
 * is. Anything else is refused: a waypoint is no open relay into the mesh. Messages name what the
 * client sent, never other addresses.
 */
export function waypointTarget(authority: string | undefined, state: TargetState, served: ServedTraffic): WaypointTarget {
  const parsed = parseAuthority(authority);
  if (!parsed.ok) return { kind: 'reject', status: 400, reason: 'bad_authority', message: parsed.reason };
  const { ip, port } = parsed;
  const service = state.serviceByVip(ip);
  if (service) {
    const serviceName = serviceResourceName(service.namespace, service.hostname);
    if (!served.services.has(serviceName)) return { kind: 'reject', status: 403, reason: 'not_served', message: `this waypoint does not serve ${serviceName}` };
    const servicePort = service.ports.find((p) => p.servicePort === port);
    if (!servicePort) return { kind: 'reject', status: 400, reason: 'unknown_port', message: `${serviceName} has no port ${port}` };
    return { kind: 'service', service, serviceName, ip, port, appProtocol: servicePort.appProtocol };
  }
  const workload = state.workloadByIp(ip);
  if (workload && served.workloads.has(workload.uid)) {
    return { kind: 'workload', workload, ip, port, appProtocol: AppProtocol.UNKNOWN };
  }
  return { kind: 'reject', status: 403, reason: 'not_served', message: `this waypoint serves no destination ${quoted(authority)}` };
}

/** How the waypoint reads the tunnel: as HTTP (sniffing HTTP/1.1 from HTTP/2), as TCP, or by looking at the first bytes. */
export function protocolHint(appProtocol: AppProtocol): 'http' | 'tcp' | 'detect' {
  switch (appProtocol) {
    case AppProtocol.HTTP11:
    case AppProtocol.HTTP2:
    case AppProtocol.GRPC:
      return 'http';
    case AppProtocol.TCP:
    case AppProtocol.TLS:
      return 'tcp';
    default:
      return 'detect';
  }
}

const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const HTTP1_REQUEST_LINE = /^(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH|TRACE) /;

/** What the first bytes of a tunnel are: HTTP/2 (prior knowledge), HTTP/1.x, or something else (TCP). */
export function detectProtocol(first: Buffer): 'http2' | 'http1' | 'tcp' | 'need-more' {
  const prefix = first.subarray(0, HTTP2_PREFACE.length);
  if (HTTP2_PREFACE.subarray(0, prefix.length).equals(prefix)) return prefix.length === HTTP2_PREFACE.length ? 'http2' : 'need-more';
  const head = first.subarray(0, 16).toString('latin1');
  if (HTTP1_REQUEST_LINE.test(head)) return 'http1';
  if (head.length < 8 && /^[A-Z]*$/.test(head)) return 'need-more';
  return 'tcp';
}

/**
 * The service whose mesh routes apply to a request: the service addressed; for a workload addressed
 * by pod IP (a service-account waypoint), the service of that workload the Host header names
 * (`reviews`, `reviews.default`, `reviews.default.svc`, the full name), with the service port that
 * maps to the port the workload was addressed on.
 */
export function routedServiceOf(target: Exclude<WaypointTarget, { kind: 'reject' }>, host: string): { name: string; port: number } | undefined {
  if (target.kind === 'service') return { name: target.serviceName, port: target.port };
  const requested = requestHost(host);
  for (const [name, ports] of Object.entries(target.workload.services)) {
    const hostname = name.slice(name.indexOf('/') + 1);
    const [short, namespace] = hostname.split('.');
    if (requested !== hostname && requested !== short && requested !== `${short}.${namespace}` && requested !== `${short}.${namespace}.svc`) continue;
    const port = ports.ports.find((p) => p.targetPort === target.port || (p.targetPort === 0 && p.servicePort === target.port));
    if (port) return { name, port: port.servicePort };
  }
  return undefined;
}
