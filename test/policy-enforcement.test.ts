// Policies take effect on what is already running: pooled HBONE sessions, open connections, every order of events.
import assert from 'node:assert/strict';
import { connect as http2Connect } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';

import { create } from '@bufbuild/protobuf';

import { Action, AuthorizationSchema, Scope, type Authorization } from '../src/gen/istio/security/authorization_pb.js';
import { TunnelProtocol, WorkloadSchema, WorkloadType, type Workload } from '../src/gen/istio/workload/workload_pb.js';
import { ipToBytes, normalizeIp } from '../src/api/ip.js';
import { createRootCa } from '../src/util/pki.js';
import { createProxyMetrics, type ProxyMetrics } from '../src/ztunnel/metrics.js';
import { Proxy } from '../src/ztunnel/proxy/proxy.js';
import { ZtunnelState } from '../src/ztunnel/state/store.js';
import { captureLog, FakeCertificates, listenOn, metricValue, readExactly, readToEnd, waitFor } from './helpers/proxy-fakes.js';

const CLUSTER = 'cluster1';
const HBONE = 15008;
const APP_PORT = 8080;
const CURL_IP = '127.0.70.1'; // node-a
const NOTCURL_IP = '127.0.70.3'; // node-a, another identity
const SERVER_IP = '127.0.70.2'; // node-b
const OUTSIDER_IP = '127.0.70.9'; // not in the mesh: a plaintext client
const CURL_PRINCIPAL = 'cluster.local/ns/default/sa/curl';

function workload(name: string, ip: string, node: string, labels: { serviceAccount?: string; policies?: string[] } = {}): Workload {
  return create(WorkloadSchema, {
    uid: `${CLUSTER}//Pod/default/${name}`,
    name,
    namespace: 'default',
    addresses: [ipToBytes(ip)],
    serviceAccount: labels.serviceAccount ?? name,
    node,
    canonicalName: name,
    workloadName: name,
    workloadType: WorkloadType.DEPLOYMENT,
    tunnelProtocol: TunnelProtocol.HBONE,
    clusterId: CLUSTER,
    authorizationPolicies: labels.policies ?? [],
  });
}

/** A WORKLOAD_SELECTOR policy on `server` matching the curl principal (or, with `principal`, another one). */
function selectorPolicy(name: string, action: Action, principal = CURL_PRINCIPAL): Authorization {
  return create(AuthorizationSchema, {
    name,
    namespace: 'default',
    scope: Scope.WORKLOAD_SELECTOR,
    action,
    rules: [{ clauses: [{ matches: [{ principals: [{ matchType: { case: 'exact', value: principal } }] }] }] }],
  });
}

/** A NAMESPACE-wide DENY for a source address (as an `ipBlocks` rule translates). */
function denyAddress(name: string, ip: string): Authorization {
  return create(AuthorizationSchema, {
    name,
    namespace: 'default',
    scope: Scope.NAMESPACE,
    action: Action.DENY,
    rules: [{ clauses: [{ matches: [{ sourceIps: [{ address: ipToBytes(ip), length: 32 }] }] }] }],
  });
}

