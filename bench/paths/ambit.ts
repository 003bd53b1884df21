import type { BenchPath } from './path.js';

export class PathUnavailableError extends Error {}

export const ambitPath: BenchPath = {
  name: 'ambit',
  description: 'ambit ambient mesh: the client pod dials the server pod IP; ztunnel captures it and carries it over HBONE (HTTP/2 CONNECT in mTLS, port 15008) between the nodes',
  async open({ topology }) {
    const endpoints = topology.mesh;
    if (!endpoints) throw new PathUnavailableError('the ambit path needs the lab (it was started with --skip-lab, or the lab provides no mesh pods)');
    return { name: 'ambit', endpoints, dial: (port) => ({ host: endpoints.serverPodIp, port }), proxies: endpoints.proxies, confirm: () => endpoints.confirmMeshed(), close: async () => {} };
  },
};
