import { LoadBalancing_Scope, type Service, type Workload } from '../../gen/istio/workload/workload_pb.js';
import { Action, Scope, type Authorization, type Match, type StringMatch } from '../../gen/istio/security/authorization_pb.js';

/** One xDS resource the state refused, with every problem found in it (each naming its field). */
export class InvalidResourceError extends Error {
  constructor(
    readonly kind: 'workload' | 'service' | 'address' | 'authorization' | 'waypoint',
    readonly resource: string,
    readonly problems: string[],
  ) {
    super(`${kind} ${JSON.stringify(resource)}: ${problems.join('; ')}`);
    this.name = 'InvalidResourceError';
  }
}

/**
 * Thrown by an apply call after the valid part of the update was applied: the listed resources
 * were refused and their previous versions (if any) are kept. The xDS client NACKs with this message.
 */
export class StateUpdateError extends Error {
  constructor(readonly rejected: InvalidResourceError[]) {
    super(`rejected ${rejected.length} resource(s): ${rejected.map((error) => error.message).join(' | ')}`);
    this.name = 'StateUpdateError';
  }
}

const MAX_PORT = 65535;

function checkAddressBytes(bytes: Uint8Array, field: string, problems: string[]): void {
  if (bytes.length !== 4 && bytes.length !== 16) problems.push(`${field}: must be 4 (IPv4) or 16 (IPv6) bytes, got ${bytes.length}`);
}

function checkPort(value: number, field: string, problems: string[], allowZero: boolean): void {
  const min = allowZero ? 0 : 1;
  if (!Number.isInteger(value) || value < min || value > MAX_PORT) problems.push(`${field}: must be a port ${min}-${MAX_PORT}, got ${value}`);
}

export function workloadProblems(workload: Workload): string[] {
  const problems: string[] = [];
  workload.addresses.forEach((bytes, i) => checkAddressBytes(bytes, `addresses[${i}]`, problems));
  for (const [serviceKey, portList] of Object.entries(workload.services)) {
    portList.ports.forEach((port, i) => {
      const field = `services[${JSON.stringify(serviceKey)}].ports[${i}]`;
      checkPort(port.servicePort, `${field}.service_port`, problems, false);
      checkPort(port.targetPort, `${field}.target_port`, problems, true);
    });
  }
  const gateway = workload.networkGateway;
  if (gateway) {
    if (gateway.destination.case === 'address') checkAddressBytes(gateway.destination.value.address, 'network_gateway.address.address', problems);
    checkPort(gateway.hboneMtlsPort, 'network_gateway.hbone_mtls_port', problems, true);
  }
  return problems;
}

const KNOWN_SCOPES = new Set<number>([
  LoadBalancing_Scope.REGION,
  LoadBalancing_Scope.ZONE,
  LoadBalancing_Scope.SUBZONE,
  LoadBalancing_Scope.NODE,
  LoadBalancing_Scope.CLUSTER,
  LoadBalancing_Scope.NETWORK,
]);

export function serviceProblems(service: Service): string[] {
  const problems: string[] = [];
  if (!service.hostname) problems.push('hostname: required');
  service.addresses.forEach((address, i) => checkAddressBytes(address.address, `addresses[${i}].address`, problems));
  service.ports.forEach((port, i) => {
    checkPort(port.servicePort, `ports[${i}].service_port`, problems, false);
    checkPort(port.targetPort, `ports[${i}].target_port`, problems, true);
  });
  service.loadBalancing?.routingPreference.forEach((scope, i) => {
    if (!KNOWN_SCOPES.has(scope)) problems.push(`load_balancing.routing_preference[${i}]: unknown scope ${scope}`);
  });
  return problems;
}

function checkStringMatches(matches: StringMatch[], field: string, problems: string[]): void {
  // ztunnel silently drops an unset StringMatch; dropping the only entry of a positive list would turn
  // it into "match anything", so refuse it instead.
  matches.forEach((match, i) => {
    if (match.matchType.case === undefined) problems.push(`${field}[${i}]: no exact, prefix, suffix or presence set`);
  });
}

function checkCidrs(addresses: Array<{ address: Uint8Array; length: number }>, field: string, problems: string[]): void {
  addresses.forEach((cidr, i) => {
    const bytes = cidr.address.length;
    if (bytes !== 4 && bytes !== 16) {
      problems.push(`${field}[${i}].address: must be 4 (IPv4) or 16 (IPv6) bytes, got ${bytes}`);
    } else if (cidr.length > bytes * 8) {
      problems.push(`${field}[${i}].length: prefix length ${cidr.length} exceeds ${bytes * 8}`);
    }
  });
}

function checkMatch(match: Match, field: string, problems: string[]): void {
  checkStringMatches(match.namespaces, `${field}.namespaces`, problems);
  checkStringMatches(match.notNamespaces, `${field}.not_namespaces`, problems);
  checkStringMatches(match.principals, `${field}.principals`, problems);
  checkStringMatches(match.notPrincipals, `${field}.not_principals`, problems);
  checkCidrs(match.sourceIps, `${field}.source_ips`, problems);
  checkCidrs(match.notSourceIps, `${field}.not_source_ips`, problems);
  checkCidrs(match.destinationIps, `${field}.destination_ips`, problems);
  checkCidrs(match.notDestinationIps, `${field}.not_destination_ips`, problems);
  match.destinationPorts.forEach((port, i) => checkPort(port, `${field}.destination_ports[${i}]`, problems, true));
  match.notDestinationPorts.forEach((port, i) => checkPort(port, `${field}.not_destination_ports[${i}]`, problems, true));
}

export function authorizationProblems(authorization: Authorization): string[] {
  const problems: string[] = [];
  if (!authorization.name) problems.push('name: required');
  if (!authorization.namespace) problems.push('namespace: required');
  if (!(authorization.scope in Scope)) problems.push(`scope: unknown value ${authorization.scope}`);
  if (!(authorization.action in Action)) problems.push(`action: unknown value ${authorization.action}`);
  authorization.rules.forEach((rule, r) =>
    rule.clauses.forEach((clause, c) =>
      clause.matches.forEach((match, m) => checkMatch(match, `rules[${r}].clauses[${c}].matches[${m}]`, problems)),
    ),
  );
  return problems;
}
