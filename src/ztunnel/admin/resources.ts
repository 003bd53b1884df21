/**
 * `GET /debug/resources`: ztunnel's state as the workload API resources it holds, in protobuf JSON,
 * so tools can rebuild the same state and run ztunnel's own logic on it (`ambit explain`).
 */
import { toJson, type JsonValue } from '@bufbuild/protobuf';
import { AuthorizationSchema, type Authorization } from '../../gen/istio/security/authorization_pb.js';
import { ServiceSchema, WorkloadSchema, type Service, type Workload } from '../../gen/istio/workload/workload_pb.js';

export const RESOURCES_PATH = '/debug/resources';

/** What the route reads: the state's settings and resources. */
export interface ResourceSource {
  readonly nodeName: string;
  readonly clusterId: string;
  readonly network: string;
  readonly systemNamespace: string;
  workloads(): Iterable<Workload>;
  services(): Iterable<Service>;
  authorizations(): Iterable<Authorization>;
}

export interface RawResources {
  node: string;
  clusterId: string;
  network: string;
  systemNamespace: string;
  /** `istio.workload.Workload` messages; the resource name is the `uid`. */
  workloads: JsonValue[];
  /** `istio.workload.Service` messages; the resource name is `<namespace>/<hostname>`. */
  services: JsonValue[];
  /** `istio.security.Authorization` messages; the resource name is `<namespace>/<name>`. */
  authorizations: JsonValue[];
}

const sortedBy = <T>(items: Iterable<T>, key: (item: T) => string): T[] => [...items].sort((a, b) => key(a).localeCompare(key(b)));

export function buildRawResources(source: ResourceSource): RawResources {
  return {
    node: source.nodeName,
    clusterId: source.clusterId,
    network: source.network,
    systemNamespace: source.systemNamespace,
    workloads: sortedBy(source.workloads(), (w) => w.uid).map((w) => toJson(WorkloadSchema, w)),
    services: sortedBy(source.services(), (s) => `${s.namespace}/${s.hostname}`).map((s) => toJson(ServiceSchema, s)),
    authorizations: sortedBy(source.authorizations(), (a) => `${a.namespace}/${a.name}`).map((a) => toJson(AuthorizationSchema, a)),
  };
}
