/**
 * `ambit explain`: the path a connection from a pod would take, worked out by ztunnel's own logic
 * (the state it holds, resolve(), endpoint evaluation, authorization) rather than re-implemented.
 */
import { create } from '@bufbuild/protobuf';
import { NetworkMode, TunnelProtocol, WorkloadSchema, type Workload } from '../gen/istio/workload/workload_pb.js';
import { identityOf, spiffeUri } from '../api/identity.js';
import { podWorkloadUid, serviceResourceName } from '../api/resources.js';
import type { DestinationAnalysis, ZtunnelState } from '../ztunnel/state/store.js';
import { isOnNode } from '../ztunnel/state/workload-index.js';
import { endpointFacts, loadBalancingFacts, workloadFacts } from './facts.js';
import { resolveHost, type HostResolution } from './host.js';
import { passthroughPath, pathOf, uncapturedPath, type PathContext } from './paths.js';
import type { Target } from './target.js';
import type { DestinationFacts, Explanation, PathFacts, ServiceFacts, SourceFacts } from './types.js';

/** The source pod as Kubernetes reports it. */
export interface SourcePod {
  namespace: string;
  name: string;
  /** `status.podIP`. */
  ip?: string;
  /** `spec.nodeName`: the node whose ztunnel's state is given. */
  node: string;
}

export interface ExplainRequest {
  /** The state of the ztunnel on the source pod's node. */
  state: ZtunnelState;
  source: SourcePod;
  target: Target;
  /** Kubernetes cluster domain for short names; default cluster.local. */
  clusterDomain?: string;
}

function findSourceWorkload(state: ZtunnelState, pod: SourcePod): Workload | undefined {
  const byUid = state.workload(podWorkloadUid(state.clusterId, pod.namespace, pod.name));
  if (byUid) return byUid;
  const byIp = pod.ip ? state.workloadByIp(pod.ip) : undefined;
  return byIp && byIp.namespace === pod.namespace && byIp.name === pod.name ? byIp : undefined;
}

/** Whether ztunnel captures the pod's outbound traffic, and why (the rule of localEnrolledWorkloads). */
function captureOf(state: ZtunnelState, workload: Workload | undefined): { captured: boolean; why: string } {
  if (!workload) return { captured: false, why: 'the pod is not in ztunnel\'s state: not a mesh workload, or not known yet' };
  if (workload.tunnelProtocol !== TunnelProtocol.HBONE) {
    return { captured: false, why: 'not enrolled: tunnel protocol NONE; enrol it with label istio.io/dataplane-mode=ambient' };
  }
  if (workload.networkMode === NetworkMode.HOST_NETWORK) return { captured: false, why: 'host network: ztunnel does not capture host-network pods' };
  if (!isOnNode(workload, state.clusterId, state.nodeName)) {
    const where = `node ${workload.node || '(none)'}${workload.clusterId !== state.clusterId ? ` of cluster ${workload.clusterId || '(none)'}` : ''}`;
    return { captured: false, why: `the mesh places it on ${where}, not on ${state.nodeName} of cluster ${state.clusterId}, whose ztunnel was asked` };
  }
  return { captured: true, why: 'HBONE, not host network: its outbound connections go to ztunnel' };
}

/** A workload standing for a pod ztunnel does not know, so that its destination can still be analysed. */
function standInWorkload(state: ZtunnelState, pod: SourcePod): Workload {
  return create(WorkloadSchema, { uid: podWorkloadUid(state.clusterId, pod.namespace, pod.name), name: pod.name, namespace: pod.namespace, node: pod.node, clusterId: state.clusterId });
}

function sourceFacts(state: ZtunnelState, pod: SourcePod, workload: Workload | undefined, capture: { captured: boolean; why: string }): SourceFacts {
  return {
    pod: `${pod.namespace}/${pod.name}`,
    ...(pod.ip ? { ip: pod.ip } : {}),
    node: pod.node,
    ...(workload ? { workload: workloadFacts(workload, state.network) } : {}),
    captured: capture.captured,
    capture: capture.why,
  };
}

