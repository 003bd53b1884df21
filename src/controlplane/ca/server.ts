import { type handleUnaryCall, type Metadata } from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { Counter, type Registry } from 'prom-client';
import { AUTHORIZATION_HEADER, CLUSTER_ID_HEADER, type IstioCertificateRequest, type IstioCertificateResponse } from '../../api/grpc.js';
import { IstioCertificateResponseSchema } from '../../gen/istio/ca/ca_pb.js';
import { CsrError, readCsr } from '../../util/csr.js';
import type { Logger } from '../../util/log.js';
import type { MeshAuthority } from './authority.js';
import type { CaCaller, CertificateAuthorizer, CertificateGrant } from './authorize.js';
import { CaRequestError } from './errors.js';

export const DEFAULT_CERT_TTL_SECONDS = 24 * 3600;
/** Request metadata field naming the identity a node agent asks for on behalf of a workload. */
export const IMPERSONATED_IDENTITY_FIELD = 'ImpersonatedIdentity';

export interface CertificateServiceOptions {
  authority: Pick<MeshAuthority, 'sign'>;
  authorizer: Pick<CertificateAuthorizer, 'authenticate' | 'authorize'>;
  log: Logger;
  defaultTtlSeconds?: number;
  maxTtlSeconds?: number;
  /** Where `ambit_ca_certificates_issued_total` and `ambit_ca_requests_refused_total` live. */
  registry?: Registry;
  /** Resolves once the pod directory is synced; until then requests wait up to `readyTimeoutMs`, then get UNAVAILABLE. */
  ready?: Promise<void>;
  readyTimeoutMs?: number;
}

// A type alias (not an interface) so it is assignable to grpc-js's UntypedServiceImplementation.
export type CertificateServiceHandlers = {
  createCertificate: handleUnaryCall<IstioCertificateRequest, IstioCertificateResponse>;
};

/** The grpc-js implementation of `istio.v1.auth.IstioCertificateService` (add with `istioCertificateService`). */
export function createCertificateService(options: CertificateServiceOptions): CertificateServiceHandlers {
  const { authority, authorizer, log } = options;
  const maxTtl = options.maxTtlSeconds ?? DEFAULT_CERT_TTL_SECONDS;
  const defaultTtl = Math.min(options.defaultTtlSeconds ?? DEFAULT_CERT_TTL_SECONDS, maxTtl);
  const metrics = caMetrics(options.registry);

  let isReady = options.ready === undefined;
  void options.ready?.then(() => (isReady = true));
  const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;

  async function waitUntilReady(): Promise<void> {
    if (isReady) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), readyTimeoutMs)));
    const outcome = await Promise.race([options.ready!.then(() => 'ready' as const), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') throw new CaRequestError('not_ready', 'the control plane is still syncing with the API server; retry later');
  }

  async function handle(request: IstioCertificateRequest, metadata: Metadata, decision: Decision): Promise<IstioCertificateResponse> {
    await waitUntilReady();
    const caller = await authorizer.authenticate({
      authorization: firstString(metadata, AUTHORIZATION_HEADER),
      clusterId: firstString(metadata, CLUSTER_ID_HEADER),
    });
    decision.caller = caller;
    let csr;
    try {
      csr = await readCsr(request.csr);
    } catch (err) {
      if (err instanceof CsrError) throw new CaRequestError('invalid_request', err.message);
      throw err;
    }
    const spiffeSans = csr.uriSans.filter((uri) => uri.startsWith('spiffe://'));
    if (csr.uriSans.length !== 1 || spiffeSans.length !== 1) {
      throw new CaRequestError('invalid_request', `CSR must carry exactly one URI SAN, a SPIFFE identity; it has ${JSON.stringify(csr.uriSans)}`);
    }
    decision.identity = spiffeSans[0]!;
    const grant = await authorizer.authorize(caller, {
      csrIdentity: decision.identity,
      impersonatedIdentity: impersonatedIdentityOf(request),
    });
    decision.grant = grant;
    const requested = Number(request.validityDuration);
    const ttl = requested > 0 ? Math.min(requested, maxTtl) : defaultTtl;
    let chain: string[];
    try {
      chain = await authority.sign(csr, grant.identity, ttl);
    } catch (err) {
      if (err instanceof CsrError) throw new CaRequestError('invalid_request', err.message);
      throw new CaRequestError('signing_failed', `signing failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    decision.ttl = ttl;
    return create(IstioCertificateResponseSchema, { certChain: chain });
  }

  const createCertificate: handleUnaryCall<IstioCertificateRequest, IstioCertificateResponse> = (call, callback) => {
    const decision: Decision = { peer: safePeer(call) };
    handle(call.request, call.metadata, decision).then(
      (response) => {
        metrics.issued.inc();
        log.info(
          {
            peer: decision.peer,
            caller: decision.caller?.username,
            identity: decision.identity,
            node: decision.grant?.node,
            impersonated: decision.grant?.impersonated,
            ttlSeconds: decision.ttl,
            outcome: 'issued',
          },
          'certificate issued',
        );
        callback(null, response);
      },
      (err: unknown) => {
        const refusal =
          err instanceof CaRequestError
            ? err
            : new CaRequestError('signing_failed', `internal error: ${err instanceof Error ? err.message : String(err)}`);
        metrics.refused.inc({ reason: refusal.reason });
        log.warn(
          {
            peer: decision.peer,
            caller: decision.caller?.username ?? 'unauthenticated',
            identity: decision.identity,
            node: decision.grant?.node,
            outcome: 'refused',
            reason: refusal.reason,
            error: refusal.message,
          },
          'certificate request refused',
        );
        callback({ code: refusal.code, details: refusal.message }, null);
      },
    );
  };
  return { createCertificate };
}

interface Decision {
  peer: string;
  caller?: CaCaller;
  identity?: string;
  grant?: CertificateGrant;
  ttl?: number;
}

function caMetrics(registry: Registry | undefined): { issued: Counter; refused: Counter<'reason'> } {
  const issuedName = 'ambit_ca_certificates_issued_total';
  const refusedName = 'ambit_ca_requests_refused_total';
  const registers = registry ? [registry] : [];
  // A registry may already hold them (several services, or a restarted one): reuse instead of failing.
  const issued =
    (registry?.getSingleMetric(issuedName) as Counter | undefined) ??
    new Counter({ name: issuedName, help: 'Workload certificates signed by the mesh CA', registers });
  const refused =
    (registry?.getSingleMetric(refusedName) as Counter<'reason'> | undefined) ??
    new Counter({ name: refusedName, help: 'Certificate requests refused by the mesh CA, by reason', labelNames: ['reason'], registers });
  return { issued, refused };
}

function firstString(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value.toString('utf8');
}

function impersonatedIdentityOf(request: IstioCertificateRequest): string | undefined {
  const value = request.metadata?.[IMPERSONATED_IDENTITY_FIELD];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new CaRequestError('invalid_request', `metadata.${IMPERSONATED_IDENTITY_FIELD} must be a string`);
  return value;
}

function safePeer(call: { getPeer(): string }): string {
  try {
    return call.getPeer();
  } catch {
    return 'unknown';
  }
}
