import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TunnelCerts } from '../certs.js';
import { waitForListener, type Spawned } from '../exec.js';
import { tunnelPorts, type BenchPath, type PathName } from './path.js';

export interface TunnelLayout {
  clientNodeIp: string;
  serverNodeIp: string;
  serverPodIp: string;
  serverPorts: number[];
  /** Port offset of this tunnel (see tunnelPorts). */
  offset: number;
  certs: TunnelCerts;
}

/**
 * A native mTLS tunnel between the nodes: a client-side instance in the client node accepts clear
 * text on the node address and opens a mutual-TLS connection per client connection to the
 * server-side instance in the server node, which connects to the server pod.
 */
export interface NativeTunnel {
  name: PathName;
  /** Names its directory under the work directory and its processes, when one path has more than one tunnel (default: the path's name). */
  instance?: string;
  description: string;
  offset: number;
  clientConfig(layout: TunnelLayout): string;
  serverConfig(layout: TunnelLayout): string;
  command(configFile: string): string[];
}

export function nativeTunnelPath(tunnel: NativeTunnel): BenchPath {
  return {
    name: tunnel.name,
    description: tunnel.description,
    async open({ topology, workDir, certs, serverPorts }) {
      const endpoints = topology.plain;
      const layout: TunnelLayout = {
        clientNodeIp: endpoints.clientNodeIp,
        serverNodeIp: endpoints.serverNodeIp,
        serverPodIp: endpoints.serverPodIp,
        serverPorts,
        offset: tunnel.offset,
        certs: await certs(),
      };
      const instance = tunnel.instance ?? tunnel.name;
      const dir = join(workDir, instance);
      mkdirSync(dir, { recursive: true });
      const started: Spawned[] = [];
      const close = async () => {
        await Promise.all(started.map((s) => s.stop()));
      };
      try {
        const serverConf = join(dir, 'server.conf');
        writeFileSync(serverConf, tunnel.serverConfig(layout));
        const server = endpoints.serverNode.spawn(tunnel.command(serverConf), join(dir, 'server.log'));
        started.push(server);
        const clientConf = join(dir, 'client.conf');
        writeFileSync(clientConf, tunnel.clientConfig(layout));
        const client = endpoints.clientNode.spawn(tunnel.command(clientConf), join(dir, 'client.log'));
        started.push(client);
        for (const port of serverPorts) {
          const ports = tunnelPorts(tunnel.offset, port);
          await waitForListener(endpoints.serverNode, ports.tls, server);
          await waitForListener(endpoints.clientNode, ports.plain, client);
        }
        return {
          name: tunnel.name,
          endpoints,
          dial: (port) => ({ host: endpoints.clientNodeIp, port: tunnelPorts(tunnel.offset, port).plain }),
          proxies: [
            { label: `${instance} client side (client node)`, pids: () => [client.pid] },
            { label: `${instance} server side (server node)`, pids: () => [server.pid] },
          ],
          close,
        };
      } catch (err) {
        await close();
        throw err;
      }
    },
  };
}
