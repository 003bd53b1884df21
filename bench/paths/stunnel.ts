import { nativeTunnelPath, type NativeTunnel, type TunnelLayout } from './native-tunnel.js';
import { tunnelPorts } from './path.js';

// Same socket options on both sides as ztunnel uses (no Nagle delay on small writes).
const GLOBAL = `foreground = yes
pid =
debug = 4
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
`;

const tlsOptions = (cert: string, key: string, ca: string, peerName: string) => `cert = ${cert}
key = ${key}
CAfile = ${ca}
verifyChain = yes
checkHost = ${peerName}
sslVersionMin = TLSv1.3
`;

export const stunnel: NativeTunnel = {
  name: 'stunnel',
  description: 'stunnel 5 pair in the node namespaces: TLS 1.3, ECDSA P-256 certificates verified both ways, one TLS connection per client connection',
  offset: 10_000,
  clientConfig: (l: TunnelLayout) =>
    GLOBAL +
    l.serverPorts
      .map((port) => {
        const p = tunnelPorts(l.offset, port);
        return `\n[to-${port}]\nclient = yes\naccept = ${l.clientNodeIp}:${p.plain}\nconnect = ${l.serverNodeIp}:${p.tls}\n${tlsOptions(l.certs.clientCert, l.certs.clientKey, l.certs.caCert, l.certs.serverName)}`;
      })
      .join(''),
  serverConfig: (l: TunnelLayout) =>
    GLOBAL +
    l.serverPorts
      .map((port) => {
        const p = tunnelPorts(l.offset, port);
        return `\n[from-${port}]\naccept = ${l.serverNodeIp}:${p.tls}\nconnect = ${l.serverPodIp}:${port}\n${tlsOptions(l.certs.serverCert, l.certs.serverKey, l.certs.caCert, l.certs.clientName)}`;
      })
      .join(''),
  command: (configFile) => ['stunnel4', configFile],
};

export const stunnelPath = nativeTunnelPath(stunnel);
