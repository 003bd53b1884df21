/**
 * GatewayClass istio-east-west: created when missing, marked Accepted when it names our
 * controller (and ambit's other classes, created when missing). A class of that name that names another controller means another implementation
 * (Istio itself) serves these Gateways, and the controller must leave them alone.
 */
import type { Logger } from '../../util/log.js';
import { EAST_WEST_CONTROLLER_NAME, EAST_WEST_GATEWAY_CLASS, GATEWAY_API_GROUP } from './constants.js';
import { isRecord } from './gateway.js';
import type { GatewayApi, GatewayClassObject } from './kube-api.js';
import { renderGatewayClass } from './render.js';
import { kubeTime, type Condition } from './status.js';
import type { GatewayControllerMetrics } from './metrics.js';

export type ClassOwnership = { ours: true } | { ours: false; controllerName: string };

export function gatewayClassConditions(gatewayClass: GatewayClassObject, now: Date): Condition[] {
  const previous = isRecord(gatewayClass.status) && Array.isArray(gatewayClass.status.conditions) ? gatewayClass.status.conditions.filter(isRecord) : [];
  const old = previous.find((c) => c.type === 'Accepted');
  return [
    {
      type: 'Accepted',
      status: 'True',
      reason: 'Accepted',
      message: `handled by ambit (${EAST_WEST_CONTROLLER_NAME})`,
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

export async function ensureGatewayClass(api: GatewayApi, deps: { log: Logger; metrics: GatewayControllerMetrics; now: () => Date }): Promise<ClassOwnership> {
  let current = await api.readGatewayClass(EAST_WEST_GATEWAY_CLASS);
  if (!current) {
    current = await api.createGatewayClass(renderGatewayClass());
    if (current) {
      deps.metrics.writes.inc({ kind: 'GatewayClass', operation: 'create' });
      deps.log.info({ gatewayClass: EAST_WEST_GATEWAY_CLASS, controllerName: EAST_WEST_CONTROLLER_NAME }, 'created GatewayClass');
    } else {
      current = await api.readGatewayClass(EAST_WEST_GATEWAY_CLASS);
    }
  }
  if (!current) throw new Error(`GatewayClass ${EAST_WEST_GATEWAY_CLASS} was deleted while being created`);
  const controllerName = isRecord(current.spec) && typeof current.spec.controllerName === 'string' ? current.spec.controllerName : '';
  if (controllerName !== EAST_WEST_CONTROLLER_NAME) return { ours: false, controllerName };
  if (!acceptedAlready(current)) {
    await api.patchGatewayClassStatus(EAST_WEST_GATEWAY_CLASS, { conditions: gatewayClassConditions(current, deps.now()) });
    deps.metrics.writes.inc({ kind: 'GatewayClass', operation: 'status' });
  }
  return { ours: true };
}

/**
 * A GatewayClass of ambit's (istio for ingress, istio-waypoint and istio-mesh for waypoints):
 * created with `controllerName` when missing and marked Accepted. One that exists is left as it is.
 */
export async function createGatewayClassIfMissing(api: GatewayApi, className: string, controllerName: string, description: string, now: Date): Promise<void> {
  if (await api.readGatewayClass(className)) return;
  await api.createGatewayClass({ apiVersion: `${GATEWAY_API_GROUP}/v1`, kind: 'GatewayClass', metadata: { name: className }, spec: { controllerName, description } });
  await api.patchGatewayClassStatus(className, { conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'handled by ambit', observedGeneration: 1, lastTransitionTime: kubeTime(now) }] });
}
