import { Counter, Gauge, Registry } from 'prom-client';

import { parseSpiffeUri } from '../api/identity.js';
import type { Service, Workload } from '../gen/istio/workload/workload_pb.js';
import type { HandshakeFailureReason, HboneMetrics, HboneTunnel, PeerLimit, TcpConnectionMetrics } from '../hbone/metrics.js';

/** Istio's standard TCP metric labels (as ztunnel reports them). */
export const TCP_LABEL_NAMES = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

export type TcpLabelName = (typeof TCP_LABEL_NAMES)[number];
export type TcpLabels = Record<TcpLabelName, string>;

export const UNKNOWN = 'unknown';

/** ztunnel's response flags: `-` for none. */
export type ResponseFlags = '-' | 'DENY' | 'CONNECT';

/** Workload facts for one side of a connection, from the mesh state (never from client headers: DESIGN §11). */
export interface PeerFacts {
  workload?: string;
  canonicalService?: string;
  canonicalRevision?: string;
  namespace?: string;
  principal?: string;
  cluster?: string;
}

export interface TcpConnectionDescription {
  reporter: 'source' | 'destination' | 'waypoint';
  source: PeerFacts;
  destination: PeerFacts;
  service?: Service;
  mutualTls: boolean;
  responseFlags?: ResponseFlags;
}

/** `source_cluster`/`destination_cluster` of a peer known only by its network (e.g. behind an east-west gateway). */
export function networkClusterLabel(network: string): string {
  return `network:${network}`;
}

/**
 * Labels of a workload; `clusterFallback` stands in for an empty `cluster_id` (the local cluster for
 * local workloads, `network:<name>` for the synthetic workload of another network).
 */
export function peerFactsOf(workload: Workload | undefined, principal?: string, clusterFallback?: string): PeerFacts {
  if (!workload) return { principal, cluster: clusterFallback };
  return {
    workload: workload.workloadName || workload.name,
    canonicalService: workload.canonicalName,
    canonicalRevision: workload.canonicalRevision,
    namespace: workload.namespace,
    principal,
    cluster: workload.clusterId || clusterFallback,
  };
}

/**
 * What the peer certificate alone tells of a source the registry does not know: its identity and
 * the namespace in it (both authenticated), nothing a client merely claims.
 */
export function identityFacts(principal: string, cluster?: string): PeerFacts {
  let namespace: string | undefined;
  try {
    namespace = parseSpiffeUri(principal).namespace;
  } catch {
    namespace = undefined;
  }
  return { principal: labelValue(principal), namespace: namespace === undefined ? undefined : labelValue(namespace), cluster };
}

/**
 * Longest label value kept (a Kubernetes name is at most 253 characters, a SPIFFE identity of one
 * namespace and service account about 330); longer values are cut so no single series grows without bound.
 */
export const MAX_LABEL_LENGTH = 256;

/** A label value: `unknown` when empty, cut at MAX_LABEL_LENGTH. */
export function labelValue(value: string | undefined): string {
  if (!value) return UNKNOWN;
  return value.length > MAX_LABEL_LENGTH ? value.slice(0, MAX_LABEL_LENGTH) : value;
}

const orUnknown = labelValue;

export function tcpLabels(description: TcpConnectionDescription): TcpLabels {
  const { source, destination, service } = description;
  return {
    reporter: description.reporter,
    source_workload: orUnknown(source.workload),
    source_canonical_service: orUnknown(source.canonicalService),
    source_canonical_revision: orUnknown(source.canonicalRevision),
    source_workload_namespace: orUnknown(source.namespace),
    source_principal: orUnknown(source.principal),
    source_app: orUnknown(source.canonicalService),
    source_version: orUnknown(source.canonicalRevision),
    source_cluster: orUnknown(source.cluster),
    destination_service: orUnknown(service?.hostname),
    destination_service_namespace: orUnknown(service?.namespace),
    destination_service_name: orUnknown(service?.name),
    destination_workload: orUnknown(destination.workload),
    destination_canonical_service: orUnknown(destination.canonicalService),
    destination_canonical_revision: orUnknown(destination.canonicalRevision),
    destination_workload_namespace: orUnknown(destination.namespace),
    destination_principal: orUnknown(destination.principal),
    destination_app: orUnknown(destination.canonicalService),
    destination_version: orUnknown(destination.canonicalRevision),
    destination_cluster: orUnknown(destination.cluster),
    request_protocol: 'tcp',
    response_flags: description.responseFlags ?? '-',
    connection_security_policy: description.mutualTls ? 'mutual_tls' : UNKNOWN,
  };
}

