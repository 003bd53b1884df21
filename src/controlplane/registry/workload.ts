import { create } from '@bufbuild/protobuf';

import { ipToBytes } from '../../api/ip.js';
import {
  DATAPLANE_MODE_AMBIENT,
  DATAPLANE_MODE_LABEL,
  DATAPLANE_MODE_NONE,
  DEFAULT_SERVICE_ACCOUNT,
  DEFAULT_TRUST_DOMAIN,
  NETWORK_LABEL,
  REGION_LABEL,
  SUBZONE_LABEL,
  ZONE_LABEL,
  podWorkloadUid,
} from '../../api/resources.js';
import {
  LocalitySchema,
  NetworkMode,
  TunnelProtocol,
  WorkloadSchema,
  WorkloadStatus,
  WorkloadType,
  type GatewayAddress,
  type Locality,
  type PortList,
  type Workload,
} from '../../gen/istio/workload/workload_pb.js';
import type { Labels, PodView } from './kube-objects.js';

export interface WorkloadContext {
  clusterId: string;
  /** The cluster's network, for pods without their own `topology.istio.io/network` label. */
  network: string;
  trustDomain: string;
  /** The `istio.io/dataplane-mode` label of the pod's namespace, if any. */
  namespaceDataplaneMode: string | undefined;
  locality: Locality | undefined;
  /** `<ns>/<hostname>` → ports, for every service selecting the pod. */
  services: Record<string, PortList>;
  /** Names of the WORKLOAD_SELECTOR authorizations selecting the pod, sorted. */
  authorizationPolicies: string[];
  /** Cluster DNS domain, for the pod's own DNS name. */
  domainSuffix: string;
  /** The waypoint traffic addressed to this workload goes through (Workload.waypoint), if any. */
  waypoint?: GatewayAddress;
}

/** Pods that are gone or not yet addressable have no workload. */
export function hasWorkload(pod: PodView): boolean {
  return pod.ips.length > 0 && pod.phase !== 'Succeeded' && pod.phase !== 'Failed';
}

export function buildWorkload(pod: PodView, context: WorkloadContext): Workload | undefined {
  if (!hasWorkload(pod)) return undefined;
  const [workloadName, workloadType] = workloadNameAndType(pod);
  const [canonicalName, canonicalRevision] = canonicalService(pod.labels, workloadName);
  return create(WorkloadSchema, {
    uid: podWorkloadUid(context.clusterId, pod.namespace, pod.name),
    name: pod.name,
    namespace: pod.namespace,
    addresses: pod.ips.map(ipToBytes),
    hostname: podDnsName(pod, context.domainSuffix),
    network: pod.labels[NETWORK_LABEL] || context.network,
    tunnelProtocol: isEnrolled(pod, context.namespaceDataplaneMode) ? TunnelProtocol.HBONE : TunnelProtocol.NONE,
    // Omitted values mean the defaults on the wire (DESIGN §3).
    trustDomain: context.trustDomain === DEFAULT_TRUST_DOMAIN ? '' : context.trustDomain,
    serviceAccount: pod.serviceAccount === DEFAULT_SERVICE_ACCOUNT ? '' : pod.serviceAccount,
    node: pod.nodeName,
    canonicalName,
    canonicalRevision,
    workloadType,
    workloadName,
    services: context.services,
    authorizationPolicies: context.authorizationPolicies,
    status: pod.ready && !pod.deleting ? WorkloadStatus.HEALTHY : WorkloadStatus.UNHEALTHY,
    clusterId: context.clusterId,
    locality: context.locality,
    networkMode: pod.hostNetwork ? NetworkMode.HOST_NETWORK : NetworkMode.STANDARD,
    waypoint: context.waypoint,
  });
}

/**
 * A pod's own DNS name, `<hostname>.<subdomain>.<ns>.svc.<domain>`, when it sets both (StatefulSet
 * pods do); cluster DNS serves it only while a headless Service named like the subdomain exists,
 * which ztunnel checks before answering it.
 */
export function podDnsName(pod: Pick<PodView, 'hostname' | 'subdomain' | 'namespace'>, domainSuffix: string): string {
  if (!pod.hostname || !pod.subdomain) return '';
  return `${pod.hostname}.${pod.subdomain}.${pod.namespace}.svc.${domainSuffix}`.toLowerCase();
}

/**
 * Ambient enrolment: the pod's own label wins (`ambient` enrols, `none` opts out), else the
 * namespace label. Host-network pods share the node's network namespace and are never captured.
 */
export function isEnrolled(pod: Pick<PodView, 'hostNetwork' | 'labels'>, namespaceDataplaneMode: string | undefined): boolean {
  if (pod.hostNetwork) return false;
  const podMode = pod.labels[DATAPLANE_MODE_LABEL];
  if (podMode === DATAPLANE_MODE_AMBIENT) return true;
  if (podMode === DATAPLANE_MODE_NONE) return false;
  return namespaceDataplaneMode === DATAPLANE_MODE_AMBIENT;
}

/** A Job named `<cronjob>-<schedule timestamp>` was created by that CronJob (Kubernetes' naming). */
const CRONJOB_JOB_NAME = /^(.+)-\d{8,10}$/;

export function workloadNameAndType(pod: Pick<PodView, 'name' | 'labels' | 'owner'>): [string, WorkloadType] {
  const owner = pod.owner;
  if (owner?.kind === 'ReplicaSet') {
    const deployment = deploymentOfReplicaSet(owner.name, pod.labels['pod-template-hash']);
    if (deployment) return [deployment, WorkloadType.DEPLOYMENT];
  } else if (owner?.kind === 'Job') {
    const cronJob = CRONJOB_JOB_NAME.exec(owner.name)?.[1];
    return cronJob ? [cronJob, WorkloadType.CRONJOB] : [owner.name, WorkloadType.JOB];
  }
  return [pod.name, WorkloadType.POD];
}

/** A Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`. */
function deploymentOfReplicaSet(replicaSet: string, podTemplateHash: string | undefined): string | undefined {
  if (podTemplateHash) {
    const suffix = `-${podTemplateHash}`;
    return replicaSet.endsWith(suffix) && replicaSet.length > suffix.length ? replicaSet.slice(0, -suffix.length) : undefined;
  }
  const cut = replicaSet.lastIndexOf('-');
  return cut > 0 ? replicaSet.slice(0, cut) : undefined;
}

export function canonicalService(labels: Labels, workloadName: string): [string, string] {
  const name = labels['service.istio.io/canonical-name'] || labels['app.kubernetes.io/name'] || labels['app'] || workloadName;
  const revision =
    labels['service.istio.io/canonical-revision'] || labels['app.kubernetes.io/version'] || labels['version'] || 'latest';
  return [name, revision];
}

/** A node's locality from its topology labels; undefined when it has none. */
export function nodeLocality(labels: Labels): Locality | undefined {
  const region = labels[REGION_LABEL] ?? '';
  const zone = labels[ZONE_LABEL] ?? '';
  const subzone = labels[SUBZONE_LABEL] ?? '';
  if (!region && !zone && !subzone) return undefined;
  return create(LocalitySchema, { region, zone, subzone });
}
