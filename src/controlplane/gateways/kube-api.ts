/**
 * The API-server calls of the east-west gateway controller, behind an interface so the reconcile
 * logic runs against a fake in tests.
 */
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  type V1Deployment,
  type V1Service,
  type V1ServiceAccount,
} from '@kubernetes/client-node';
import { apiClient, isConflict, isNotFound, mergePatch, serverSideApply, statusPatch } from '../../kube/index.js';
import { FIELD_MANAGER, GATEWAY_API_GROUP, GATEWAY_API_VERSION } from './constants.js';
import type { GatewayStatus } from './status.js';

export type OwnedKind = 'ServiceAccount' | 'Deployment' | 'Service';
export type OwnedObject = (V1ServiceAccount | V1Deployment | V1Service) & { kind: OwnedKind };

export interface GatewayClassObject extends KubernetesObject {
  spec?: unknown;
  status?: unknown;
}

export interface GatewayApi {
  /** The object as the API server has it; undefined when there is none. */
  read(kind: OwnedKind, namespace: string, name: string): Promise<KubernetesObject | undefined>;
  /** Server-side apply, forcing: the controller owns every field it sets on these objects. */
  apply(object: OwnedObject): Promise<void>;
  /** Deletes the object if it is still the one with `uid`; gone or replaced is fine. */
  remove(kind: OwnedKind, namespace: string, name: string, uid: string): Promise<void>;
  /** Merge patch of gateways/status. */
  patchGatewayStatus(namespace: string, name: string, status: GatewayStatus): Promise<void>;
  readGatewayClass(name: string): Promise<GatewayClassObject | undefined>;
  /** Creates it; resolves undefined when one of that name already exists. */
  createGatewayClass(object: GatewayClassObject): Promise<GatewayClassObject | undefined>;
  /** Merge patch of gatewayclasses/status. */
  patchGatewayClassStatus(name: string, status: { conditions: unknown[] }): Promise<void>;
}

async function orUndefined<T>(request: Promise<T>): Promise<T | undefined> {
  try {
    return await request;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export function kubeGatewayApi(config: KubeConfig): GatewayApi {
  const core = apiClient(config, CoreV1Api);
  const apps = apiClient(config, AppsV1Api);
  const custom = apiClient(config, CustomObjectsApi);
  const gatewayApi = { group: GATEWAY_API_GROUP, version: GATEWAY_API_VERSION };
  const apply = { fieldManager: FIELD_MANAGER, force: true };
  return {
    read(kind, namespace, name) {
      const ref = { name, namespace };
      if (kind === 'ServiceAccount') return orUndefined(core.readNamespacedServiceAccount(ref));
      if (kind === 'Deployment') return orUndefined(apps.readNamespacedDeployment(ref));
      return orUndefined(core.readNamespacedService(ref));
    },
    async apply(object) {
      const request = { name: object.metadata!.name!, namespace: object.metadata!.namespace!, body: object, ...apply };
      if (object.kind === 'ServiceAccount') await core.patchNamespacedServiceAccount(request, serverSideApply);
      else if (object.kind === 'Deployment') await apps.patchNamespacedDeployment(request, serverSideApply);
      else await core.patchNamespacedService(request, serverSideApply);
    },
    async remove(kind, namespace, name, uid) {
      const request = { name, namespace, body: { preconditions: { uid } } };
      try {
        if (kind === 'ServiceAccount') await core.deleteNamespacedServiceAccount(request);
        else if (kind === 'Deployment') await apps.deleteNamespacedDeployment(request);
        else await core.deleteNamespacedService(request);
      } catch (err) {
        // 404: already gone; 409: the uid precondition failed, the name now holds another object.
        if (!isNotFound(err) && !isConflict(err)) throw err;
      }
    },
    async patchGatewayStatus(namespace, name, status) {
      await custom.patchNamespacedCustomObjectStatus({ ...gatewayApi, plural: 'gateways', namespace, name, body: statusPatch(status) }, mergePatch);
    },
    readGatewayClass(name) {
      return orUndefined(custom.getClusterCustomObject({ ...gatewayApi, plural: 'gatewayclasses', name }) as Promise<GatewayClassObject>);
    },
    async createGatewayClass(object) {
      try {
        return (await custom.createClusterCustomObject({ ...gatewayApi, plural: 'gatewayclasses', body: object, fieldManager: FIELD_MANAGER })) as GatewayClassObject;
      } catch (err) {
        if (isConflict(err)) return undefined;
        throw err;
      }
    },
    async patchGatewayClassStatus(name, status) {
      await custom.patchClusterCustomObjectStatus({ ...gatewayApi, plural: 'gatewayclasses', name, body: statusPatch(status) }, mergePatch);
    },
  };
}
