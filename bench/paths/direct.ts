import type { BenchPath } from './path.js';

export const directPath: BenchPath = {
  name: 'direct',
  description: 'no mesh: the client pod dials the server pod IP, routed in clear text between the nodes',
  async open({ topology }) {
    const endpoints = topology.plain;
    return { name: 'direct', endpoints, dial: (port) => ({ host: endpoints.serverPodIp, port }), proxies: [], close: async () => {} };
  },
};
