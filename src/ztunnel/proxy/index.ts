export { Proxy, type ProxyOptions, type ProxyListenOptions, type ProxyPorts, type ProxyStopOptions } from './proxy.js';
export { HbonePool, HboneConnectError, type HboneConnectRequest, type HbonePoolOptions } from './hbone-pool.js';
export { InnerHbonePool, type InnerConnectRequest, type InnerHbonePoolOptions } from './inner-pool.js';
export { dialHboneSession, handshakeFailureReason, type DialedSession, type HboneSessionDial } from './hbone-connect.js';
export { parseHboneTarget, X_FORWARDED_NETWORK, type HboneTarget } from './hbone-headers.js';
export { getOriginalDestination, type SocketAddress } from './original-dst.js';
