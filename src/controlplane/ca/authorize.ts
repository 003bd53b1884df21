import { AuthenticationV1Api, type KubeConfig, type RequestContext, type ResponseContext, type V1Pod } from '@kubernetes/client-node';
// The client's own Observable stub: request middleware (here: the abort signal) is written with it.
import { of } from '@kubernetes/client-node/dist/gen/rxjsStub.js';
import { apiClient } from '../../kube/index.js';
import { InvalidIdentityError, parseSpiffeUri, spiffeUri, type Identity } from '../../api/identity.js';
import { DEFAULT_SERVICE_ACCOUNT } from '../../api/resources.js';
import { CaRequestError } from './errors.js';
import { describeError } from './store.js';
import { BoundedTokenReviewer, LEGACY_SECRET_NAME_CLAIM, unverifiedJwtPayload, type BoundedReviewerOptions, type TokenReviewer, type TokenReviewResult } from './token-review.js';

export type { TokenReviewer, TokenReviewResult } from './token-review.js';

/** Read access to the pods the control plane knows (an informer cache). */
export interface PodDirectory {
  getPod(namespace: string, name: string): V1Pod | undefined | Promise<V1Pod | undefined>;
  podsOnNode(node: string): V1Pod[] | Promise<V1Pod[]>;
}

export const CA_TOKEN_AUDIENCE = 'istio-ca';
/** TokenReview `extra` keys of bound service account tokens. */
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';
const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;
const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** TokenReview through the API server; `signal` aborts the HTTP request (the caller's timeout). */
export function kubeTokenReviewer(kubeConfig: KubeConfig): TokenReviewer {
  const api = apiClient(kubeConfig, AuthenticationV1Api);
  return {
    async review(token, audiences, signal) {
      const withSignal = signal
        ? {
            middleware: [{ pre: (context: RequestContext) => (context.setSignal(signal), of(context)), post: (context: ResponseContext) => of(context) }],
            middlewareMergeStrategy: 'append' as const,
          }
        : undefined;
      const review = await api.createTokenReview(
        { body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } },
        withSignal,
      );
      const status = review.status;
      return {
        authenticated: status?.authenticated === true,
        username: status?.user?.username,
        extra: status?.user?.extra,
        audiences: status?.audiences,
        error: status?.error,
      };
    },
  };
}

/** A PodDirectory over a list of cached pods (e.g. a pod informer's `list()`). */
export function cachedPodDirectory(listPods: () => V1Pod[]): PodDirectory {
  return {
    getPod: (namespace, name) => listPods().find((pod) => pod.metadata?.namespace === namespace && pod.metadata?.name === name),
    podsOnNode: (node) => listPods().filter((pod) => pod.spec?.nodeName === node),
  };
}

/** An authenticated caller: a Kubernetes service account, possibly bound to a pod. */
export interface CaCaller {
  username: string;
  identity: Identity;
  podName?: string;
  podUid?: string;
}

/** A granted request: who asked, for which identity, and (for impersonation) the node that justified it. */
export interface CertificateGrant {
  caller: CaCaller;
  identity: string;
  impersonated: boolean;
  node?: string;
}

export interface AuthorizerOptions {
  trustDomain: string;
  /** This cluster's name; callers sending another `clusterid` are refused. */
  clusterName: string;
  systemNamespace: string;
  tokenReviewer: TokenReviewer;
  pods: PodDirectory;
  /** Service accounts (`<namespace>/<name>`) allowed to obtain identities of pods on their node; default `<systemNamespace>/ztunnel`. */
  nodeAgentServiceAccounts?: string[];
  audiences?: string[];
  /** Cache, concurrency and timeout of TokenReviews (every review goes through them). */
  tokenReview?: BoundedReviewerOptions;
}

/** Decides who may obtain which workload identity (DESIGN §3 CA). */
export class CertificateAuthorizer {
  private readonly nodeAgents: Set<string>;
  private readonly audiences: string[];
  /** Every TokenReview of the CA and of xDS goes through this one: cached, bounded, timed out. */
  readonly tokenReviewer: BoundedTokenReviewer;

