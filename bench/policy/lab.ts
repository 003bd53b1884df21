/**
 * The policy case's part of the one-cluster lab: a second server pod on the client's node (for the
 * same-node row), the DENY policy for the client's identity on both servers, and writes of it
 * through the Kubernetes API with the moments they were sent and acknowledged.
 */
import { CustomObjectsApi } from '@kubernetes/client-node';
import { readState } from '../../src/lab/state.js';
import type { Place, Spawned } from '../exec.js';
import { kubectl, waitForRunningPod } from '../lab-kube.js';
import { CLUSTER, CONTEXT, MESH_NAMESPACE, POD_CONTAINER } from '../lab-topology.js';
import { kubeApiFor, statusCode, withRetries } from '../scale/kube-api.js';
import { startNginx } from '../servers.js';
import type { PolicyWrite } from './enforcement.js';

/** The label both server pods carry (lab-topology.ts gives it to bench-server): the policy's selector. */
const SERVER_LABELS = { app: 'bench-server' };
export const SAME_NODE_SERVER = 'bench-server-same-node';
export const POLICY_NAME = 'bench-policy-deny';
const GROUP = { group: 'security.istio.io', version: 'v1', namespace: MESH_NAMESPACE, plural: 'authorizationpolicies' };

/** The client pod's identity as AuthorizationPolicy principals name it (no spiffe:// prefix). */
export function clientPrincipal(): string {
  const trustDomain = readState()?.topology.trustDomain ?? 'cluster.local';
  return `${trustDomain}/ns/${MESH_NAMESPACE}/sa/default`;
}

export function denyPolicy(principal: string): object {
  return {
    apiVersion: `${GROUP.group}/${GROUP.version}`,
    kind: 'AuthorizationPolicy',
    metadata: { name: POLICY_NAME, namespace: MESH_NAMESPACE },
    spec: { selector: { matchLabels: SERVER_LABELS }, action: 'DENY', rules: [{ from: [{ source: { principals: [principal] } }] }] },
  };
}

export interface SameNodeServer {
  place: Place;
  ip: string;
  nginx: Spawned;
  remove(): Promise<void>;
}

/** A server pod on the client's node, enrolled like the others (its namespace is ambient), with nginx on `port`. */
export async function startSameNodeServer(workDir: string, port: number): Promise<SameNodeServer> {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: SAME_NODE_SERVER, namespace: MESH_NAMESPACE, labels: SERVER_LABELS },
    spec: {
      nodeName: `${CLUSTER}-node1`,
      terminationGracePeriodSeconds: 0,
      containers: [{ name: POD_CONTAINER, image: 'busybox', command: ['sleep', 'infinity'] }],
    },
  };
  await kubectl(CONTEXT, ['apply', '-f', '-'], { input: JSON.stringify(pod) });
  const remove = async () => {
    await kubectl(CONTEXT, ['delete', 'pod', '-n', MESH_NAMESPACE, SAME_NODE_SERVER, '--ignore-not-found', '--wait=false']);
  };
  try {
    const running = await waitForRunningPod(CLUSTER, MESH_NAMESPACE, SAME_NODE_SERVER, POD_CONTAINER);
    const nginx = await startNginx(running.place, workDir, 'policy-same-node', port);
    return { place: running.place, ip: running.ip, nginx, remove };
  } catch (err) {
    await remove().catch(() => undefined);
    throw err;
  }
}

/** Writes of the DENY policy through the API (one keep-alive connection, so a write is one round trip). */
export class PolicyWriter {
  private readonly api = kubeApiFor(CustomObjectsApi, CONTEXT);
  private readonly body = denyPolicy(clientPrincipal());

  /** Opens the connection to the API server and removes a policy a stopped run left behind. */
  async prepare(): Promise<void> {
    await withRetries('listing AuthorizationPolicies', () => this.api.listNamespacedCustomObject(GROUP));
    await this.removeIfPresent();
  }

  async apply(): Promise<PolicyWrite> {
    const sent = Date.now();
    await this.api.createNamespacedCustomObject({ ...GROUP, body: this.body });
    return { change: 'applied', sent, ack: Date.now() };
  }

  async remove(): Promise<PolicyWrite> {
    const sent = Date.now();
    await this.api.deleteNamespacedCustomObject({ ...GROUP, name: POLICY_NAME });
    return { change: 'removed', sent, ack: Date.now() };
  }

  /** Leaves no policy behind (for the clean-up: later cases must not be denied). */
  async removeIfPresent(): Promise<void> {
    try {
      await this.remove();
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
    }
  }
}