function describeHost(host: HostResolution, requested: string): string {
  switch (host.kind) {
    case 'address':
      return `${requested} is an address`;
    case 'service':
      return `ztunnel's DNS proxy answers ${host.hostname} with VIP ${host.vip}`;
    case 'pod-addresses': {
      const choice = host.addresses.length > 1 ? '; the client picks one, the first is explained' : '';
      return `ztunnel's DNS proxy answers ${host.hostname} with pod address${host.addresses.length > 1 ? 'es' : ''} ${host.addresses.join(', ')} (a headless service, or a pod's own name)${choice}`;
    }
    case 'service-without-answer':
      return `${host.hostname} is mesh service ${serviceResourceName(host.service.namespace, host.service.hostname)}, but ztunnel's DNS proxy has no address for it on the pod's network (VIPs only on other networks, or a headless service without a healthy endpoint here): the cluster's DNS answers`;
    case 'unknown':
      return `no mesh service is named ${host.tried.join(', ')}: the cluster's DNS answers`;
  }
}

function serviceFacts(state: ZtunnelState, analysis: Extract<DestinationAnalysis, { kind: 'service' }>): ServiceFacts {
  const ordered = [...analysis.evaluation.endpoints].sort((a, b) => b.probability - a.probability || (b.rank ?? 0) - (a.rank ?? 0));
  return {
    name: analysis.serviceName,
    hostname: analysis.service.hostname,
    port: analysis.servicePort.servicePort,
    loadBalancing: loadBalancingFacts(analysis.service.loadBalancing),
    endpoints: ordered.map((evaluation) => endpointFacts(evaluation, state.network)),
  };
}

const percent = (probability: number) => `${Math.round(probability * 1000) / 10}%`;

const PATH_WORDS: Record<PathFacts['kind'], string> = {
  hbone: 'HBONE',
  'double-hbone': 'double HBONE through a network gateway',
  waypoint: 'HBONE through the waypoint',
  plaintext: 'plain TCP',
  passthrough: 'passthrough',
  uncaptured: 'not captured',
};

function summaryOf(explanation: Omit<Explanation, 'summary'>): string {
  const to = `${explanation.source.pod} → ${explanation.destination.requested}`;
  if (explanation.unavailable) return `${to}: refused, ${explanation.unavailable}`;
  if (explanation.unresolved) return `${to}: ${explanation.unresolved}`;
  const [only, ...others] = explanation.paths;
  if (!only) return `${to}: no path`;
  if (only.kind === 'uncaptured') return `${to}: not captured by ztunnel (${explanation.source.capture})`;
  if (only.kind === 'passthrough') return `${to}: passthrough, not routed by the mesh`;
  if (only.kind === 'waypoint' && others.length === 0) {
    return `${to}: HBONE through waypoint ${only.waypoint?.name ?? ''} (pod ${only.waypoint?.pod ?? '?'}) to ${only.endpoint ?? 'an endpoint it picks per request'}`;
  }
  if (others.length === 0) return `${to}: ${PATH_WORDS[only.kind]} to ${only.endpoint ?? 'the destination'}`;
  const shares = explanation.paths.map((path) => `${path.endpoint ?? '?'} ${percent(path.probability)} (${PATH_WORDS[path.kind]})`);
  return `${to}: one of ${explanation.paths.length} endpoints: ${shares.join(', ')}`;
}

