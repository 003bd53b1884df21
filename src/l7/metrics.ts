// Istio's standard request metrics (istio_requests_total and the duration/size histograms), reported by a waypoint or an ingress.
import { Counter, Histogram, Registry } from 'prom-client';

import { TCP_LABEL_NAMES, tcpLabels, type TcpConnectionDescription } from '../ztunnel/metrics.js';

export const REQUEST_LABEL_NAMES = [...TCP_LABEL_NAMES, 'response_code', 'grpc_response_status'] as const;
type RequestLabels = Record<(typeof REQUEST_LABEL_NAMES)[number], string>;

/** Istio's buckets for request duration (ms) and sizes (bytes). */
const DURATION_BUCKETS_MS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000];

/** One finished request, labelled from authenticated facts and the registry (never from request headers). */
export interface RequestRecord {
  reporter: 'waypoint' | 'source';
  connection: Omit<TcpConnectionDescription, 'reporter' | 'responseFlags'>;
  protocol: 'http' | 'grpc';
  /** 0 when no response was sent (reset). */
  responseCode: number;
  /** Envoy's response flags: `-`, `UH` (no healthy upstream), `UF` (upstream connect failure), `UC` (upstream reset), `DC` (downstream reset), `NR` (no route). */
  responseFlags: string;
  grpcStatus?: string;
  durationMs: number;
  requestBytes: number;
  responseBytes: number;
}

export class RequestMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<string>;
  private readonly duration: Histogram<string>;
  private readonly requestBytes: Histogram<string>;
  private readonly responseBytes: Histogram<string>;

  constructor() {
    const labelNames = [...REQUEST_LABEL_NAMES];
    const registers = [this.registry];
    this.requests = new Counter({ name: 'istio_requests_total', help: 'Requests, by source, destination and response code', labelNames, registers });
    this.duration = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'Request duration (ms)', labelNames, buckets: DURATION_BUCKETS_MS, registers });
    this.requestBytes = new Histogram({ name: 'istio_request_bytes', help: 'Request size (headers and body, bytes)', labelNames, buckets: SIZE_BUCKETS, registers });
    this.responseBytes = new Histogram({ name: 'istio_response_bytes', help: 'Response size (headers and body, bytes)', labelNames, buckets: SIZE_BUCKETS, registers });
  }

  record(request: RequestRecord): void {
    const labels: RequestLabels = {
      ...tcpLabels({ ...request.connection, reporter: request.reporter }),
      request_protocol: request.protocol,
      response_flags: request.responseFlags,
      response_code: String(request.responseCode),
      grpc_response_status: request.grpcStatus ?? '',
    };
    this.requests.inc(labels);
    this.duration.observe(labels, request.durationMs);
    this.requestBytes.observe(labels, request.requestBytes);
    this.responseBytes.observe(labels, request.responseBytes);
  }
}
