import type { Service, Workload } from '../../gen/istio/workload/workload_pb.js';
import type { ServiceTarget } from './types.js';

/** Hostname part of a service resource name `<ns>/<hostname>`. */
function hostnameOf(serviceName: string): string {
  return serviceName.slice(serviceName.indexOf('/') + 1);
}

/**
 * Port of `destination` serving `servicePort` of one of its services: its own mapping, else the
 * service's numeric target port, else (mapping without a target) the service port itself — the same
 * order outbound load balancing uses. Undefined when the workload does not serve that port.
 */
function targetPortFor(destination: Workload, serviceName: string, service: Service | undefined, servicePort: number): number | undefined {
  const mapped = destination.services[serviceName]?.ports.find((port) => port.servicePort === servicePort);
  const declared = service?.ports.find((port) => port.servicePort === servicePort);
  if (mapped) return mapped.targetPort || declared?.targetPort || servicePort;
  return declared?.targetPort || undefined;
}

/**
 * Where an inbound CONNECT to `<hostname>:<servicePort>` goes on a local workload (double HBONE: the
 * client named the service because it could not know which pod the east-west gateway would pick).
 * Allowed only for a service the workload backs, on a port that service has.
 */
export function serviceTargetOf(destination: Workload, hostname: string, servicePort: number, serviceByName: (name: string) => Service | undefined): ServiceTarget {
  const workload = `${destination.namespace}/${destination.name || destination.uid}`;
  if (destination.hostname && destination.hostname.toLowerCase() === hostname) return podNameTarget(destination, workload, hostname, servicePort, serviceByName);
  const candidates = Object.keys(destination.services).filter((name) => (serviceByName(name)?.hostname ?? hostnameOf(name)) === hostname);
  if (candidates.length === 0) return { kind: 'refused', reason: `workload ${workload} does not back a service with hostname ${hostname}` };
  for (const serviceName of candidates) {
    const service = serviceByName(serviceName);
    const targetPort = targetPortFor(destination, serviceName, service, servicePort);
    if (targetPort !== undefined) return { kind: 'found', serviceName, service, targetPort };
  }
  return { kind: 'refused', reason: `service ${candidates.join(', ')} backed by workload ${workload} has no port ${servicePort} (or no target port for it on this workload)` };
}

/**
 * A CONNECT to a pod's own DNS name (a StatefulSet pod reached from another network): allowed on a
 * port the pod serves for the headless service named like its subdomain. Clients of a headless
 * service dial the pod's port, so that port is the target.
 */
function podNameTarget(destination: Workload, workload: string, hostname: string, port: number, serviceByName: (name: string) => Service | undefined): ServiceTarget {
  const headless = `${destination.namespace}/${hostname.slice(hostname.indexOf('.') + 1)}`;
  const ports = destination.services[headless]?.ports ?? [];
  const declared = serviceByName(headless)?.ports ?? [];
  const served = ports.some((mapped) => (mapped.targetPort || declared.find((d) => d.servicePort === mapped.servicePort)?.targetPort || mapped.servicePort) === port);
  if (!served) return { kind: 'refused', reason: `workload ${workload} (${hostname}) serves no port ${port} of headless service ${headless}` };
  return { kind: 'found', serviceName: headless, service: serviceByName(headless), targetPort: port };
}
