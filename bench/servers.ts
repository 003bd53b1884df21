import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitForListener, type Place, type Spawned } from './exec.js';

/** Ports the servers listen on in the server pod. */
export const HTTP_PORT = 8080;
export const IPERF_PORT = 5201;

/** The response body: small, so that requests/s measures the path and not the payload. */
export const HTTP_BODY = 'ambit bench\n';

export function nginxConfig(dir: string, port: number): string {
  return `# ambit bench: a fast HTTP server answering every request from memory.
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  # nginx closes a keep-alive connection after 1,000 requests by default, which would turn a
  # keep-alive benchmark into a partly new-connection one.
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  tcp_nodelay on;
  server {
    listen ${port} backlog=8192;
    location / { return 200 ${JSON.stringify(HTTP_BODY)}; }
  }
}
`;
}

export async function startNginx(place: Place, workDir: string, tag: string, port = HTTP_PORT): Promise<Spawned> {
  const dir = join(workDir, `nginx-${tag}`);
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, port));
  const nginx = place.spawn(['nginx', '-p', dir, '-e', join(dir, 'nginx-error.log'), '-c', conf], join(dir, 'stdout.log'));
  await waitForListener(place, port, nginx);
  return nginx;
}

/** An iperf3 server for one case; stop it when the case is over. */
export async function startIperf3Server(place: Place, workDir: string, tag: string, port = IPERF_PORT): Promise<Spawned> {
  const server = place.spawn(['iperf3', '--server', '--port', String(port)], join(workDir, `iperf3-server-${tag}.log`));
  await waitForListener(place, port, server);
  return server;
}
