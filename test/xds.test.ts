import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import { aggregatedDiscoveryService } from '../src/api/grpc.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../src/api/resources.js';
import { ResourceCache } from '../src/controlplane/xds/resource-cache.js';
import { DeltaXdsServer } from '../src/controlplane/xds/server.js';
import { createXdsMetrics } from '../src/controlplane/xds/metrics.js';
import { XdsClient } from '../src/ztunnel/xds/client.js';
import { AddressSchema, WorkloadSchema } from '../src/gen/istio/workload/workload_pb.js';
import { AuthorizationSchema } from '../src/gen/istio/security/authorization_pb.js';
import type { StateUpdates } from '../src/ztunnel/state/types.js';
import { createRootCa, issueLeaf } from '../src/util/pki.js';

const SERVER_NAME = 'ambit-controlplane.istio-system.svc';
const silent = pino({ level: 'silent' });

function workloadBytes(name: string, ip: number[]): Uint8Array {
  return toBinary(AddressSchema, create(AddressSchema, { type: { case: 'workload', value: create(WorkloadSchema, { uid: name, name, namespace: 'default', addresses: [Uint8Array.from(ip)] }) } }));
}

class RecordingState implements StateUpdates {
  readonly addresses = new Map<string, string>();
  readonly authorizations = new Set<string>();
  readonly batches: Array<{ upserted: string[]; removed: string[] }> = [];
  private listeners: Array<(c: { addresses: string[]; authorizations: string[] }) => void> = [];
  applyAddresses(upserted: Parameters<StateUpdates['applyAddresses']>[0], removed: string[]): void {
    for (const u of upserted) this.addresses.set(u.name, u.workload ? `workload:${u.workload.name}` : `service:${u.service?.hostname}`);
    for (const r of removed) this.addresses.delete(r);
    this.batches.push({ upserted: upserted.map((u) => u.name), removed });
    for (const l of this.listeners) l({ addresses: [...upserted.map((u) => u.name), ...removed], authorizations: [] });
  }
  applyAuthorizations(upserted: Parameters<StateUpdates['applyAuthorizations']>[0], removed: string[]): void {
    for (const u of upserted) this.authorizations.add(u.name);
    for (const r of removed) this.authorizations.delete(r);
  }
  onChange(listener: (c: { addresses: string[]; authorizations: string[] }) => void): void {
    this.listeners.push(listener);
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('delta xDS between control plane and ztunnel', () => {
  let rootPem = '';
  let serverCert = { certPem: '', keyPem: '' };
  const tokenDir = mkdtempSync(join(tmpdir(), 'ambit-xds-'));
  const tokenPath = join(tokenDir, 'token');
  writeFileSync(tokenPath, 'test-token');

  before(async () => {
    const ca = await createRootCa('test root');
    rootPem = ca.certPem;
    serverCert = await issueLeaf(ca, { commonName: SERVER_NAME, dnsNames: [SERVER_NAME], server: true });
  });

  async function startServer(cache: ResourceCache, port = 0, registry = new Registry()): Promise<{ server: Server; port: number; registry: Registry }> {
    const server = new Server();
    const xds = new DeltaXdsServer({ cache, log: silent, metrics: createXdsMetrics(registry) });
    server.addService(aggregatedDiscoveryService, xds.handlers());
    const credentials = ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serverCert.keyPem), cert_chain: Buffer.from(serverCert.certPem) }], false);
    const bound = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))));
    return { server, port: bound, registry };
  }

  function client(port: number, state: StateUpdates): XdsClient {
    return new XdsClient({
      address: `127.0.0.1:${port}`,
      rootsPem: () => rootPem,
      serverName: SERVER_NAME,
      tokenPath,
      clusterId: 'cluster1',
      nodeId: 'ztunnel~test',
      state,
      log: silent,
      backoff: { initialMs: 100, maxMs: 500 },
    });
  }

  const cleanups: Array<() => void> = [];
  after(() => cleanups.forEach((c) => c()));

  test('initial state, pushes of only what changed, removals', async () => {
    const cache = new ResourceCache({ debounceMs: 5 });
    cache.set(ADDRESS_TYPE_URL, 'c1//Pod/default/a', workloadBytes('a', [198, 19, 0, 5]));
    cache.set(AUTHORIZATION_TYPE_URL, 'default/deny', toBinary(AuthorizationSchema, create(AuthorizationSchema, { name: 'deny', namespace: 'default' })));
    cache.flush();
    const { server, port } = await startServer(cache);
    const state = new RecordingState();
    const ztunnel = client(port, state);
    cleanups.push(() => (ztunnel.stop(), server.forceShutdown()));
    ztunnel.start();
    await ztunnel.synced;
    assert.equal(state.addresses.get('c1//Pod/default/a'), 'workload:a');
    assert.ok(state.authorizations.has('default/deny'));
    assert.equal(ztunnel.status().connected, true);

    const before = state.batches.length;
    cache.set(ADDRESS_TYPE_URL, 'c1//Pod/default/b', workloadBytes('b', [198, 19, 0, 6]));
    cache.set(ADDRESS_TYPE_URL, 'c1//Pod/default/a', workloadBytes('a', [198, 19, 0, 5])); // unchanged content: not re-sent
    await until('push of b', () => state.addresses.has('c1//Pod/default/b'));
    assert.deepEqual(state.batches.slice(before), [{ upserted: ['c1//Pod/default/b'], removed: [] }]);

    cache.delete(ADDRESS_TYPE_URL, 'c1//Pod/default/a');
    await until('removal of a', () => !state.addresses.has('c1//Pod/default/a'));
  });

  test('reconnect resumes from known versions and keeps state while the server is down', async () => {
    const cache = new ResourceCache({ debounceMs: 5 });
    cache.set(ADDRESS_TYPE_URL, 'w1', workloadBytes('w1', [198, 19, 0, 1]));
    cache.set(ADDRESS_TYPE_URL, 'w2', workloadBytes('w2', [198, 19, 0, 2]));
    cache.flush();
    const first = await startServer(cache);
    const state = new RecordingState();
    const ztunnel = client(first.port, state);
    cleanups.push(() => ztunnel.stop());
    ztunnel.start();
    await ztunnel.synced;
    first.server.forceShutdown();
    await until('disconnect noticed', () => !ztunnel.status().connected);
    assert.equal(state.addresses.size, 2, 'state kept while the control plane is down');

    // While down: w2 changes, w1 is deleted, w3 appears.
    cache.set(ADDRESS_TYPE_URL, 'w2', workloadBytes('w2', [198, 19, 0, 22]));
    cache.delete(ADDRESS_TYPE_URL, 'w1');
    cache.set(ADDRESS_TYPE_URL, 'w3', workloadBytes('w3', [198, 19, 0, 3]));
    cache.flush();
    const batchesBefore = state.batches.length;
    const second = await startServer(cache, first.port);
    cleanups.push(() => second.server.forceShutdown());
    await until('resync', () => state.addresses.has('w3') && !state.addresses.has('w1'));
    const resync = state.batches.slice(batchesBefore).find((b) => b.upserted.length);
    assert.deepEqual(resync?.upserted.sort(), ['w2', 'w3'], 'only changed resources are re-sent');
    assert.deepEqual(resync?.removed, ['w1']);
  });

  test('a resource that does not decode is NACKed, the rest is applied', async () => {
    const cache = new ResourceCache({ debounceMs: 5 });
    cache.set(ADDRESS_TYPE_URL, 'good', workloadBytes('good', [198, 19, 0, 9]));
    cache.set(ADDRESS_TYPE_URL, 'bad', Uint8Array.from([0x0a, 0xff, 0xff, 0xff])); // truncated length-delimited field
    cache.flush();
    const registry = new Registry();
    const { server, port } = await startServer(cache, 0, registry);
    const state = new RecordingState();
    const ztunnel = client(port, state);
    cleanups.push(() => (ztunnel.stop(), server.forceShutdown()));
    ztunnel.start();
    await ztunnel.synced;
    assert.ok(state.addresses.has('good'));
    assert.ok(!state.addresses.has('bad'));
    await until('NACK counted', async () => /ambit_xds_nacks_total\{type="Address"\} 1/.test(await registry.metrics()));
  });

  test('garbage on the xDS port does not take the server down', async () => {
    const cache = new ResourceCache({ debounceMs: 5 });
    cache.set(ADDRESS_TYPE_URL, 'w', workloadBytes('w', [198, 19, 0, 4]));
    cache.flush();
    const { server, port } = await startServer(cache);
    cleanups.push(() => server.forceShutdown());
    for (const junk of [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.alloc(4096, 0xab), Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04garbage')]) {
      await new Promise<void>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => socket.end(junk));
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
        socket.resume();
      });
    }
    const state = new RecordingState();
    const ztunnel = client(port, state);
    cleanups.push(() => ztunnel.stop());
    ztunnel.start();
    await ztunnel.synced;
    assert.ok(state.addresses.has('w'));
  });
});
