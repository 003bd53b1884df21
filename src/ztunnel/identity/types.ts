/** A workload certificate with its key, as used for mTLS. */
export interface WorkloadCertificate {
  /** SPIFFE URI of the identity. */
  identity: string;
  /** PEM chain, leaf first, without the root. */
  certChainPem: string;
  keyPem: string;
  /** Trusted roots (PEM, possibly several concatenated). */
  rootsPem: string;
  notBefore: Date;
  notAfter: Date;
}

/** Supplies certificates to the data path. */
export interface CertificateSource {
  /** Current certificate for an identity, fetching one if needed. Rejects with a clear error if the CA refuses. */
  certificateFor(identity: string): Promise<WorkloadCertificate>;
  /** Trusted roots (PEM) for verifying peers. */
  roots(): string;
  /** Identities with a certificate (for the admin view), with SAN and expiry. */
  list(): WorkloadCertificate[];
}