export type { HandshakeFailureReason, HboneTunnel, TcpConnectionMetrics } from '../hbone/metrics.js';

export type RefusedConnectionReason =
  | 'no_original_destination'
  | 'unknown_source_workload'
  | 'unknown_destination_workload'
  | 'service_unavailable'
  | 'policy_denied'
  /** To a workload behind a waypoint, not through the waypoint (the sandwich rule). */
  | 'waypoint_bypassed'
  /** An open connection cut because a policy applied later denies it. */
  | 'policy_revoked'
  | 'upstream_unreachable'
  | 'hbone_refused';

export interface ProxyMetrics extends HboneMetrics {
  /** Serves `/metrics`: `await registry.metrics()`. */
  readonly registry: Registry;
  /** Counts a connection as opened; the caller reports bytes and its close on the returned handle. */
  openTcpConnection(description: TcpConnectionDescription): TcpConnectionMetrics;
  /** A connection that was refused before any byte flowed: opened and closed at once, with its flag. */
  recordRefusedTcpConnection(description: TcpConnectionDescription): void;
  /** A captured connection closed without being proxied. */
  connectionRefused(listener: 'outbound' | 'inbound' | 'inbound_plaintext', reason: RefusedConnectionReason): void;
  /** A cross-network connection moved to another east-west gateway after its first one was unreachable. */
  gatewayFailover(): void;
  /** Pushes the pending byte counts of open connections to the counters (also done on a timer). */
  flush(): void;
  /** Stops the flush timer (the registry stays readable). */
  close(): void;
}

export interface ProxyMetricsOptions {
  /** How often byte counts of long connections reach the counters. Default 5 s. */
  flushIntervalMs?: number;
}

class OpenConnection implements TcpConnectionMetrics {
  private pendingReceived = 0;
  private pendingSent = 0;
  private closed = false;

  constructor(
    private readonly labels: TcpLabels,
    private readonly owner: PrometheusProxyMetrics,
  ) {}

  addReceived(bytes: number): void {
    this.pendingReceived += bytes;
  }

  addSent(bytes: number): void {
    this.pendingSent += bytes;
  }

  flush(): void {
    if (this.pendingReceived > 0) this.owner.receivedBytes.inc(this.labels, this.pendingReceived);
    if (this.pendingSent > 0) this.owner.sentBytes.inc(this.labels, this.pendingSent);
    this.pendingReceived = 0;
    this.pendingSent = 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.flush();
    this.owner.connectionClosed(this, this.labels);
  }
}

class PrometheusProxyMetrics implements ProxyMetrics {
  readonly registry = new Registry();
  readonly opened: Counter<TcpLabelName>;
  readonly closed: Counter<TcpLabelName>;
  readonly sentBytes: Counter<TcpLabelName>;
  readonly receivedBytes: Counter<TcpLabelName>;
  private readonly handshakeFailures: Counter<'direction' | 'reason' | 'tunnel'>;
  private readonly rejectedStreams: Counter<'direction' | 'code' | 'reason'>;
  private readonly refusedConnections: Counter<'listener' | 'reason'>;
  private readonly sessionsOpened: Counter<'direction'>;
  private readonly peerLimited: Counter<'limit'>;
  private readonly pooledSessions: Gauge;
  private readonly innerSessionsOpened: Counter;
  private readonly gatewayFailovers: Counter;
  private readonly pooledInnerSessions: Gauge;
  private readonly open = new Set<OpenConnection>();
  private readonly timer: NodeJS.Timeout;

