export { Proxy, type ProxyOptions, type ProxyListenOptions, type ProxyPorts, type ProxyStopOptions } from './proxy.js';
export { HbonePool, HboneConnectError, type HboneConnectRequest, type HbonePoolOptions } from './hbone-pool.js';
export { getOriginalDestination, type SocketAddress } from './original-dst.js';
