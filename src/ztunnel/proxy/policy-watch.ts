/** Inbound policy is decided on the state as it is now: per request, and again for open connections when policies change. */
import type { Workload } from '../../gen/istio/workload/workload_pb.js';
import type { Logger } from '../../util/log.js';
import type { ProxyMetrics } from '../metrics.js';
import type { AuthorizationDecision, ConnectionFacts, ProxyState } from '../state/types.js';
import { localEnrolledWorkload, workloadIdentity } from './context.js';

/**
 * The local workload that owns `ip` now, provided it still has the identity a connection was
 * accepted for. HBONE sessions are pooled for minutes, so whatever was looked up when a session was
 * accepted is stale for later streams: a policy applied since then is only listed on the current
 * workload (pods name their selector policies), and the address may belong to another pod by now.
 */
export function currentDestination(state: ProxyState, ip: string, identity: string): Workload | undefined {
  const workload = localEnrolledWorkload(state, ip);
  return workload && workloadIdentity(workload) === identity ? workload : undefined;
}

/** Authorizes without letting an evaluation error through: an error denies. */
export function authorizeSafely(state: ProxyState, facts: ConnectionFacts, log: Logger): AuthorizationDecision {
  try {
    return state.authorize(facts);
  } catch (error) {
    log.error({ err: String(error) }, 'authorization failed; denying');
    return { allowed: false, reason: `authorization failed: ${String(error)}` };
  }
}

/** An open inbound connection, as policy sees it. */
export interface WatchedConnection {
  listener: 'inbound' | 'inbound_plaintext';
  facts: Omit<ConnectionFacts, 'destination'>;
  /** The identity the destination had when the connection was accepted. */
  destinationIdentity: string;
  /** Cuts the connection (reset / RST_STREAM), so the client sees a failure. */
  abort(): void;
}

/**
 * Open inbound connections, re-authorized whenever policies or local workloads change; a
 * connection that the current policies would refuse is cut, as ztunnel's policy watcher does. A
 * connection whose destination is gone or changed identity is cut too.
 */
export class OpenInboundConnections {
  private readonly open = new Set<WatchedConnection>();

  constructor(
    private readonly state: ProxyState,
    private readonly log: Logger,
    private readonly metrics: ProxyMetrics,
  ) {}

  /** Watches a connection until the returned function is called (on close). */
  track(connection: WatchedConnection): () => void {
    this.open.add(connection);
    return () => this.open.delete(connection);
  }

  get size(): number {
    return this.open.size;
  }

  /** Re-evaluates every open connection; returns how many were cut. */
  reassess(): number {
    let cut = 0;
    for (const connection of [...this.open]) {
      const destination = currentDestination(this.state, connection.facts.destinationIp, connection.destinationIdentity);
      const decision: AuthorizationDecision = destination
        ? authorizeSafely(this.state, { ...connection.facts, destination }, this.log)
        : { allowed: false, reason: 'the destination workload is gone or changed identity' };
      if (decision.allowed) continue;
      this.open.delete(connection);
      cut++;
      this.log.info(
        { listener: connection.listener, source: connection.facts.sourceIdentity ?? connection.facts.sourceIp, destination: `${connection.facts.destinationIp}:${connection.facts.destinationPort}`, policy: decision.policy, reason: decision.reason },
        'open connection no longer allowed; closing it',
      );
      this.metrics.connectionRefused(connection.listener, 'policy_revoked');
      connection.abort();
    }
    return cut;
  }
}
