import { create } from '@bufbuild/protobuf';
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { AUTHORIZATION_HEADER, CLUSTER_ID_HEADER, istioCertificateService, type IstioCertificateResponse } from '../../api/grpc.js';
import { IstioCertificateRequestSchema } from '../../gen/istio/ca/ca_pb.js';

export interface CaClientOptions {
  /** `host:port` of the control plane's CA endpoint. */
  address: string;
  /** PEM roots that sign the control plane's TLS certificate. */
  rootsPem: string;
  /** TLS name to verify when it differs from the host of `address`. */
  serverName?: string;
  timeoutMs?: number;
}

/** A CA refusal or transport failure, with the gRPC status. */
export class CaCallError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

const DEFAULT_TIMEOUT_MS = 10_000;
const method = istioCertificateService.createCertificate;

/** Calls `IstioCertificateService/CreateCertificate` over TLS. */
export class CaClient {
  private readonly client: Client;
  private readonly timeoutMs: number;

  constructor(private readonly options: CaClientOptions) {
    const channelOptions: Record<string, string> = {};
    if (options.serverName) {
      channelOptions['grpc.ssl_target_name_override'] = options.serverName;
      channelOptions['grpc.default_authority'] = options.serverName;
    }
    this.client = new Client(options.address, credentials.createSsl(Buffer.from(options.rootsPem)), channelOptions);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Sends a CSR; resolves with the chain (leaf first) or rejects with a CaCallError. */
  createCertificate(params: { csrPem: string; ttlSeconds: number; impersonatedIdentity: string; token: string; clusterId: string }): Promise<string[]> {
    const metadata = new Metadata();
    metadata.set(AUTHORIZATION_HEADER, `Bearer ${params.token}`);
    metadata.set(CLUSTER_ID_HEADER, params.clusterId);
    const request = create(IstioCertificateRequestSchema, {
      csr: params.csrPem,
      validityDuration: BigInt(Math.round(params.ttlSeconds)),
      metadata: { ImpersonatedIdentity: params.impersonatedIdentity },
    });
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        metadata,
        { deadline: Date.now() + this.timeoutMs },
        (err: ServiceError | null, response?: IstioCertificateResponse) => {
          if (err) reject(new CaCallError(err.code, `${status[err.code] ?? err.code} from CA ${this.options.address}: ${err.details || err.message}`));
          else resolve(response?.certChain ?? []);
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
