/**
 * Real local HTTPS servers for tests of the Kubernetes kit and its users: a minimal API server
 * (list, get, watch of fixed objects, bearer tokens) and one that accepts connections and never answers.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { createEphemeralAuthority } from '../../src/controlplane/ca/authority.js';

type Json = Record<string, unknown>;

/** A serving certificate for 127.0.0.1 and the CA that signed it. */
export async function loopbackTls(): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const authority = await createEphemeralAuthority({ trustDomain: 'test.local' });
  const serving = await authority.issueServerCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], ttlSeconds: 3600 });
  return { caPem: authority.rootsPem, certPem: serving.certChainPem, keyPem: serving.keyPem };
}

/** A kubeconfig text for `server` with an inline CA and a bearer token. */
export function kubeconfigText(name: string, server: string, caPem: string, token: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${name}`,
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${Buffer.from(caPem).toString('base64')}`,
    'contexts:',
    `- name: ${name}`,
    '  context:',
    `    cluster: ${name}`,
    `    user: ${name}`,
    `current-context: ${name}`,
    'users:',
    `- name: ${name}`,
    '  user:',
    `    token: ${token}`,
    '',
  ].join('\n');
}

export function kubeConfigFor(server: string, caPem: string, token = 'test-token'): KubeConfig {
  const config = new KubeConfig();
  config.loadFromString(kubeconfigText('test', server, caPem, token));
  return config;
}

/** An HTTPS server that completes TLS handshakes and then never sends a byte. */
export async function silentApiServer(): Promise<{ url: string; caPem: string; requests: () => number; close: () => Promise<void> }> {
  const tls = await loopbackTls();
  let requests = 0;
  const sockets = new Set<Socket>();
  const server = createServer({ cert: tls.certPem, key: tls.keyPem }, () => {
    requests++;
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await listen(server);
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    caPem: tls.caPem,
    requests: () => requests,
    close: () => close(server, sockets),
  };
}

export interface FakeApiServer {
  url: string;
  caPem: string;
  objects: Record<string, Json[]>;
  /** Paths answered with this status instead (list and watch), until deleted. */
  failures: Map<string, number>;
  watching(path: string): boolean;
  /** Number of list (non-watch GET) requests per path. */
  lists(path: string): number;
  emit(path: string, type: 'ADDED' | 'MODIFIED' | 'DELETED', object: Json): void;
  /** Ends the open watches of `path` (as the API server does at the end of `timeoutSeconds`). */
  endWatches(path: string): void;
  kubeconfig(name: string, token: string): string;
  close(): Promise<void>;
}

/**
 * Answers list, get and watch requests for fixed objects; requests without an accepted bearer
 * token get 401 as from kube-apiserver. Watches stay open; `emit` sends events on them.
 */
export async function fakeApiServer(objects: Record<string, Json[]>, tokens: Set<string>): Promise<FakeApiServer> {
  const tls = await loopbackTls();
  const watches = new Map<string, Set<ServerResponse>>();
  const listCounts = new Map<string, number>();
  const failures = new Map<string, number>();
  const sockets = new Set<Socket>();
  const server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req: IncomingMessage, res: ServerResponse) => {
    // Clients that go away mid-watch are normal.
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'https://localhost');
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!token || !tokens.has(token)) return json(401, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
    const failure = failures.get(url.pathname);
    if (failure) return json(failure, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: `failing ${url.pathname} on purpose`, code: failure });
    const items = objects[url.pathname];
    if (url.searchParams.get('watch') === 'true' && items) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      let open = watches.get(url.pathname);
      if (!open) watches.set(url.pathname, (open = new Set()));
      open.add(res);
      res.on('close', () => open.delete(res));
      return;
    }
    if (items) {
      listCounts.set(url.pathname, (listCounts.get(url.pathname) ?? 0) + 1);
      return json(200, { kind: 'List', apiVersion: 'v1', metadata: { resourceVersion: String(version) }, items });
    }
    const parent = url.pathname.slice(0, url.pathname.lastIndexOf('/'));
    const name = url.pathname.slice(url.pathname.lastIndexOf('/') + 1);
    const found = objects[parent]?.find((object) => (object['metadata'] as Json)['name'] === name);
    if (found) return json(200, found);
    json(404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'not found', reason: 'NotFound', code: 404 });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await listen(server);
  let version = 1;
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    caPem: tls.caPem,
    objects,
    failures,
    watching: (path) => (watches.get(path)?.size ?? 0) > 0,
    lists: (path) => listCounts.get(path) ?? 0,
    emit(path, type, object) {
      const withVersion = { ...object, metadata: { ...(object['metadata'] as Json), resourceVersion: String(++version) } };
      for (const res of watches.get(path) ?? []) res.write(`${JSON.stringify({ type, object: withVersion })}\n`);
    },
    endWatches(path) {
      for (const res of watches.get(path) ?? []) res.end();
    },
    kubeconfig: (name, token) => kubeconfigText(name, url, tls.caPem, token),
    close: () => close(server, sockets),
  };
}

function listen(server: Server): Promise<void> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
}

function close(server: Server, sockets: Set<Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}
