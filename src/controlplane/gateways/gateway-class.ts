/**
 * The GatewayClasses of the controller's kinds (istio-east-west, istio-waypoint, istio-mesh): each
 * created when missing, marked Accepted when it names our controller. A class of that name that
 * names another controller means another implementation (Istio itself) serves these Gateways, and
 * the controller must leave them alone.
 */
import type { Logger } from '../../util/log.js';
import { isRecord } from './gateway.js';
import { EAST_WEST_KIND, type GatewayKind } from './kinds.js';
import type { GatewayApi, GatewayClassObject } from './kube-api.js';
import { renderGatewayClass } from './render.js';
import { kubeTime, type Condition } from './status.js';
import type { GatewayControllerMetrics } from './metrics.js';

export type ClassOwnership = { ours: true } | { ours: false; controllerName: string };

export function gatewayClassConditions(gatewayClass: GatewayClassObject, now: Date, kind: GatewayKind = EAST_WEST_KIND): Condition[] {
  const previous = isRecord(gatewayClass.status) && Array.isArray(gatewayClass.status.conditions) ? gatewayClass.status.conditions.filter(isRecord) : [];
  const old = previous.find((c) => c.type === 'Accepted');
  return [
    {
      type: 'Accepted',
      status: 'True',
      reason: 'Accepted',
      message: `handled by ambit (${kind.controllerName})`,
      observedGeneration: gatewayClass.metadata?.generation ?? 0,
      lastTransitionTime: old?.status === 'True' && typeof old.lastTransitionTime === 'string' ? old.lastTransitionTime : kubeTime(now),
    },
  ];
}

function acceptedAlready(gatewayClass: GatewayClassObject): boolean {
  const conditions = isRecord(gatewayClass.status) && Array.isArray(gatewayClass.status.conditions) ? gatewayClass.status.conditions.filter(isRecord) : [];
  const accepted = conditions.find((c) => c.type === 'Accepted');
  return accepted?.status === 'True' && accepted.observedGeneration === (gatewayClass.metadata?.generation ?? 0);
}

export async function ensureGatewayClass(
  api: GatewayApi,
  deps: { log: Logger; metrics: GatewayControllerMetrics; now: () => Date },
  kind: GatewayKind = EAST_WEST_KIND,
): Promise<ClassOwnership> {
  const name = kind.className;
  let current = await api.readGatewayClass(name);
  if (!current) {
    current = await api.createGatewayClass(renderGatewayClass(kind));
    if (current) {
      deps.metrics.writes.inc({ kind: 'GatewayClass', operation: 'create' });
      deps.log.info({ gatewayClass: name, controllerName: kind.controllerName }, 'created GatewayClass');
    } else {
      current = await api.readGatewayClass(name);
    }
  }
  if (!current) throw new Error(`GatewayClass ${name} was deleted while being created`);
  const controllerName = isRecord(current.spec) && typeof current.spec.controllerName === 'string' ? current.spec.controllerName : '';
  if (controllerName !== kind.controllerName) return { ours: false, controllerName };
  if (!acceptedAlready(current)) {
    await api.patchGatewayClassStatus(name, { conditions: gatewayClassConditions(current, deps.now(), kind) });
    deps.metrics.writes.inc({ kind: 'GatewayClass', operation: 'status' });
  }
  return { ours: true };
}
