import { nativeTunnelPath, type NativeTunnel, type TunnelLayout } from './native-tunnel.js';
import { tunnelPorts } from './path.js';

const GLOBAL = `global
  # Within the default open-file limit (HAProxy needs about two descriptors per connection).
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
`;

export const haproxy: NativeTunnel = {
  name: 'haproxy',
  description: 'HAProxy 2.6 pair in the node namespaces (mode tcp): TLS 1.3 on both sides, ECDSA P-256 certificates verified both ways, one TLS connection per client connection',
  offset: 20_000,
  clientConfig: (l: TunnelLayout) =>
    GLOBAL +
    l.serverPorts
      .map((port) => {
        const p = tunnelPorts(l.offset, port);
        return `frontend plain-${port}
  bind ${l.clientNodeIp}:${p.plain}
  default_backend tls-${port}
backend tls-${port}
  server peer ${l.serverNodeIp}:${p.tls} ssl crt ${l.certs.clientPem} ca-file ${l.certs.caCert} verify required verifyhost ${l.certs.serverName}
`;
      })
      .join(''),
  serverConfig: (l: TunnelLayout) =>
    GLOBAL +
    l.serverPorts
      .map((port) => {
        const p = tunnelPorts(l.offset, port);
        return `frontend tls-${port}
  bind ${l.serverNodeIp}:${p.tls} ssl crt ${l.certs.serverPem} ca-file ${l.certs.caCert} verify required
  default_backend pod-${port}
backend pod-${port}
  server pod ${l.serverPodIp}:${port}
`;
      })
      .join(''),
  // -db: stay in the foreground, one process (with threads), so the spawned PID is HAProxy itself.
  command: (configFile) => ['haproxy', '-db', '-f', configFile],
};

export const haproxyPath = nativeTunnelPath(haproxy);
