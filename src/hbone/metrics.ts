// What the HBONE client, pools and server count; ztunnel's and the gateway's metrics implement it.

export type HandshakeFailureReason =
  | 'untrusted_peer_certificate'
  /** The peer refused our certificate (TLS alert: unknown CA, bad or expired certificate). */
  | 'certificate_rejected_by_peer'
  /** The peer closed the connection mid-handshake (a Node client that distrusts our certificate does just that). */
  | 'peer_hung_up'
  | 'missing_peer_certificate'
  | 'unexpected_peer_identity'
  | 'not_h2'
  | 'tls_error'
  | 'no_certificate';

/**
 * Which TLS layer a handshake belongs to: `hbone` a single HBONE connection (every handshake an HBONE
 * server sees: direct, or the inner tunnel arriving through a gateway); `outer` client to east-west
 * gateway; `inner` client to destination ztunnel through the gateway.
 */
export type HboneTunnel = 'hbone' | 'outer' | 'inner';

/** A per-peer limit of the HBONE server that refused a connection. */
export type PeerLimit = 'handshakes' | 'sessions';

/** Byte accounting for one spliced connection. */
export interface TcpConnectionMetrics {
  /** Bytes from the client towards the server (`istio_tcp_received_bytes_total`). */
  addReceived(bytes: number): void;
  /** Bytes from the server back to the client (`istio_tcp_sent_bytes_total`). */
  addSent(bytes: number): void;
  close(): void;
}

export interface HboneMetrics {
  /** An HBONE TLS/HTTP2 connection that was refused during or right after its handshake. */
  hboneHandshakeFailed(direction: 'inbound' | 'outbound', reason: HandshakeFailureReason, tunnel?: HboneTunnel): void;
  /** An HBONE CONNECT stream answered with an error status (or refused by the server, on the client). */
  hboneStreamRejected(direction: 'inbound' | 'outbound', code: number, reason: string): void;
  /** An HBONE HTTP/2 session established (outbound: dialled by the pool; inbound: accepted). */
  hboneSessionOpened(direction: 'inbound' | 'outbound'): void;
  /** A connection the HBONE server refused because its TCP peer was over a per-peer limit. */
  hbonePeerLimited(limit: PeerLimit): void;
  /** Number of pooled outbound HBONE sessions (direct and outer tunnels). */
  setPooledSessions(count: number): void;
  /** An inner HBONE session (double HBONE, end to end through a gateway) established. */
  innerSessionOpened(): void;
  /** Number of pooled inner HBONE sessions. */
  setPooledInnerSessions(count: number): void;
}
