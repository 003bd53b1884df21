import { status } from '@grpc/grpc-js';

/** Why a certificate request was refused; the label of `ambit_ca_requests_refused_total`. */
export type RefusalReason =
  | 'invalid_request'
  | 'unauthenticated'
  | 'token_review_failed'
  | 'overloaded'
  | 'not_ready'
  | 'cluster_mismatch'
  | 'permission_denied'
  | 'signing_failed';

const STATUS_OF: Record<RefusalReason, status> = {
  invalid_request: status.INVALID_ARGUMENT,
  unauthenticated: status.UNAUTHENTICATED,
  token_review_failed: status.UNAVAILABLE,
  overloaded: status.RESOURCE_EXHAUSTED,
  not_ready: status.UNAVAILABLE,
  cluster_mismatch: status.PERMISSION_DENIED,
  permission_denied: status.PERMISSION_DENIED,
  signing_failed: status.INTERNAL,
};

/** A refusal with the gRPC status it maps to; the message goes back to the caller verbatim. */
export class CaRequestError extends Error {
  readonly code: status;

  constructor(
    readonly reason: RefusalReason,
    message: string,
  ) {
    super(message);
    this.code = STATUS_OF[reason];
  }
}