export function explainConnection(request: ExplainRequest): Explanation {
  const { state, source: pod, target } = request;
  const found = findSourceWorkload(state, pod);
  const capture = captureOf(state, found);
  const source = found ?? standInWorkload(state, pod);
  const network = source.network || state.network;
  const requested = `${target.host}:${target.port}`;
  const notes: string[] = [];
  const host = resolveHost(state, target.host, { sourceNamespace: pod.namespace, network, clusterDomain: request.clusterDomain });
  const destination: DestinationFacts = { requested, resolution: describeHost(host, target.host), port: target.port, kind: 'unknown' };
  const sourceIdentity = found && capture.captured ? spiffeUri(identityOf(found)) : undefined;
  const sourceLabel = `pod ${pod.namespace}/${pod.name}${pod.ip ? ` (${pod.ip})` : ''}`;
  const base = { source: sourceFacts(state, pod, found, capture), destination, notes };
  if (!capture.captured && (host.kind === 'service' || host.kind === 'pod-addresses')) notes.push('ztunnel\'s DNS proxy only answers captured pods: this pod asks the cluster\'s DNS, which may not know mesh-only names');

  if (host.kind === 'service-without-answer') {
    destination.kind = 'service';
    destination.service = serviceResourceName(host.service.namespace, host.service.hostname);
    return finish({ ...base, paths: [], unresolved: `the address depends on the cluster's DNS answer; try --to <address>:${target.port} with the address it gives` });
  }
  if (host.kind === 'unknown') {
    const context: PathContext = { state, source, sourceLabel, sourceIp: pod.ip, sourceIdentity, original: { ip: target.host, port: target.port } };
    const reason = 'a name the mesh does not know; if the cluster\'s DNS resolves it to an address the mesh does not know either, the connection is not the mesh\'s';
    const path = capture.captured ? passthroughPath(context, reason) : uncapturedPath(context, capture.why, undefined);
    return finish({ ...base, paths: [path] });
  }

  const ip = host.kind === 'service' ? host.vip : host.kind === 'pod-addresses' ? host.addresses[0]! : host.ip;
  destination.address = ip;
  const context: PathContext = { state, source, sourceLabel, sourceIp: pod.ip, sourceIdentity, original: { ip, port: target.port } };
  const analysis = state.analyzeDestination(source, ip, target.port);
  let service: ServiceFacts | undefined;
  let paths: PathFacts[] = [];
  let unavailable: string | undefined;
  let destinationWorkload: Workload | undefined;
  switch (analysis.kind) {
    case 'passthrough':
      if (analysis.service) {
        destination.kind = 'service';
        destination.service = serviceResourceName(analysis.service.namespace, analysis.service.hostname);
      }
      paths = [passthroughPath(context, analysis.reason)];
      break;
    case 'workload': {
      const resolution = analysis.resolution;
      destinationWorkload = resolution.kind === 'hbone' || resolution.kind === 'plaintext' ? resolution.upstream.workload : resolution.kind === 'waypoint' ? resolution.destination : undefined;
      destination.kind = 'workload';
      if (destinationWorkload) destination.workload = workloadFacts(destinationWorkload, state.network);
      const path = pathOf(context, resolution, 1);
      paths = path ? [path] : [];
      break;
    }
    case 'service': {
      destination.kind = 'service';
      destination.service = analysis.serviceName;
      service = serviceFacts(state, analysis);
      if (analysis.waypoint) {
        // The service's waypoint: every connection goes there; the endpoints below are the waypoint's choice per request.
        if (analysis.waypoint.kind === 'unavailable') unavailable = analysis.waypoint.reason;
        const path = pathOf(context, analysis.waypoint, 1);
        paths = path ? [path] : [];
        if (analysis.waypoint.kind === 'waypoint') notes.push(`service ${analysis.serviceName} has waypoint ${analysis.waypoint.waypointName ?? ''}: the endpoints are picked by the waypoint per request`);
        break;
      }
      unavailable = analysis.evaluation.unavailable;
      const chosen = [...analysis.evaluation.chosenFrom].sort((a, b) => b.probability - a.probability);
      paths = chosen.flatMap((candidate) => pathOf(context, state.resolutionThrough(analysis, candidate), candidate.probability) ?? []);
      break;
    }
  }
  if (!capture.captured) {
    if (service) notes.push('the source is not captured: ztunnel does not choose among these endpoints; they are shown as ztunnel would rank them for this pod');
    return finish({ ...base, service, paths: [uncapturedPath(context, capture.why, destinationWorkload)] });
  }
  return finish({ ...base, service, paths, ...(unavailable !== undefined ? { unavailable } : {}) });
}

function finish(explanation: Omit<Explanation, 'summary'>): Explanation {
  const { source, destination, service, paths, unavailable, unresolved, notes } = explanation;
  return { summary: summaryOf(explanation), source, destination, service, paths, unavailable, unresolved, notes };
}
