import { nativeTunnelPath, type NativeTunnel, type TunnelLayout } from './native-tunnel.js';
import { tunnelPorts } from './path.js';

/** `tcp`: one TLS connection per client connection (the haproxy path); `http`: HTTP/1.1 parsed at both ends (the waypoint case's comparison). */
export type HaproxyMode = 'tcp' | 'http';

const global = (mode: HaproxyMode) => `global
  # Within the default open-file limit (HAProxy needs about two descriptors per connection).
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode ${mode}
  timeout connect 5s
  timeout client 300s
  timeout server 300s
${
  mode === 'http'
    ? `  # Keep-alive on both sides: client connections stay open between requests, and idle
  # server-side connections (to the peer HAProxy, to the pod) are reused by any request.
  option http-keep-alive
  timeout http-keep-alive 300s
  timeout http-request 10s
  http-reuse always
`
    : ''
}`;

// HTTP mode speaks HTTP/1.1 between the two HAProxies (ALPN), as the client does.
const alpn = (mode: HaproxyMode) => (mode === 'http' ? ' alpn http/1.1' : '');

function haproxyTunnel(mode: HaproxyMode, offset: number, description: string): NativeTunnel {
  return {
    name: 'haproxy',
    ...(mode === 'tcp' ? {} : { instance: `haproxy-${mode}` }),
    description,
    offset,
    clientConfig: (l: TunnelLayout) =>
      global(mode) +
      l.serverPorts
        .map((port) => {
          const p = tunnelPorts(l.offset, port);
          return `frontend plain-${port}
  bind ${l.clientNodeIp}:${p.plain}
  default_backend tls-${port}
backend tls-${port}
  server peer ${l.serverNodeIp}:${p.tls} ssl crt ${l.certs.clientPem} ca-file ${l.certs.caCert} verify required verifyhost ${l.certs.serverName}${alpn(mode)}
`;
        })
        .join(''),
    serverConfig: (l: TunnelLayout) =>
      global(mode) +
      l.serverPorts
        .map((port) => {
          const p = tunnelPorts(l.offset, port);
          return `frontend tls-${port}
  bind ${l.serverNodeIp}:${p.tls} ssl crt ${l.certs.serverPem} ca-file ${l.certs.caCert} verify required${alpn(mode)}
  default_backend pod-${port}
backend pod-${port}
  server pod ${l.serverPodIp}:${port}
`;
        })
        .join(''),
    // -db: stay in the foreground, one process (with threads), so the spawned PID is HAProxy itself.
    command: (configFile) => ['haproxy', '-db', '-f', configFile],
  };
}

export const haproxy = haproxyTunnel(
  'tcp',
  20_000,
  'HAProxy 2.6 pair in the node namespaces (mode tcp): TLS 1.3 on both sides, ECDSA P-256 certificates verified both ways, one TLS connection per client connection',
);

/** The waypoint case's L7 comparison: the same pair and certificates in mode http, on ports of its own. */
export const haproxyHttp = haproxyTunnel(
  'http',
  30_000,
  'HAProxy 2.6 pair in the node namespaces (mode http): HTTP/1.1 parsed and forwarded at both ends, TLS 1.3 with ECDSA P-256 certificates verified both ways between them, keep-alive on every hop (client connections kept open, idle server-side connections reused)',
);

export const haproxyPath = nativeTunnelPath(haproxy);
export const haproxyHttpPath = nativeTunnelPath(haproxyHttp);