  constructor(private readonly options: AuthorizerOptions) {
    this.nodeAgents = new Set(options.nodeAgentServiceAccounts ?? [`${options.systemNamespace}/ztunnel`]);
    this.audiences = options.audiences ?? [CA_TOKEN_AUDIENCE];
    this.tokenReviewer = new BoundedTokenReviewer(options.tokenReviewer, options.tokenReview);
  }

  /** Authenticates the caller from its call metadata (`authorization: Bearer …`, `clusterid`). */
  async authenticate(metadata: { authorization?: string; clusterId?: string }): Promise<CaCaller> {
    const token = bearerToken(metadata.authorization);
    checkClusterId(metadata.clusterId, { ourCluster: this.options.clusterName });
    refuseNonMeshToken(token);
    let review: TokenReviewResult;
    try {
      review = await this.tokenReviewer.review(token, this.audiences);
    } catch (err) {
      if (err instanceof CaRequestError) throw err;
      throw new CaRequestError('token_review_failed', `cannot review the caller's token with the API server: ${describeError(err)}`);
    }
    if (!review.authenticated) {
      throw new CaRequestError('unauthenticated', `token rejected by the API server: ${review.error || 'not authenticated'}`);
    }
    // The API server answers with the requested audiences the token is valid for; none of ours means it
    // was issued for someone else (e.g. the API server itself).
    if (!this.audiences.some((audience) => review.audiences?.includes(audience))) {
      throw new CaRequestError(
        'unauthenticated',
        `token is not valid for audience ${this.audiences.join(' or ')} (the API server reports ${JSON.stringify(review.audiences ?? [])}): use a projected service account token with audience ${CA_TOKEN_AUDIENCE}`,
      );
    }
    const username = review.username ?? '';
    const match = SERVICE_ACCOUNT_USER.exec(username);
    if (!match) throw new CaRequestError('permission_denied', `caller ${JSON.stringify(username)} is not a service account (want system:serviceaccount:<namespace>:<name>)`);
    return {
      username,
      identity: { trustDomain: this.options.trustDomain, namespace: match[1]!, serviceAccount: match[2]! },
      podName: review.extra?.[POD_NAME_EXTRA]?.[0],
      podUid: review.extra?.[POD_UID_EXTRA]?.[0],
    };
  }

  /**
   * Grants `csrIdentity` (the CSR's URI SAN) to the caller if it is the caller's own identity, or if
   * the caller is a node agent (ztunnel) and a live pod with that identity runs on the agent's node.
   */
  async authorize(caller: CaCaller, request: { csrIdentity: string; impersonatedIdentity?: string }): Promise<CertificateGrant> {
    const { csrIdentity, impersonatedIdentity } = request;
    if (impersonatedIdentity !== undefined && impersonatedIdentity !== csrIdentity) {
      throw new CaRequestError('invalid_request', `ImpersonatedIdentity ${impersonatedIdentity} differs from the CSR's URI SAN ${csrIdentity}`);
    }
    let requested: Identity;
    try {
      requested = parseSpiffeUri(csrIdentity);
    } catch (err) {
      if (err instanceof InvalidIdentityError) throw new CaRequestError('invalid_request', `CSR URI SAN: ${err.message}`);
      throw err;
    }
    if (requested.trustDomain !== this.options.trustDomain) {
      throw new CaRequestError('permission_denied', `${csrIdentity} is outside this mesh's trust domain ${this.options.trustDomain}`);
    }
    if (csrIdentity === spiffeUri(caller.identity)) return { caller, identity: csrIdentity, impersonated: false };

    const callerAccount = `${caller.identity.namespace}/${caller.identity.serviceAccount}`;
    if (!this.nodeAgents.has(callerAccount)) {
      throw new CaRequestError('permission_denied', `service account ${callerAccount} may only obtain its own identity ${spiffeUri(caller.identity)}, not ${csrIdentity}`);
    }
    const node = await this.nodeOfAgent(caller);
    const pods = await this.options.pods.podsOnNode(node);
    if (!pods.some((pod) => runsAs(pod, requested) && pod.spec?.nodeName === node)) {
      throw new CaRequestError('permission_denied', `ztunnel on node ${node} may not obtain ${csrIdentity}: no pod with that identity runs on ${node}`);
    }
    return { caller, identity: csrIdentity, impersonated: true, node };
  }