  constructor(options: ProxyMetricsOptions) {
    const registers = [this.registry];
    const labelNames = [...TCP_LABEL_NAMES];
    this.opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened', labelNames, registers });
    this.closed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed', labelNames, registers });
    this.sentBytes = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent back to the client during the connection', labelNames, registers });
    this.receivedBytes = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received from the client during the connection', labelNames, registers });
    this.handshakeFailures = new Counter({
      name: 'ambit_hbone_handshake_failures_total',
      help: 'HBONE connections refused during the TLS/HTTP2 handshake',
      labelNames: ['direction', 'reason', 'tunnel'],
      registers,
    });
    this.rejectedStreams = new Counter({
      name: 'ambit_hbone_rejected_streams_total',
      help: 'HBONE CONNECT streams answered with an error status',
      labelNames: ['direction', 'code', 'reason'],
      registers,
    });
    this.refusedConnections = new Counter({
      name: 'ambit_proxy_refused_connections_total',
      help: 'Captured connections closed without being proxied',
      labelNames: ['listener', 'reason'],
      registers,
    });
    this.sessionsOpened = new Counter({
      name: 'ambit_hbone_sessions_opened_total',
      help: 'HBONE HTTP/2 sessions established',
      labelNames: ['direction'],
      registers,
    });
    this.peerLimited = new Counter({
      name: 'ambit_hbone_peer_limit_rejections_total',
      help: 'HBONE connections closed because their TCP peer had too many handshakes in flight or sessions open',
      labelNames: ['limit'],
      registers,
    });
    this.pooledSessions = new Gauge({ name: 'ambit_hbone_pooled_sessions', help: 'Outbound HBONE HTTP/2 sessions in the pool', registers });
    this.innerSessionsOpened = new Counter({
      name: 'ambit_hbone_inner_sessions_opened_total',
      help: 'Inner HBONE sessions (TLS + HTTP/2 end to end through an east-west gateway) established',
      registers,
    });
    this.pooledInnerSessions = new Gauge({ name: 'ambit_hbone_pooled_inner_sessions', help: 'Inner HBONE sessions in the pool', registers });
    this.gatewayFailovers = new Counter({
      name: 'ambit_gateway_failovers_total',
      help: 'Cross-network connections moved to another east-west gateway of the network after one was unreachable',
      registers,
    });
    this.timer = setInterval(() => this.flush(), options.flushIntervalMs ?? 5000);
    this.timer.unref();
  }

  openTcpConnection(description: TcpConnectionDescription): TcpConnectionMetrics {
    const labels = tcpLabels(description);
    this.opened.inc(labels);
    const connection = new OpenConnection(labels, this);
    this.open.add(connection);
    return connection;
  }

  connectionClosed(connection: OpenConnection, labels: TcpLabels): void {
    this.open.delete(connection);
    this.closed.inc(labels);
  }

  recordRefusedTcpConnection(description: TcpConnectionDescription): void {
    const labels = tcpLabels(description);
    this.opened.inc(labels);
    this.closed.inc(labels);
  }

  hboneHandshakeFailed(direction: 'inbound' | 'outbound', reason: HandshakeFailureReason, tunnel: HboneTunnel = 'hbone'): void {
    this.handshakeFailures.inc({ direction, reason, tunnel });
  }

  hboneStreamRejected(direction: 'inbound' | 'outbound', code: number, reason: string): void {
    this.rejectedStreams.inc({ direction, code: String(code), reason });
  }

  hboneSessionOpened(direction: 'inbound' | 'outbound'): void {
    this.sessionsOpened.inc({ direction });
  }

  hbonePeerLimited(limit: PeerLimit): void {
    this.peerLimited.inc({ limit });
  }

  connectionRefused(listener: 'outbound' | 'inbound' | 'inbound_plaintext', reason: RefusedConnectionReason): void {
    this.refusedConnections.inc({ listener, reason });
  }

  setPooledSessions(count: number): void {
    this.pooledSessions.set(count);
  }

  innerSessionOpened(): void {
    this.innerSessionsOpened.inc();
  }

  setPooledInnerSessions(count: number): void {
    this.pooledInnerSessions.set(count);
  }

  gatewayFailover(): void {
    this.gatewayFailovers.inc();
  }

  flush(): void {
    for (const connection of this.open) connection.flush();
  }

  close(): void {
    clearInterval(this.timer);
    this.flush();
  }
}

/** Metrics of one proxy, in a registry of its own (several can coexist, e.g. in tests). */
export function createProxyMetrics(options: ProxyMetricsOptions = {}): ProxyMetrics {
  return new PrometheusProxyMetrics(options);
}
