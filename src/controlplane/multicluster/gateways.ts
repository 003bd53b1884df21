import { isIP } from 'node:net';

import { z } from 'zod';

import { NETWORK_LABEL } from '../../api/resources.js';
import { issuesToProblems, objectRef, refKey } from '../registry/kube-objects.js';
import type { GatewayInfo } from './types.js';

/** The GatewayClass of east-west gateways (Istio's name). */
export const EAST_WEST_GATEWAY_CLASS = 'istio-east-west';

/** An east-west Gateway as read from its object; its network may default to the cluster's. */
interface EastWestGateway {
  namespace: string;
  name: string;
  networkLabel: string | undefined;
  address: string;
  programmed: boolean;
}

export type GatewayReading =
  | { kind: 'ignored' }
  | { kind: 'unusable'; namespace: string; name: string; reason: string }
  | { kind: 'usable'; gateway: EastWestGateway };

const gatewaySchema = z.object({
  metadata: z.object({
    name: z.string().min(1),
    namespace: z.string().min(1),
    labels: z.record(z.string(), z.string()).nullish(),
  }),
  spec: z.object({ gatewayClassName: z.string() }),
  status: z
    .object({
      addresses: z.array(z.object({ type: z.string().nullish(), value: z.string() })).nullish(),
      conditions: z.array(z.object({ type: z.string(), status: z.string() })).nullish(),
    })
    .nullish(),
});

/** Reads a Gateway object: only class `istio-east-west` gateways with an IP in `status.addresses[0]` are usable. */
export function readGateway(object: unknown): GatewayReading {
  const className = (object as { spec?: { gatewayClassName?: unknown } } | null)?.spec?.gatewayClassName;
  if (className !== EAST_WEST_GATEWAY_CLASS) return { kind: 'ignored' };
  const ref = objectRef(object);
  const parsed = gatewaySchema.safeParse(object);
  if (!parsed.success) {
    const problems = issuesToProblems(parsed.error).map((p) => `${p.field}: ${p.message}`).join('; ');
    return { kind: 'unusable', namespace: ref?.namespace ?? '', name: ref?.name ?? '', reason: `invalid Gateway: ${problems}` };
  }
  const { metadata, status } = parsed.data;
  const named = { namespace: metadata.namespace, name: metadata.name };
  const first = status?.addresses?.[0];
  if (!first) return { kind: 'unusable', ...named, reason: 'status.addresses is empty (the LoadBalancer has no address yet)' };
  if (isIP(first.value) === 0) {
    return { kind: 'unusable', ...named, reason: `status.addresses[0].value ${JSON.stringify(first.value)} is not an IP address` };
  }
  return {
    kind: 'usable',
    gateway: {
      ...named,
      networkLabel: metadata.labels?.[NETWORK_LABEL] || undefined,
      address: first.value,
      // A gateway whose controller writes no Programmed condition is taken as serving.
      programmed: status?.conditions?.find((condition) => condition.type === 'Programmed')?.status !== 'False',
    },
  };
}

/** The usable east-west gateways of one cluster, by `<ns>/<name>`. */
export class GatewayIndex {
  private readonly usable = new Map<string, EastWestGateway>();
  /** Why each unusable east-west gateway is unusable, so a reason is reported once. */
  private readonly unusable = new Map<string, string>();

  /**
   * Returns whether the usable set changed, and the reason when the gateway has just become
   * unusable (or unusable for another reason).
   */
  upsert(object: unknown): { changed: boolean; newProblem?: string; key?: string } {
    const reading = readGateway(object);
    const ref = objectRef(object);
    const key = ref ? refKey(ref) : undefined;
    if (!key) return { changed: false };
    if (reading.kind === 'usable') {
      this.unusable.delete(key);
      const previous = this.usable.get(key);
      this.usable.set(key, reading.gateway);
      return { changed: !previous || JSON.stringify(previous) !== JSON.stringify(reading.gateway) };
    }
    const changed = this.usable.delete(key);
    if (reading.kind === 'ignored') {
      this.unusable.delete(key);
      return { changed };
    }
    const known = this.unusable.get(key);
    this.unusable.set(key, reading.reason);
    return { changed, key, ...(known === reading.reason ? {} : { newProblem: reading.reason }) };
  }

  remove(object: unknown): boolean {
    const ref = objectRef(object);
    if (!ref) return false;
    this.unusable.delete(refKey(ref));
    return this.usable.delete(refKey(ref));
  }

  /** Sorted by namespace and name; gateways without a network label are on `clusterNetwork`. */
  list(clusterId: string, clusterNetwork: string): GatewayInfo[] {
    return [...this.usable.values()]
      .map((gateway) => ({
        clusterId,
        namespace: gateway.namespace,
        name: gateway.name,
        network: gateway.networkLabel ?? clusterNetwork,
        address: gateway.address,
        programmed: gateway.programmed,
      }))
      .sort(compareGateways);
  }
}

/** Stable gateway order: cluster, namespace, name. */
export function compareGateways(a: GatewayInfo, b: GatewayInfo): number {
  return compare(a.clusterId, b.clusterId) || compare(a.namespace, b.namespace) || compare(a.name, b.name);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