  /** The node of the node agent's pod, named by its bound token and looked up in the system namespace. */
  private async nodeOfAgent(caller: CaCaller): Promise<string> {
    const account = `${caller.identity.namespace}/${caller.identity.serviceAccount}`;
    if (!caller.podName) {
      throw new CaRequestError(
        'permission_denied',
        `token of ${account} is not bound to a pod (no ${POD_NAME_EXTRA} in the TokenReview): use a projected service account token`,
      );
    }
    const namespace = this.options.systemNamespace;
    const pod = await this.options.pods.getPod(namespace, caller.podName);
    if (!pod) throw new CaRequestError('permission_denied', `pod ${namespace}/${caller.podName} of ${account} is not known to the control plane`);
    if (caller.podUid && pod.metadata?.uid && pod.metadata.uid !== caller.podUid) {
      throw new CaRequestError('permission_denied', `token of ${account} is bound to pod ${namespace}/${caller.podName} uid ${caller.podUid}, which no longer exists`);
    }
    const node = pod.spec?.nodeName;
    if (!node) throw new CaRequestError('permission_denied', `pod ${namespace}/${caller.podName} of ${account} is not scheduled to a node`);
    return node;
  }
}

/** The token of an `authorization: Bearer <token>` value. */
export function bearerToken(header: string | undefined): string {
  const token = header ? BEARER.exec(header)?.[1] : undefined;
  if (!token) throw new CaRequestError('unauthenticated', "no bearer token (want metadata 'authorization: Bearer <service account token>')");
  return token;
}

/**
 * Refuses, before any TokenReview, what can never be a mesh credential:
 * - anything that is not a JWT (every service account token is one), so garbage costs no API call;
 * - legacy Secret-based service account tokens (they carry the Secret's name and no audience or pod
 *   binding), such as the reader token of a remote secret that other clusters hold. With the API
 *   server's default --api-audiences the audience check already refuses them (a token without `aud`
 *   is only valid for the API server's own audiences), but a cluster whose --api-audiences lists
 *   istio-ca would accept them for it; this check does not depend on that flag.
 * The payload is read without verification: it can only make us refuse, never accept.
 */
function refuseNonMeshToken(token: string): void {
  const payload = unverifiedJwtPayload(token);
  if (!payload) throw new CaRequestError('unauthenticated', 'bearer token is not a JWT (want a projected service account token with audience istio-ca)');
  if (LEGACY_SECRET_NAME_CLAIM in payload) {
    throw new CaRequestError(
      'unauthenticated',
      `token is a legacy Secret-based service account token (claim ${LEGACY_SECRET_NAME_CLAIM}), which is never a mesh credential: use a projected token with audience ${CA_TOKEN_AUDIENCE}`,
    );
  }
}

/** Refuses callers that say they belong to another cluster. */
export function checkClusterId(clusterId: string | undefined, context: { ourCluster: string }): void {
  if (clusterId && clusterId !== context.ourCluster) {
    throw new CaRequestError('cluster_mismatch', `caller says it is in cluster ${JSON.stringify(clusterId)}, but this control plane serves cluster ${JSON.stringify(context.ourCluster)}`);
  }
}

function runsAs(pod: V1Pod, identity: Identity): boolean {
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return false;
  return pod.metadata?.namespace === identity.namespace && (pod.spec?.serviceAccountName || DEFAULT_SERVICE_ACCOUNT) === identity.serviceAccount;
}
