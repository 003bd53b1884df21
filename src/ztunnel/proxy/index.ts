// ztunnel's data path: capture (original destination) → outbound → HBONE pools and client → server → inbound.
export { Proxy, type ProxyOptions, type ProxyListenOptions, type ProxyPorts, type ProxyStopOptions } from './proxy.js';
export { buildInboundRequest, authorizedSourceIp, ZTUNNEL_PORTS, type InboundConnectionFacts, type InboundRequest, type InboundState } from './inbound.js';
export { getOriginalDestination, type SocketAddress } from './original-dst.js';