describe('policies take effect on running workloads and pooled sessions', () => {
  let certificates: FakeCertificates;
  let clientState: ZtunnelState;
  let serverState: ZtunnelState;
  let clientProxy: Proxy;
  let serverProxy: Proxy;
  let serverMetrics: ProxyMetrics;
  let clientMetrics: ProxyMetrics;
  let echo: Server;
  let echoPort = 0;
  const open = new Set<Socket>();

  const states = () => [clientState, serverState];
  /** What the control plane pushes, to both ztunnels. */
  const pushWorkloads = (...workloads: Workload[]) => states().forEach((state) => state.applyAddresses(workloads.map((w) => ({ name: w.uid, workload: w })), []));
  const pushPolicies = (...policies: Authorization[]) => states().forEach((state) => state.applyAuthorizations(policies.map((p) => ({ name: `${p.namespace}/${p.name}`, authorization: p })), []));
  const removePolicies = (...names: string[]) => states().forEach((state) => state.applyAuthorizations([], names));

  const dialAddress = (ip: string, port: number) => ({ host: ip, port: port === APP_PORT ? echoPort : port === HBONE ? serverProxy.ports().inbound : port });
  const originalDestination = (proxy: () => Proxy) => (socket: Socket) => {
    const ip = normalizeIp(socket.localAddress ?? '');
    return { ip, port: socket.localPort === proxy().ports().inbound ? HBONE : APP_PORT };
  };

  async function connectFrom(sourceIp: string): Promise<Socket> {
    const socket = netConnect({ host: SERVER_IP, port: clientProxy.ports().outbound, localAddress: sourceIp, allowHalfOpen: true });
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    socket.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return socket;
  }

  /** One request/answer through the mesh from `sourceIp`: true when it was answered, false when refused. */
  async function answered(sourceIp: string): Promise<boolean> {
    const socket = await connectFrom(sourceIp);
    socket.end('ping');
    const result = await readToEnd(socket);
    return result.data.toString() === 'ping';
  }

  before(async () => {
    const ca = await createRootCa('policy test CA');
    certificates = new FakeCertificates(ca);
    echo = createNetServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      socket.on('data', (chunk) => socket.write(chunk));
      socket.on('end', () => socket.end());
    });
    echoPort = await listenOn(echo, '0.0.0.0');
    const listen = { outbound: 0, inbound: 0, inboundPlaintext: 0, host: '0.0.0.0' };
    const stateOptions = { network: '', clusterId: CLUSTER, systemNamespace: 'istio-system' };
    clientState = new ZtunnelState({ ...stateOptions, nodeName: 'node-a', logger: captureLog('client-state').log });
    serverState = new ZtunnelState({ ...stateOptions, nodeName: 'node-b', logger: captureLog('server-state').log });
    serverMetrics = createProxyMetrics();
    clientMetrics = createProxyMetrics();
    serverProxy = new Proxy({ state: serverState, certificates, log: captureLog('server').log, metrics: serverMetrics, clusterId: CLUSTER, listen, originalDestination: originalDestination(() => serverProxy), dialAddress });
    await serverProxy.start();
    clientProxy = new Proxy({ state: clientState, certificates, log: captureLog('client').log, metrics: clientMetrics, clusterId: CLUSTER, listen, originalDestination: originalDestination(() => clientProxy), hbonePort: HBONE, dialAddress });
    await clientProxy.start();
    // As ztunnel's main does: open connections are re-authorized whenever the state changes.
    serverState.onChange(() => serverProxy.reassessPolicies());
  });

  beforeEach(() => {
    for (const socket of open) socket.destroy();
    const everything = (state: ZtunnelState) => state.authorizations().map((p) => `${p.namespace}/${p.name}`);
    for (const state of states()) state.applyAuthorizations([], everything(state));
    pushWorkloads(workload('curl', CURL_IP, 'node-a'), workload('notcurl', NOTCURL_IP, 'node-a'), workload('server', SERVER_IP, 'node-b'));
  });

  after(async () => {
    for (const socket of open) socket.destroy();
    await clientProxy?.stop({ drainTimeoutMs: 0 });
    await serverProxy?.stop({ drainTimeoutMs: 0 });
    serverMetrics?.close();
    clientMetrics?.close();
    echo?.close();
  });

  test('a selector DENY applied while the pod runs denies the next request on the pooled session', async () => {
    assert.equal(await answered(CURL_IP), true, 'allowed before any policy');
    const sessions = clientProxy.pooledSessions().hbone;
    assert.ok(sessions >= 1, 'the first request left a pooled session');
    // The control plane sends the policy and the pod's workload, now naming it.
    pushPolicies(selectorPolicy('deny-curl', Action.DENY));
    pushWorkloads(workload('server', SERVER_IP, 'node-b', { policies: ['default/deny-curl'] }));
    assert.equal(await answered(CURL_IP), false, 'denied on the same pooled session');
    assert.equal(clientProxy.pooledSessions().hbone, sessions, 'no new session was needed: the old one was reused');
    assert.equal(await answered(NOTCURL_IP), true, 'another identity is still allowed');
  });

  test('the workload update may come before the policy: enforced as soon as the policy arrives', async () => {
    assert.equal(await answered(CURL_IP), true);
    pushWorkloads(workload('server', SERVER_IP, 'node-b', { policies: ['default/deny-curl'] }));
    assert.equal(await answered(CURL_IP), true, 'a policy the workload names but that has not arrived is skipped');
    pushPolicies(selectorPolicy('deny-curl', Action.DENY));
    assert.equal(await answered(CURL_IP), false);
  });

  test('an ALLOW for another principal replacing a DENY keeps curl out; removing it lets curl in', async () => {
    pushPolicies(selectorPolicy('gate', Action.DENY));
    pushWorkloads(workload('server', SERVER_IP, 'node-b', { policies: ['default/gate'] }));
    assert.equal(await answered(CURL_IP), false);
    pushPolicies(selectorPolicy('gate', Action.ALLOW, 'cluster.local/ns/default/sa/nobody'));
    assert.equal(await answered(CURL_IP), false, 'ALLOW nobody denies curl');
    assert.equal(await answered(NOTCURL_IP), false, 'and everyone else');
    removePolicies('default/gate');
    assert.equal(await answered(CURL_IP), true, 'no policy: allowed again');
  });

  test('a selector that stops matching (pod relabelled) lifts the policy for the running pod', async () => {
    pushPolicies(selectorPolicy('deny-curl', Action.DENY));
    pushWorkloads(workload('server', SERVER_IP, 'node-b', { policies: ['default/deny-curl'] }));
    assert.equal(await answered(CURL_IP), false);
    pushWorkloads(workload('server', SERVER_IP, 'node-b', { policies: [] }));
    assert.equal(await answered(CURL_IP), true);
  });

  test('an open HBONE connection that a new DENY covers is cut, others stay', async () => {
    const denied = await connectFrom(CURL_IP);
    const kept = await connectFrom(NOTCURL_IP);
    denied.write('a');
    kept.write('b');
    assert.equal((await readExactly(denied, 1)).toString(), 'a');
    assert.equal((await readExactly(kept, 1)).toString(), 'b');
    const revokedBefore = await metricValue(serverMetrics, 'ambit_proxy_refused_connections_total', { reason: 'policy_revoked' }).catch(() => 0);
    const ended = readToEnd(denied);

    pushPolicies(selectorPolicy('deny-curl', Action.DENY));
    pushWorkloads(workload('server', SERVER_IP, 'node-b', { policies: ['default/deny-curl'] }));
    const result = await ended;
    assert.equal(result.reset, true, 'the denied connection is reset, not ended cleanly');
    kept.write('c');
    assert.equal((await readExactly(kept, 1)).toString(), 'c', 'the other identity keeps its connection');
    await waitFor('the revocation to be counted', async () => (await metricValue(serverMetrics, 'ambit_proxy_refused_connections_total', { reason: 'policy_revoked' }).catch(() => 0)) > revokedBefore);
  });

  test('an open plaintext connection from outside the mesh is cut by a DENY on its address', async () => {
    const socket = netConnect({ host: SERVER_IP, port: serverProxy.ports().inboundPlaintext, localAddress: OUTSIDER_IP, allowHalfOpen: true });
    open.add(socket);
    socket.on('error', () => undefined);
    socket.write('x');
    assert.equal((await readExactly(socket, 1)).toString(), 'x');
    const ended = readToEnd(socket);
    pushPolicies(denyAddress('deny-outsider', OUTSIDER_IP));
    assert.equal((await ended).reset, true);
  });

  test('a stale session to a replaced pod (same address, another identity) gets no more streams', async () => {
    const curl = await certificates.certificateFor(`spiffe://${CURL_PRINCIPAL}`);
    const tls = tlsConnect({ host: SERVER_IP, port: serverProxy.ports().inbound, cert: curl.certChainPem, key: curl.keyPem, ca: curl.rootsPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    tls.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', resolve);
      tls.once('error', reject);
    });
    const session = http2Connect(`https://${SERVER_IP}`, { createConnection: () => tls });
    session.on('error', () => undefined);
    const status = () =>
      new Promise<number>((resolve, reject) => {
        const stream = session.request({ ':method': 'CONNECT', ':authority': `${SERVER_IP}:${APP_PORT}` }, { endStream: false });
        stream.on('error', () => undefined);
        stream.once('response', (headers) => {
          resolve(Number(headers[':status']));
          stream.destroy();
        });
        stream.once('close', () => reject(new Error(`stream closed (code ${stream.rstCode})`)));
      });
    try {
      assert.equal(await status(), 200, 'the session works while the pod is there');
      states().forEach((state) => state.applyAddresses([{ name: `${CLUSTER}//Pod/default/other`, workload: workload('other', SERVER_IP, 'node-b') }], [`${CLUSTER}//Pod/default/server`]));
      assert.equal(await status(), 503, 'the address now belongs to another identity: refused on the old session');
      assert.equal(await answered(CURL_IP), true, 'a new connection reaches the new pod, with its own identity');
      const held = serverProxy.heldIdentities().server;
      assert.ok(held.some((identity) => identity.endsWith('/sa/other')), `the new pod's TLS server: ${held.join(', ')}`);
      assert.ok(!held.some((identity) => identity.endsWith('/sa/server')), `the replaced pod's TLS server is pruned (issue 11, finding 7): ${held.join(', ')}`);
    } finally {
      session.destroy();
      states().forEach((state) => state.applyAddresses([{ name: `${CLUSTER}//Pod/default/server`, workload: workload('server', SERVER_IP, 'node-b') }], [`${CLUSTER}//Pod/default/other`]));
    }
  });
});
