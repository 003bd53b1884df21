// Istio's standard request metrics (istio_requests_total and the duration/size histograms), reported by a waypoint or an ingress.
import { Registry, type Aggregator, type Metric, type MetricValue, type MetricValueWithName } from 'prom-client';

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

/** Per-bucket counts (not cumulative), sum and count of one histogram series. */
class Distribution {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    this.sum += value;
    this.count += 1;
    const { bounds } = this;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]! += 1;
        return;
      }
    }
  }
}

/** The four metrics of one label set. */
class Series {
  requests = 0;
  readonly duration = new Distribution(DURATION_BUCKETS_MS);
  readonly requestBytes = new Distribution(SIZE_BUCKETS);
  readonly responseBytes = new Distribution(SIZE_BUCKETS);

  constructor(readonly labels: RequestLabels) {}
}

/** What prom-client's metrics return from get() at run time (its typings say an enum for `type`; the value is the string). */
interface MetricSnapshot {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: Aggregator;
  values: Array<MetricValue<string> & { metricName?: string }>;
}

/**
 * A read-only view of the series as prom-client's Registry reads a metric (name, help, type,
 * get/getForPromString): the values have the shape prom-client's own Counter and Histogram give,
 * so the exposition text is the same.
 */
class SeriesView {
  readonly aggregator: Aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly values: () => Array<MetricValue<string> | MetricValueWithName<string>>,
  ) {}

  getForPromString(): Promise<MetricSnapshot> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() });
  }

  /** As prom-client's get(): a histogram's series labels merged into each value's labels. */
  async get(): Promise<MetricSnapshot> {
    const metric = await this.getForPromString();
    const splay = (value: MetricValue<string> & { sharedLabels?: Record<string, string> }) => {
      const { sharedLabels, ...rest } = value;
      return sharedLabels ? { ...rest, labels: { ...value.labels, ...sharedLabels } } : rest;
    };
    return { ...metric, values: metric.values.map(splay) };
  }
}

function histogramValues(name: string, bounds: readonly number[], series: Iterable<Series>, pick: (s: Series) => Distribution): Array<MetricValueWithName<string> & { sharedLabels: RequestLabels }> {
  const values: Array<MetricValueWithName<string> & { sharedLabels: RequestLabels }> = [];
  for (const s of series) {
    const d = pick(s);
    let cumulative = 0;
    bounds.forEach((bound, i) => {
      cumulative += d.counts[i]!;
      values.push({ metricName: `${name}_bucket`, labels: { le: bound }, value: cumulative, sharedLabels: s.labels });
    });
    values.push(
      { metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: d.count, sharedLabels: s.labels },
      { metricName: `${name}_sum`, labels: {}, value: d.sum, sharedLabels: s.labels },
      { metricName: `${name}_count`, labels: {}, value: d.count, sharedLabels: s.labels },
    );
  }
  return values;
}

/**
 * Request metrics, kept per label set. A request's labels are computed once per connection
 * description object (the waypoint reuses one per endpoint) and outcome; recording is then a map
 * lookup and a few additions, instead of prom-client's label validation and hashing four times.
 */
export class RequestMetrics {
  readonly registry = new Registry();
  private readonly series = new Map<string, Series>();
  /** Series by connection description object, then by outcome (reporter, protocol, code, flags, gRPC status). */
  private readonly byConnection = new WeakMap<object, Map<string, Series>>();

  constructor() {
    const all = () => this.series.values();
    const views = [
      new SeriesView('istio_requests_total', 'Requests, by source, destination and response code', 'counter', () => [...all()].map((s) => ({ labels: s.labels, value: s.requests }))),
      new SeriesView('istio_request_duration_milliseconds', 'Request duration (ms)', 'histogram', () => histogramValues('istio_request_duration_milliseconds', DURATION_BUCKETS_MS, all(), (s) => s.duration)),
      new SeriesView('istio_request_bytes', 'Request size (headers and body, bytes)', 'histogram', () => histogramValues('istio_request_bytes', SIZE_BUCKETS, all(), (s) => s.requestBytes)),
      new SeriesView('istio_response_bytes', 'Response size (headers and body, bytes)', 'histogram', () => histogramValues('istio_response_bytes', SIZE_BUCKETS, all(), (s) => s.responseBytes)),
    ];
    // The Registry only reads name, help, type, aggregator and get/getForPromString of what it holds.
    for (const view of views) this.registry.registerMetric(view as unknown as Metric);
  }

  record(request: RequestRecord): void {
    const outcome = `${request.reporter}|${request.protocol}|${request.responseCode}|${request.responseFlags}|${request.grpcStatus ?? ''}`;
    let outcomes = this.byConnection.get(request.connection);
    if (!outcomes) {
      outcomes = new Map();
      this.byConnection.set(request.connection, outcomes);
    }
    let series = outcomes.get(outcome);
    if (!series) {
      series = this.seriesFor(request);
      outcomes.set(outcome, series);
    }
    series.requests += 1;
    series.duration.observe(request.durationMs);
    series.requestBytes.observe(request.requestBytes);
    series.responseBytes.observe(request.responseBytes);
  }

  private seriesFor(request: RequestRecord): Series {
    const labels: RequestLabels = {
      ...tcpLabels({ ...request.connection, reporter: request.reporter }),
      request_protocol: request.protocol,
      response_flags: request.responseFlags,
      response_code: String(request.responseCode),
      grpc_response_status: request.grpcStatus ?? '',
    };
    const key = REQUEST_LABEL_NAMES.map((name) => labels[name]).join('\u0000');
    let series = this.series.get(key);
    if (!series) {
      series = new Series(labels);
      this.series.set(key, series);
    }
    return series;
  }
}
