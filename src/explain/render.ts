/** The text report of `ambit explain`. */
import { table } from '../install/proxy-config/tables.js';
import type { AuthorizationFacts, Explanation, PathFacts, ServiceFacts, SourceFacts, WorkloadFacts } from './types.js';

const indent = (text: string, by = '  ') => text.split('\n').map((line) => (line ? by + line : line)).join('\n');
const percent = (probability: number) => `${Math.round(probability * 1000) / 10}%`;
const orNone = (text: string) => text || '(none)';

function sourceSection(source: SourceFacts): string {
  const lines = [`pod ${source.pod}${source.ip ? ` (${source.ip})` : ''} on node ${orNone(source.node)}`];
  const workload = source.workload;
  if (workload) {
    lines.push(`workload ${workload.uid}, identity ${workload.identity}`);
    lines.push(`cluster ${orNone(workload.cluster)}, network ${orNone(workload.network)}, locality ${orNone(workload.locality)}`);
  }
  lines.push(`captured by ztunnel: ${source.captured ? 'yes' : 'no'} (${source.capture})`);
  return `SOURCE\n${indent(lines.join('\n'))}`;
}

function workloadLine(workload: WorkloadFacts): string {
  return `${workload.name} (${workload.addresses.join(', ') || 'no address'}), ${workload.protocol}, node ${orNone(workload.node)}, cluster ${orNone(workload.cluster)}, network ${orNone(workload.network)}, identity ${workload.identity}`;
}

function destinationSection(explanation: Explanation): string {
  const { destination, service } = explanation;
  const lines = [`${destination.requested}: ${destination.resolution}`];
  if (destination.service) lines.push(`service ${destination.service}${service ? `, port ${service.port}` : ''}${destination.address ? `, VIP ${destination.address}` : ''}`);
  else if (destination.workload) lines.push(`workload ${workloadLine(destination.workload)}`);
  else if (destination.address) lines.push(`address ${destination.address}, unknown to the mesh`);
  if (service) lines.push(`load balancing: ${service.loadBalancing.summary}`);
  return `DESTINATION\n${indent(lines.join('\n'))}`;
}

function endpointsSection(service: ServiceFacts): string {
  const rows = service.endpoints.map((endpoint) => [
    endpoint.workload.name,
    orNone(endpoint.workload.cluster),
    orNone(endpoint.workload.network),
    orNone(endpoint.workload.locality),
    endpoint.workload.status,
    endpoint.reach,
    endpoint.targetPort === undefined ? '-' : String(endpoint.targetPort),
    String(endpoint.capacity),
    endpoint.rank === undefined ? '-' : String(endpoint.rank),
    percent(endpoint.probability),
    endpoint.excluded ?? '',
  ]);
  const headers = ['WORKLOAD', 'CLUSTER', 'NETWORK', 'LOCALITY', 'STATUS', 'REACH', 'PORT', 'CAPACITY', 'RANK', 'CHANCE', 'EXCLUDED BECAUSE'];
  return `ENDPOINTS of ${service.name}\n${indent(table(headers, rows))}`;
}

function authorizationLine(authorization: AuthorizationFacts): string {
  if (!authorization.evaluated) return `authorization: not evaluated here (${authorization.why})`;
  // The decision's reason starts with the verdict ("allowed by …", "denied: …").
  const note = authorization.note ? `\n  note: ${authorization.note}` : '';
  return `authorization at the destination: ${authorization.reason}${note}`;
}

const PATH_TITLES: Record<PathFacts['kind'], string> = {
  hbone: 'HBONE',
  'double-hbone': 'double HBONE',
  waypoint: 'HBONE via waypoint',
  plaintext: 'plain TCP',
  passthrough: 'passthrough',
  uncaptured: 'not captured',
};

function pathSection(path: PathFacts): string {
  const title = `[${percent(path.probability)}] ${PATH_TITLES[path.kind]}${path.endpoint ? ` to ${path.endpoint}` : ''}, ${path.hops.length} hop${path.hops.length === 1 ? '' : 's'}`;
  const hops = path.hops.map((hop, index) => `${index + 1}. ${hop.text}`);
  return [title, ...hops.map((line) => indent(line)), indent(authorizationLine(path.authorization))].join('\n');
}

export function renderExplanation(explanation: Explanation): string {
  const sections = [explanation.summary, sourceSection(explanation.source), destinationSection(explanation)];
  if (explanation.service) sections.push(endpointsSection(explanation.service));
  if (explanation.unavailable) sections.push(`REFUSED\n${indent(`the source ztunnel resets the connection: ${explanation.unavailable}`)}`);
  if (explanation.unresolved) sections.push(`NOT WORKED OUT\n${indent(explanation.unresolved)}`);
  if (explanation.paths.length > 0) sections.push(`PATHS\n${indent(explanation.paths.map(pathSection).join('\n\n'))}`);
  if (explanation.http) sections.push(`HTTP ROUTE at waypoint ${explanation.http.waypoint}\n${indent(explanation.http.text)}`);
  if (explanation.notes.length > 0) sections.push(`NOTES\n${indent(explanation.notes.map((note) => `- ${note}`).join('\n'))}`);
  return sections.join('\n\n');
}
