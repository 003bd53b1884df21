// The public API of HBONE (DESIGN §3), shared by ztunnel, the east-west gateway and the proxies to come.
export { HboneServer, DEFAULT_PEER_LIMITS, HANDSHAKE_TIMEOUT_MS, SESSION_IDLE_TIMEOUT_MS, type AuthenticatedConnection, type ConnectHandler, type ConnectReply, type ConnectRequest, type HbonePeerLimits, type HboneServerOptions } from './server.js';
export { dialHboneSession, handshakeFailureReason, HboneConnectError, type DialedSession, type HboneSessionDial } from './client.js';
export { HbonePool, DEFAULT_IDLE_TIMEOUT_MS, type HboneConnectRequest, type HbonePoolOptions } from './pool.js';
export { InnerHbonePool, GatewayUnreachableError, type GatewayHop, type InnerConnectRequest, type InnerHbonePoolOptions } from './inner-pool.js';
export { SessionPool, type SessionHandle, type SessionPoolOptions, type PooledStreamRequest } from './session-pool.js';
export {
  baggageFor,
  formatAuthority,
  forwardedFor,
  labelSafe,
  newTraceparent,
  parseAuthority,
  parseBaggage,
  parseEndpointSlot,
  parseForwardedFor,
  parseHboneTarget,
  singleHeader,
  X_ENDPOINT_SLOT,
  X_FORWARDED_NETWORK,
  type BaggageFacts,
  type HboneTarget,
  type ParsedAuthority,
} from './headers.js';
export { abort, dialTcp, peerOf, splice, spliceCounted, DEFAULT_CONNECT_TIMEOUT_MS, SPLICE_BUFFER_BYTES, type DialTarget, type SpliceCounters } from './io.js';
export { IdleMemoryRelease, memoryReleaseAvailable } from './memory.js';
export { expectIdentities, spiffeIdentities, subjectAltNames, UnexpectedPeerIdentityError } from './peer-identity.js';
export { RateLimitedLog, type RateLimitedLogOptions } from './rate-limited-log.js';
export { HBONE_ALPN, HBONE_TLS_MIN_VERSION, MAX_STREAMS_PER_SESSION, SecureContextCache } from './transport.js';
export type { HandshakeFailureReason, HboneMetrics, HboneTunnel, PeerLimit, TcpConnectionMetrics } from './metrics.js';
export { HboneEndpoint, type EndpointCertificateSource, type HboneEndpointOptions, type HboneEndpointStopOptions } from './endpoint.js';
