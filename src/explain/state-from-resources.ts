/** Rebuilds a ztunnel's state from its `/debug/resources` answer, so its own logic can run here. */
import { fromJson, type JsonValue } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { z } from 'zod';
import { AuthorizationSchema } from '../gen/istio/security/authorization_pb.js';
import { ServiceSchema, WorkloadSchema } from '../gen/istio/workload/workload_pb.js';
import { authorizationResourceName, serviceResourceName } from '../api/resources.js';
import { RESOURCES_PATH } from '../ztunnel/admin/resources.js';
import { ZtunnelState } from '../ztunnel/state/store.js';
import { StateUpdateError } from '../ztunnel/state/validation.js';

export class ResourcesError extends Error {}

const rawResources = z.object({
  node: z.string(),
  clusterId: z.string(),
  network: z.string(),
  systemNamespace: z.string(),
  workloads: z.array(z.unknown()),
  services: z.array(z.unknown()),
  authorizations: z.array(z.unknown()),
});

export interface RebuiltState {
  state: ZtunnelState;
  /** Resources the state refused (as the ztunnel would have), in words. */
  refused: string[];
}

function decode<T>(items: unknown[], kind: string, where: string, parse: (json: JsonValue) => T): T[] {
  return items.map((item, index) => {
    try {
      return parse(item as JsonValue);
    } catch (err) {
      throw new ResourcesError(`${where}: ${kind}[${index}] is not a valid ${kind} message: ${(err as Error).message}`);
    }
  });
}

function refusedBy(apply: () => void): string[] {
  try {
    apply();
    return [];
  } catch (err) {
    if (err instanceof StateUpdateError) return [err.message];
    throw err;
  }
}

/** Parses the body of `/debug/resources`; `where` names its origin in errors (`ztunnel-abc12 on node-1`). */
export function stateFromResources(body: string, where: string): RebuiltState {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    const preview = body.trim().slice(0, 120);
    if (preview.startsWith('no such endpoint')) throw new ResourcesError(`${where} does not serve ${RESOURCES_PATH}: it runs an ambit version older than \`ambit explain\`; upgrade ztunnel`);
    throw new ResourcesError(`${where}: ${RESOURCES_PATH} did not return JSON${preview ? `: ${preview}` : ' (empty answer)'}`);
  }
  const parsed = rawResources.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 5).map((issue) => `${issue.path.map(String).join('.') || '(top level)'}: ${issue.message}`);
    throw new ResourcesError(`${where}: unexpected ${RESOURCES_PATH} answer: ${problems.join('; ')}`);
  }
  const raw = parsed.data;
  const workloads = decode(raw.workloads, 'workload', where, (item) => fromJson(WorkloadSchema, item));
  const services = decode(raw.services, 'service', where, (item) => fromJson(ServiceSchema, item));
  const authorizations = decode(raw.authorizations, 'authorization', where, (item) => fromJson(AuthorizationSchema, item));
  const state = new ZtunnelState({ network: raw.network, nodeName: raw.node, clusterId: raw.clusterId, systemNamespace: raw.systemNamespace, logger: pino({ level: 'silent' }) });
  const refused = [
    ...refusedBy(() =>
      state.applyAddresses(
        [
          ...workloads.map((workload) => ({ name: workload.uid, workload })),
          ...services.map((service) => ({ name: serviceResourceName(service.namespace, service.hostname), service })),
        ],
        [],
      ),
    ),
    ...refusedBy(() => state.applyAuthorizations(authorizations.map((authorization) => ({ name: authorizationResourceName(authorization.namespace, authorization.name), authorization })), [])),
  ];
  return { state, refused };
}
