import assert from 'node:assert/strict';
import { X509Certificate as NodeX509, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createSecureContext } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { Client, credentials, Metadata, Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import { ApiException, type V1ConfigMap, type V1Pod, type V1Secret } from '@kubernetes/client-node';
import * as x509 from '@peculiar/x509';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { istioCertificateService, type IstioCertificateResponse } from '../src/api/grpc.js';
import {
  createEphemeralAuthority,
  loadOrCreateAuthority,
  publishAuthorityRoots,
  type MeshAuthority,
} from '../src/controlplane/ca/authority.js';
import {
  bearerToken,
  cachedPodDirectory,
  CertificateAuthorizer,
  checkClusterId,
  type TokenReviewer,
} from '../src/controlplane/ca/authorize.js';
import { CaRequestError } from '../src/controlplane/ca/errors.js';
import { unverifiedJwtPayload } from '../src/controlplane/ca/token-review.js';
import { createCertificateService } from '../src/controlplane/ca/server.js';
import type { CaKubeApi } from '../src/controlplane/ca/store.js';
import { IstioCertificateRequestSchema } from '../src/gen/istio/ca/ca_pb.js';
import { uriSansOf } from '../src/util/csr.js';
import { generateKeys } from '../src/util/keys.js';
import { pemCertificates } from '../src/util/pem.js';
import { createUriCsr } from '../src/util/uri-csr.js';
import { CertificateManager } from '../src/ztunnel/identity/manager.js';
import type { WorkloadCertificate } from '../src/ztunnel/identity/types.js';

const TRUST_DOMAIN = 'cluster.local';
const CLUSTER = 'cluster1';
const SYSTEM_NS = 'istio-system';
const SERVER_NAME = 'ambit-controlplane.istio-system.svc';
const SAMPLE_CERTS = '/work/shared/samples/istio/certs';
const DAY_MS = 24 * 3600 * 1000;
const spiffe = (ns: string, sa: string) => `spiffe://${TRUST_DOMAIN}/ns/${ns}/sa/${sa}`;

// ---------- fakes ----------

/** In-memory Secrets and ConfigMaps with the API server's 404/409 behaviour. */
class FakeCore implements CaKubeApi {
  readonly secrets = new Map<string, V1Secret>();
  readonly configMaps = new Map<string, V1ConfigMap>();
  /** Runs before a Secret create is applied (simulates a racing replica). */
  beforeSecretCreate?: (name: string) => void;
  private version = 0;

  async readNamespacedSecret({ namespace, name }: { namespace: string; name: string }): Promise<V1Secret> {
    const secret = this.secrets.get(`${namespace}/${name}`);
    if (!secret) throw notFound('secrets', name);
    return structuredClone(secret);
  }
  async createNamespacedSecret({ namespace, body }: { namespace: string; body: V1Secret }): Promise<V1Secret> {
    const name = body.metadata?.name ?? '';
    this.beforeSecretCreate?.(name);
    if (this.secrets.has(`${namespace}/${name}`)) throw conflict('secrets', name);
    const stored = { ...structuredClone(body), metadata: { ...body.metadata, resourceVersion: String(++this.version) } };
    this.secrets.set(`${namespace}/${name}`, stored);
    return structuredClone(stored);
  }
  async readNamespacedConfigMap({ namespace, name }: { namespace: string; name: string }): Promise<V1ConfigMap> {
    const configMap = this.configMaps.get(`${namespace}/${name}`);
    if (!configMap) throw notFound('configmaps', name);
    return structuredClone(configMap);
  }
  async createNamespacedConfigMap({ namespace, body }: { namespace: string; body: V1ConfigMap }): Promise<V1ConfigMap> {
    const name = body.metadata?.name ?? '';
    if (this.configMaps.has(`${namespace}/${name}`)) throw conflict('configmaps', name);
    const stored = { ...structuredClone(body), metadata: { ...body.metadata, resourceVersion: String(++this.version) } };
    this.configMaps.set(`${namespace}/${name}`, stored);
    return structuredClone(stored);
  }
  async replaceNamespacedConfigMap({ namespace, name, body }: { namespace: string; name: string; body: V1ConfigMap }): Promise<V1ConfigMap> {
    const existing = this.configMaps.get(`${namespace}/${name}`);
    if (!existing) throw notFound('configmaps', name);
    if (body.metadata?.resourceVersion !== existing.metadata?.resourceVersion) throw conflict('configmaps', name);
    const stored = { ...structuredClone(body), metadata: { ...body.metadata, resourceVersion: String(++this.version) } };
    this.configMaps.set(`${namespace}/${name}`, stored);
    return structuredClone(stored);
  }
}

const notFound = (kind: string, name: string) => new ApiException(404, 'Not Found', JSON.stringify({ message: `${kind} "${name}" not found` }), {});
const conflict = (kind: string, name: string) => new ApiException(409, 'Conflict', JSON.stringify({ message: `${kind} "${name}" already exists` }), {});

function secretOf(name: string, data: Record<string, string>, type = 'Opaque'): V1Secret {
  return {
    metadata: { name, namespace: SYSTEM_NS },
    type,
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  };
}

function sampleCacerts(overrides: Record<string, string> = {}): V1Secret {
  const data: Record<string, string> = {};
  for (const key of ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem']) data[key] = readFileSync(join(SAMPLE_CERTS, key), 'utf8');
  return secretOf('cacerts', { ...data, ...overrides });
}

interface ReviewedToken {
  username: string;
  extra?: Record<string, string[]>;
  /** `status.audiences`; default: the audiences asked for. */
  audiences?: string[];
}

/** A JWT-shaped token named `name` (its `sub`), with extra claims; the signature is not checked by anyone here. */
function fakeJwt(name: string, claims: Record<string, unknown> = {}): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'RS256' })}.${encode({ sub: name, ...claims })}.c2lnbmF0dXJl`;
}

/** TokenReview stand-in: known tokens (by the name fakeJwt gave them) authenticate, anything else is rejected with the API server's wording. */
class FakeTokenReviewer implements TokenReviewer {
  readonly audiencesSeen: string[][] = [];
  constructor(private readonly tokens: Record<string, ReviewedToken>) {}
  async review(token: string, audiences: string[]) {
    this.audiencesSeen.push(audiences);
    const name = unverifiedJwtPayload(token)?.sub;
    const known = typeof name === 'string' ? this.tokens[name] : undefined;
    if (!known) return { authenticated: false, error: '[invalid bearer token, token lookup failed]' };
    return { authenticated: true, username: known.username, extra: known.extra, audiences: known.audiences ?? audiences };
  }
}

function pod(namespace: string, name: string, node: string, serviceAccount?: string, phase = 'Running', uid = `uid-${name}`): V1Pod {
  return {
    metadata: { namespace, name, uid },
    spec: { nodeName: node, serviceAccountName: serviceAccount, containers: [] },
    status: { phase },
  };
}

const PODS: V1Pod[] = [
  pod(SYSTEM_NS, 'ztunnel-n1', 'n1', 'ztunnel'),
  pod(SYSTEM_NS, 'ztunnel-n2', 'n2', 'ztunnel'),
  pod('shop', 'cart-1', 'n1', 'cart'),
  pod('shop', 'pay-1', 'n2', 'pay'),
  pod('shop', 'legacy-1', 'n1', undefined),
  pod('shop', 'batch-1', 'n1', 'batch', 'Succeeded'),
];

const ztunnelToken = (podName: string, uid = `uid-${podName}`): ReviewedToken => ({
  username: `system:serviceaccount:${SYSTEM_NS}:ztunnel`,
  extra: { 'authentication.kubernetes.io/pod-name': [podName], 'authentication.kubernetes.io/pod-uid': [uid] },
});

const TOKENS: Record<string, ReviewedToken> = {
  'tok-z1': ztunnelToken('ztunnel-n1'),
  'tok-z2': ztunnelToken('ztunnel-n2'),
  'tok-z-stale': ztunnelToken('ztunnel-n1', 'uid-of-a-deleted-pod'),
  'tok-z-unbound': { username: `system:serviceaccount:${SYSTEM_NS}:ztunnel` },
  'tok-cart': { username: 'system:serviceaccount:shop:cart' },
  'tok-admin': { username: 'kubernetes-admin' },
};

/** A pino logger writing into an array, to check what is (and is not) logged. */
function captureLogger(lines: string[]): Logger {
  return pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
}

// ---------- the CA server under test ----------

interface CaHarness {
  authority: MeshAuthority;
  address: string;
  registry: Registry;
  reviewer: FakeTokenReviewer;
  logs: string[];
  close(): Promise<void>;
}

async function startCa(authority: MeshAuthority, options: { maxTtlSeconds?: number } = {}): Promise<CaHarness> {
  const logs: string[] = [];
  const registry = new Registry();
  const reviewer = new FakeTokenReviewer(TOKENS);
  const authorizer = new CertificateAuthorizer({
    trustDomain: TRUST_DOMAIN,
    clusterName: CLUSTER,
    systemNamespace: SYSTEM_NS,
    tokenReviewer: reviewer,
    pods: cachedPodDirectory(() => PODS),
  });
  const server = new Server();
  server.addService(
    istioCertificateService,
    createCertificateService({ authority, authorizer, log: captureLogger(logs), registry, maxTtlSeconds: options.maxTtlSeconds }),
  );
  const serving = await authority.issueServerCertificate({ dnsNames: [SERVER_NAME], ttlSeconds: 3600 });
  const tls = ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.certChainPem) }], false);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', tls, (err, boundPort) => (err ? reject(err) : resolve(boundPort))),
  );
  return {
    authority,
    address: `127.0.0.1:${port}`,
    registry,
    reviewer,
    logs,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

const workDir = mkdtempSync(join(tmpdir(), 'ambit-ca-test-'));
const managers: CertificateManager[] = [];

function managerFor(ca: CaHarness, token: string | undefined, options: { clusterId?: string; ttlSeconds?: number; logs?: string[] } = {}) {
  const tokenPath = join(workDir, `token-${managers.length}`);
  if (token !== undefined) writeFileSync(tokenPath, `${token}\n`);
  const manager = new CertificateManager({
    caAddress: ca.address,
    caRootsPem: ca.authority.rootsPem,
    caServerName: SERVER_NAME,
    tokenPath,
    clusterId: options.clusterId ?? CLUSTER,
    requestedTtlSeconds: options.ttlSeconds,
    log: captureLogger(options.logs ?? []),
  });
  managers.push(manager);
  return { manager, tokenPath };
}

/** A raw CreateCertificate call, for requests the manager would never send. */
async function rawCall(
  ca: CaHarness,
  request: { csr: string; validityDuration?: bigint; metadata?: Record<string, string> },
  headers: Record<string, string>,
): Promise<IstioCertificateResponse> {
  const client = new Client(ca.address, credentials.createSsl(Buffer.from(ca.authority.rootsPem)), {
    'grpc.ssl_target_name_override': SERVER_NAME,
    'grpc.default_authority': SERVER_NAME,
  });
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
  const method = istioCertificateService.createCertificate;
  try {
    return await new Promise((resolve, reject) =>
      client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        create(IstioCertificateRequestSchema, { csr: request.csr, validityDuration: request.validityDuration ?? 0n, metadata: request.metadata }),
        metadata,
        { deadline: Date.now() + 10_000 },
        (err: ServiceError | null, response?: IstioCertificateResponse) => (err ? reject(err) : resolve(response!)),
      ),
    );
  } finally {
    client.close();
  }
}

async function rejectsWith(promise: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  await assert.rejects(promise, (err: ServiceError) => {
    assert.equal(err.code, code, `want ${status[code]}, got ${status[err.code]}: ${err.details}`);
    assert.match(err.details, message);
    return true;
  });
}

async function csrFor(uri: string): Promise<string> {
  return createUriCsr(await generateKeys(), uri);
}

async function counterValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((sum, v) => sum + v.value, 0);
}

function waitForRenewal(manager: CertificateManager, identity: string, predicate: (cert: WorkloadCertificate) => boolean): Promise<WorkloadCertificate> {
  return new Promise((resolve, reject) => {
    const timeout = setTimeout(() => reject(new Error(`no certificate for ${identity} within 20 s`)), 20_000);
    const unsubscribe = manager.onRenewed((cert) => {
      if (cert.identity !== identity || !predicate(cert)) return;
      clearTimeout(timeout);
      unsubscribe();
      resolve(cert);
    });
  });
}

const leafOf = (cert: WorkloadCertificate) => new NodeX509(pemCertificates(cert.certChainPem)[0]!);

// ---------- tests ----------

after(() => {
  for (const manager of managers) manager.stop();
  rmSync(workDir, { recursive: true, force: true });
});

describe('mesh CA over gRPC with the ztunnel certificate manager', () => {
  let ca: CaHarness;
  before(async () => {
    const authority = await loadOrCreateAuthority({ core: new FakeCore() }, { systemNamespace: SYSTEM_NS, trustDomain: TRUST_DOMAIN, log: pino({ level: 'silent' }) });
    ca = await startCa(authority);
  });
  after(async () => {
    await ca.close();
  });

  it('issues a workload its own identity: critical URI SAN, empty subject, 24 h, leaf then root', async () => {
    const { manager } = managerFor(ca, fakeJwt('tok-cart'));
    const identity = spiffe('shop', 'cart');
    const before = Date.now();
    const [first, second] = await Promise.all([manager.certificateFor(identity), manager.certificateFor(identity)]);
    assert.equal(first, second, 'concurrent callers share one certificate');
    assert.equal(await counterValue(ca.registry, 'ambit_ca_certificates_issued_total'), 1, 'concurrent callers share one request');

    const leaf = leafOf(first!);
    const parsed = new x509.X509Certificate(leaf.raw);
    assert.deepEqual(uriSansOf(parsed), [identity]);
    assert.equal(parsed.subject, '');
    assert.equal(parsed.getExtension(x509.SubjectAlternativeNameExtension)?.critical, true);
    assert.equal(leaf.ca, false);
    assert.deepEqual(leaf.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    const lifetime = first!.notAfter.getTime() - before;
    assert.ok(lifetime > DAY_MS - 60_000 && lifetime <= DAY_MS + 60_000, `lifetime ${lifetime} ms is not 24 h`);

    // Chain: the presented chain is the leaf alone; the roots hold the self-signed root that signed it.
    assert.equal(pemCertificates(first!.certChainPem).length, 1);
    const root = new NodeX509(pemCertificates(ca.authority.rootsPem)[0]!);
    assert.ok(leaf.verify(root.publicKey) && leaf.checkIssued(root));
    assert.ok(first!.rootsPem.includes(pemCertificates(ca.authority.rootsPem)[0]!.trim()));
    assert.equal(manager.roots(), pemCertificates(ca.authority.rootsPem).join(''));
    // The key belongs to the leaf, and the bundle is usable for TLS.
    assert.ok(createPublicKey(createPrivateKey(first!.keyPem)).export({ type: 'spki', format: 'der' }).equals(leaf.publicKey.export({ type: 'spki', format: 'der' })));
    createSecureContext({ cert: first!.certChainPem, key: first!.keyPem, ca: first!.rootsPem });

    const [view] = manager.view();
    assert.equal(view?.state, 'valid');
    assert.equal(view?.serialNumber, leaf.serialNumber);
    assert.equal(view?.chain.length, 2);
    assert.deepEqual(view?.chain[0]?.uriSans, [identity]);
    assert.equal(view?.chain[0]?.issuer, view?.chain[1]?.subject);
    assert.ok(view?.renewAt && Date.parse(view.renewAt) > Date.now());
    assert.deepEqual(manager.list().map((c) => c.identity), [identity]);
    assert.deepEqual(ca.reviewer.audiencesSeen.at(-1), ['istio-ca']);
  });

  it('lets ztunnel obtain identities of pods on its own node', async () => {
    const { manager } = managerFor(ca, fakeJwt('tok-z1'));
    const cart = await manager.certificateFor(spiffe('shop', 'cart'));
    assert.deepEqual(uriSansOf(new x509.X509Certificate(leafOf(cart).raw)), [spiffe('shop', 'cart')]);
    // A pod without serviceAccountName runs as "default".
    await manager.certificateFor(spiffe('shop', 'default'));
    // Its own identity needs no pod.
    await manager.certificateFor(spiffe(SYSTEM_NS, 'ztunnel'));
    const issued = ca.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((l) => l.outcome === 'issued' && l.impersonated === true);
    assert.ok(issued.some((l) => l.node === 'n1' && l.identity === spiffe('shop', 'cart') && l.caller === `system:serviceaccount:${SYSTEM_NS}:ztunnel`));
  });

  it('refuses ztunnel an identity with no live pod on its node', async () => {
    const { manager } = managerFor(ca, fakeJwt('tok-z1'));
    await assert.rejects(
      manager.certificateFor(spiffe('shop', 'pay')),
      /PERMISSION_DENIED.*ztunnel on node n1 may not obtain spiffe:\/\/cluster\.local\/ns\/shop\/sa\/pay: no pod with that identity runs on n1/,
    );
    await assert.rejects(manager.certificateFor(spiffe('shop', 'batch')), /no pod with that identity runs on n1/, 'a Succeeded pod does not count');
    const [payView] = manager.view().filter((v) => v.identity === spiffe('shop', 'pay'));
    assert.equal(payView?.state, 'error');
    assert.match(payView?.error ?? '', /no pod with that identity runs on n1/);
    // The ztunnel of the pod's node gets it.
    const { manager: onN2 } = managerFor(ca, fakeJwt('tok-z2'));
    await onN2.certificateFor(spiffe('shop', 'pay'));
    assert.ok((await counterValue(ca.registry, 'ambit_ca_requests_refused_total', { reason: 'permission_denied' })) >= 2);
  });

  it('refuses impersonation by other service accounts and by unbound or stale ztunnel tokens', async () => {
    await assert.rejects(managerFor(ca, fakeJwt('tok-cart')).manager.certificateFor(spiffe('shop', 'pay')), /service account shop\/cart may only obtain its own identity/);
    await assert.rejects(managerFor(ca, fakeJwt('tok-z-unbound')).manager.certificateFor(spiffe('shop', 'cart')), /not bound to a pod.*projected service account token/);
    await assert.rejects(managerFor(ca, fakeJwt('tok-z-stale')).manager.certificateFor(spiffe('shop', 'cart')), /bound to pod istio-system\/ztunnel-n1 uid uid-of-a-deleted-pod, which no longer exists/);
    await assert.rejects(managerFor(ca, fakeJwt('tok-admin')).manager.certificateFor(spiffe('shop', 'cart')), /"kubernetes-admin" is not a service account/);
    await assert.rejects(managerFor(ca, fakeJwt('tok-cart')).manager.certificateFor('spiffe://other.domain/ns/shop/sa/cart'), /outside this mesh's trust domain cluster\.local/);
  });

  it('refuses a caller from another cluster, naming both clusters', async () => {
    const { manager } = managerFor(ca, fakeJwt('tok-cart'), { clusterId: 'cluster2' });
    await assert.rejects(manager.certificateFor(spiffe('shop', 'cart')), /PERMISSION_DENIED.*"cluster2".*"cluster1"/);
    assert.equal(await counterValue(ca.registry, 'ambit_ca_requests_refused_total', { reason: 'cluster_mismatch' }), 1);
  });

  it('refuses missing, garbled and rejected tokens', async () => {
    const csr = await csrFor(spiffe('shop', 'cart'));
    await rejectsWith(rawCall(ca, { csr }, {}), status.UNAUTHENTICATED, /no bearer token/);
    await rejectsWith(rawCall(ca, { csr }, { authorization: 'Basic dXNlcjpwYXNz' }), status.UNAUTHENTICATED, /no bearer token/);
    await rejectsWith(rawCall(ca, { csr }, { authorization: `Bearer ${fakeJwt('nope')}` }), status.UNAUTHENTICATED, /token rejected by the API server: \[invalid bearer token/);
    const { manager } = managerFor(ca, fakeJwt('nope'));
    await assert.rejects(manager.certificateFor(spiffe('shop', 'cart')), /UNAUTHENTICATED/);
    // The token never reaches the logs.
    assert.ok(ca.logs.length > 0);
    const secrets = [fakeJwt('nope'), fakeJwt('tok-cart')].map((token) => token.split('.')[1]!);
    for (const line of ca.logs) assert.ok(!/tok-|nope|dXNlcjpwYXNz|PRIVATE KEY/.test(line) && !secrets.some((secret) => line.includes(secret)), `log line leaks a secret: ${line}`);
  });

  it('rejects bad CSRs with INVALID_ARGUMENT', async () => {
    const auth = { authorization: `Bearer ${fakeJwt('tok-cart')}`, clusterid: CLUSTER };
    await rejectsWith(rawCall(ca, { csr: 'garbage' }, auth), status.INVALID_ARGUMENT, /CSR is not PEM/);
    await rejectsWith(
      rawCall(ca, { csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n' }, auth),
      status.INVALID_ARGUMENT,
      /not a valid PKCS#10 request/,
    );
    // Two URI SANs.
    const keys = await generateKeys();
    const twoSans = await x509.Pkcs10CertificateRequestGenerator.create({
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffe('shop', 'cart') }, { type: 'url', value: spiffe('shop', 'pay') }], true)],
    });
    await rejectsWith(rawCall(ca, { csr: twoSans.toString('pem') }, auth), status.INVALID_ARGUMENT, /exactly one URI SAN/);
    // A signature that does not match: the requester must hold the key.
    const good = await csrFor(spiffe('shop', 'cart'));
    const der = Buffer.from(x509.PemConverter.decode(good)[0]!);
    der.writeUInt8(der.readUInt8(der.length - 5) ^ 0xff, der.length - 5);
    const tampered = x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
    await rejectsWith(rawCall(ca, { csr: tampered }, auth), status.INVALID_ARGUMENT, /signature/);
    // ImpersonatedIdentity must equal the CSR's SAN.
    await rejectsWith(
      rawCall(ca, { csr: good, metadata: { ImpersonatedIdentity: spiffe('shop', 'pay') } }, auth),
      status.INVALID_ARGUMENT,
      /ImpersonatedIdentity .*pay differs from the CSR's URI SAN .*cart/,
    );
  });

  it('caps the lifetime at the maximum and honours shorter requests', async () => {
    const auth = { authorization: `Bearer ${fakeJwt('tok-cart')}`, clusterid: CLUSTER };
    const lifetimeOf = (response: IstioCertificateResponse) => {
      const leaf = new NodeX509(response.certChain[0]!);
      return Date.parse(leaf.validTo) - Date.now();
    };
    const long = await rawCall(ca, { csr: await csrFor(spiffe('shop', 'cart')), validityDuration: 100n * 3600n }, auth);
    assert.ok(lifetimeOf(long) <= DAY_MS && lifetimeOf(long) > DAY_MS - 120_000);
    const short = await rawCall(ca, { csr: await csrFor(spiffe('shop', 'cart')), validityDuration: 3600n }, auth);
    assert.ok(lifetimeOf(short) <= 3600_000 && lifetimeOf(short) > 3600_000 - 120_000);
    assert.equal(short.certChain.length, 2, 'leaf then root, one certificate per element');
    assert.equal(short.certChain[1]!.trim(), pemCertificates(ca.authority.rootsPem)[0]!.trim());
  });

  it('survives garbage bytes on its port', async () => {
    await new Promise<void>((resolve) => {
      const socket = netConnect(Number(ca.address.split(':')[1]), '127.0.0.1', () => socket.end(Buffer.from('GET / HTTP/1.1\r\n\r\n\x00\xff\x16\x03junk'.repeat(50), 'latin1')));
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.resume();
    });
    await new Promise<void>((resolve) => {
      const socket = tlsConnect({ port: Number(ca.address.split(':')[1]), host: '127.0.0.1', ca: ca.authority.rootsPem, servername: SERVER_NAME, ALPNProtocols: ['h2'] }, () =>
        socket.end(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x09\xff\xff\xff\xff\xffgarbage-frames')),
      );
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.resume();
    });
    const { manager } = managerFor(ca, fakeJwt('tok-cart'));
    const cert = await manager.certificateFor(spiffe('shop', 'cart'));
    assert.ok(cert.notAfter.getTime() > Date.now());
  });

  it('renews at half-life, keeping a valid certificate throughout', async () => {
    const { manager } = managerFor(ca, fakeJwt('tok-cart'), { ttlSeconds: 4 });
    const identity = spiffe('shop', 'cart');
    const first = await manager.certificateFor(identity);
    const firstSerial = leafOf(first).serialNumber;
    const renewed = await waitForRenewal(manager, identity, (cert) => leafOf(cert).serialNumber !== firstSerial);
    assert.notEqual(leafOf(renewed).serialNumber, firstSerial);
    assert.ok(renewed.notAfter > first.notAfter);
    assert.equal(await manager.certificateFor(identity), renewed);
    manager.forget(identity);
    assert.deepEqual(manager.view(), []);
    assert.deepEqual(manager.list(), []);
  });

  it('retries with backoff after a failure and recovers', async () => {
    const logs: string[] = [];
    const { manager, tokenPath } = managerFor(ca, undefined, { logs });
    const identity = spiffe('shop', 'cart');
    await assert.rejects(manager.certificateFor(identity), /cannot obtain a certificate for spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart: cannot read the service account token .*ENOENT/);
    const [view] = manager.view();
    assert.equal(view?.state, 'error');
    assert.ok(view?.renewAt, 'a retry is scheduled');
    // Until the retry, callers get the failure without a new request.
    await assert.rejects(manager.certificateFor(identity), /ENOENT/);
    const recovered = waitForRenewal(manager, identity, () => true);
    writeFileSync(tokenPath, fakeJwt('tok-cart'));
    const cert = await recovered;
    assert.equal(cert.identity, identity);
    assert.equal(manager.view()[0]?.state, 'valid');
    assert.equal(manager.view()[0]?.error, undefined);
    assert.ok(logs.some((line) => line.includes('certificate request failed')));
  });
});

describe('plug-in CA (cacerts)', () => {
  it('signs with the intermediate and returns leaf, intermediate, root; end to end over gRPC', async () => {
    const core = new FakeCore();
    core.secrets.set(`${SYSTEM_NS}/cacerts`, sampleCacerts());
    const authority = await loadOrCreateAuthority({ core }, { systemNamespace: SYSTEM_NS, trustDomain: TRUST_DOMAIN, log: pino({ level: 'silent' }) });
    assert.equal(authority.source, 'cacerts');
    assert.equal(authority.rootsPem.trim(), readFileSync(join(SAMPLE_CERTS, 'root-cert.pem'), 'utf8').trim());

    const chain = await authority.sign(await csrFor(spiffe('shop', 'cart')), spiffe('shop', 'cart'), 3600);
    assert.equal(chain.length, 3);
    const [leaf, intermediate, root] = chain.map((pem) => new NodeX509(pem));
    assert.ok(intermediate!.raw.equals(new NodeX509(readFileSync(join(SAMPLE_CERTS, 'ca-cert.pem'))).raw));
    assert.ok(root!.raw.equals(new NodeX509(readFileSync(join(SAMPLE_CERTS, 'root-cert.pem'))).raw));
    assert.ok(leaf!.verify(intermediate!.publicKey), 'leaf is signed by the RSA intermediate');
    assert.match(leaf!.issuer, /CN=Istio CA/);

    const ca = await startCa(authority);
    const { manager } = managerFor(ca, fakeJwt('tok-cart'));
    try {
      const cert = await manager.certificateFor(spiffe('shop', 'cart'));
      assert.equal(pemCertificates(cert.certChainPem).length, 2, 'presented chain: leaf and intermediate');
      assert.equal(manager.view()[0]?.chain.length, 3);
      assert.match(manager.view()[0]?.chain[2]?.subject ?? '', /CN=Root CA/);
    } finally {
      manager.stop();
      await ca.close();
    }
  });

  it('fails at load with a message naming the Secret and the key', async () => {
    const load = (secret: V1Secret, now?: () => number) => {
      const core = new FakeCore();
      core.secrets.set(`${SYSTEM_NS}/cacerts`, secret);
      return loadOrCreateAuthority({ core }, { systemNamespace: SYSTEM_NS, trustDomain: TRUST_DOMAIN, log: pino({ level: 'silent' }), now });
    };
    const other = await createEphemeralAuthority({ trustDomain: TRUST_DOMAIN });
    const otherKey = (await other.issueServerCertificate({ dnsNames: ['x'], ttlSeconds: 60 })).keyPem;
    await assert.rejects(load(sampleCacerts({ 'ca-key.pem': otherKey })), /Secret istio-system\/cacerts key ca-key\.pem: is not the key of the certificate in ca-cert\.pem/);
    await assert.rejects(load(sampleCacerts({ 'ca-key.pem': 'not a key' })), /Secret istio-system\/cacerts key ca-key\.pem: is not a PEM private key/);
    await assert.rejects(load(sampleCacerts({ 'root-cert.pem': other.rootsPem })), /Secret istio-system\/cacerts key ca-cert\.pem: .*CN=Istio CA" does not chain to any certificate of root-cert\.pem/);
    await assert.rejects(load(sampleCacerts({ 'root-cert.pem': '' })), /Secret istio-system\/cacerts: missing key root-cert\.pem/);
    await assert.rejects(load(sampleCacerts({ 'ca-cert.pem': 'junk' })), /key ca-cert\.pem: holds 0 certificates/);
    await assert.rejects(load(sampleCacerts(), () => Date.parse('2200-01-01T00:00:00Z')), /Secret istio-system\/cacerts key ca-cert\.pem: .* expired at 2117-12-31/);
    // A leaf certificate is not a CA.
    const serving = await other.issueServerCertificate({ dnsNames: ['x'], ttlSeconds: 3600 });
    await assert.rejects(
      load(sampleCacerts({ 'ca-cert.pem': pemCertificates(serving.certChainPem)[0]!, 'ca-key.pem': serving.keyPem, 'cert-chain.pem': '', 'root-cert.pem': other.rootsPem })),
      /key ca-cert\.pem: .* is not a CA certificate/,
    );
  });

  it('accepts a cert-chain.pem that already includes ca-cert and the root', async () => {
    const core = new FakeCore();
    const chain = readFileSync(join(SAMPLE_CERTS, 'ca-cert.pem'), 'utf8') + readFileSync(join(SAMPLE_CERTS, 'root-cert.pem'), 'utf8');
    core.secrets.set(`${SYSTEM_NS}/cacerts`, sampleCacerts({ 'cert-chain.pem': chain }));
    const authority = await loadOrCreateAuthority({ core }, { systemNamespace: SYSTEM_NS, trustDomain: TRUST_DOMAIN, log: pino({ level: 'silent' }) });
    assert.equal(authority.caChainPem.length, 2, 'no duplicates: intermediate, root');
  });
});

describe('self-signed CA (istio-ca-secret) and the published roots', () => {
  const options = (logs: string[] = []) => ({ systemNamespace: SYSTEM_NS, trustDomain: TRUST_DOMAIN, log: captureLogger(logs) });

  it('creates a root once, stores it, and reuses it', async () => {
    const core = new FakeCore();
    const logs: string[] = [];
    const first = await loadOrCreateAuthority({ core }, options(logs));
    assert.equal(first.source, 'created');
    const stored = core.secrets.get(`${SYSTEM_NS}/istio-ca-secret`);
    assert.equal(stored?.type, 'istio.io/ca-root');
    assert.deepEqual(Object.keys(stored?.data ?? {}).sort(), ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    const root = new x509.X509Certificate(pemCertificates(first.rootsPem)[0]!);
    assert.match(root.subject, /O=cluster\.local/);

    const second = await loadOrCreateAuthority({ core }, options(logs));
    assert.equal(second.source, 'istio-ca-secret');
    assert.equal(second.rootsPem, first.rootsPem);
    // Certificates from either load verify against the same root.
    const leaf = new NodeX509((await second.sign(await csrFor(spiffe('a', 'b')), spiffe('a', 'b'), 60))[0]!);
    assert.ok(leaf.verify(new NodeX509(first.rootsPem).publicKey));
    for (const line of logs) assert.ok(!line.includes('PRIVATE KEY'), 'the CA key is never logged');
    assert.ok(logs.some((line) => line.includes('certificate authority loaded')));
  });

  it("uses the other replica's root when it wins the race to create the Secret", async () => {
    const winner = new FakeCore();
    const winnerAuthority = await loadOrCreateAuthority({ core: winner }, options());
    const racing = new FakeCore();
    racing.beforeSecretCreate = (name) => {
      if (name === 'istio-ca-secret') racing.secrets.set(`${SYSTEM_NS}/${name}`, winner.secrets.get(`${SYSTEM_NS}/${name}`)!);
    };
    const loser = await loadOrCreateAuthority({ core: racing }, options());
    assert.equal(loser.source, 'istio-ca-secret');
    assert.equal(loser.rootsPem, winnerAuthority.rootsPem);
  });

  it('prefers cacerts over istio-ca-secret', async () => {
    const core = new FakeCore();
    await loadOrCreateAuthority({ core }, options());
    core.secrets.set(`${SYSTEM_NS}/cacerts`, sampleCacerts());
    assert.equal((await loadOrCreateAuthority({ core }, options())).source, 'cacerts');
  });

  it('publishes istio-ca-root-cert and keeps it current', async () => {
    const core = new FakeCore();
    const authority = await loadOrCreateAuthority({ core }, options());
    const publish = (a: MeshAuthority) => publishAuthorityRoots({ core }, a, { systemNamespace: SYSTEM_NS, log: pino({ level: 'silent' }) });
    assert.equal(await publish(authority), 'created');
    assert.equal(core.configMaps.get(`${SYSTEM_NS}/istio-ca-root-cert`)?.data?.['root-cert.pem'], authority.rootsPem);
    assert.equal(await publish(authority), 'unchanged');
    core.secrets.set(`${SYSTEM_NS}/cacerts`, sampleCacerts());
    const plugged = await loadOrCreateAuthority({ core }, options());
    assert.equal(await publish(plugged), 'updated');
    assert.equal(core.configMaps.get(`${SYSTEM_NS}/istio-ca-root-cert`)?.data?.['root-cert.pem'], plugged.rootsPem);
  });
});

describe('authorization rules', () => {
  it('parses bearer tokens and checks the cluster id', () => {
    assert.equal(bearerToken('Bearer abc.def'), 'abc.def');
    assert.equal(bearerToken('bearer  abc'), 'abc');
    for (const bad of [undefined, '', 'Bearer', 'Bearer ', 'Token abc', 'Bearer a b']) {
      assert.throws(() => bearerToken(bad), (err: CaRequestError) => err.code === status.UNAUTHENTICATED && /no bearer token/.test(err.message));
    }
    assert.doesNotThrow(() => checkClusterId(undefined, { ourCluster: 'c1' }));
    assert.doesNotThrow(() => checkClusterId('c1', { ourCluster: 'c1' }));
    assert.throws(() => checkClusterId('c2', { ourCluster: 'c1' }), (err: CaRequestError) => err.code === status.PERMISSION_DENIED && /"c2".*"c1"/.test(err.message));
  });

  it('reports a failing TokenReview as UNAVAILABLE and honours a configured node agent account', async () => {
    const failing = new CertificateAuthorizer({
      trustDomain: TRUST_DOMAIN,
      clusterName: CLUSTER,
      systemNamespace: SYSTEM_NS,
      tokenReviewer: { review: () => Promise.reject(new ApiException(503, 'Service Unavailable', JSON.stringify({ message: 'etcd is down' }), {})) },
      pods: cachedPodDirectory(() => PODS),
    });
    await assert.rejects(failing.authenticate({ authorization: `Bearer ${fakeJwt('x')}` }), (err: CaRequestError) => err.code === status.UNAVAILABLE && /HTTP 503: etcd is down/.test(err.message));

    const custom = new CertificateAuthorizer({
      trustDomain: TRUST_DOMAIN,
      clusterName: CLUSTER,
      systemNamespace: SYSTEM_NS,
      tokenReviewer: new FakeTokenReviewer({ t: { username: 'system:serviceaccount:istio-system:node-agent', extra: { 'authentication.kubernetes.io/pod-name': ['ztunnel-n2'] } } }),
      pods: cachedPodDirectory(() => PODS),
      nodeAgentServiceAccounts: ['istio-system/node-agent'],
    });
    const caller = await custom.authenticate({ authorization: `Bearer ${fakeJwt('t')}`, clusterId: CLUSTER });
    const grant = await custom.authorize(caller, { csrIdentity: spiffe('shop', 'pay') });
    assert.deepEqual([grant.impersonated, grant.node], [true, 'n2']);
  });

  it('before the pod directory is synced, requests wait, then get UNAVAILABLE saying why', async () => {
    const authority = await loadOrCreateAuthority({ core: new FakeCore() }, { systemNamespace: SYSTEM_NS, trustDomain: TRUST_DOMAIN, log: pino({ level: 'silent' }) });
    let authenticated = 0;
    const service = createCertificateService({
      authority,
      authorizer: { authenticate: async () => (authenticated++, Promise.reject(new CaRequestError('unauthenticated', 'x'))), authorize: async () => Promise.reject(new Error('unreachable')) },
      log: pino({ level: 'silent' }),
      ready: new Promise<void>(() => undefined),
      readyTimeoutMs: 50,
    });
    const metadata = new Metadata();
    const result = await new Promise<{ code?: number; details?: string }>((resolve) =>
      service.createCertificate({ request: create(IstioCertificateRequestSchema, { csr: '' }), metadata, getPeer: () => 'test' } as never, (err) => resolve(err as { code?: number; details?: string })),
    );
    assert.equal(result.code, status.UNAVAILABLE);
    assert.match(result.details ?? '', /still syncing with the API server/);
    assert.equal(authenticated, 0, 'no TokenReview before the sync');
  });
});

describe('signing throughput (printed, not asserted)', () => {
  it('measures certificates per second', async (t) => {
    const ec = await createEphemeralAuthority({ trustDomain: TRUST_DOMAIN });
    const core = new FakeCore();
    core.secrets.set(`${SYSTEM_NS}/cacerts`, sampleCacerts());
    const rsa = await loadOrCreateAuthority({ core }, { systemNamespace: SYSTEM_NS, trustDomain: TRUST_DOMAIN, log: pino({ level: 'silent' }) });
    const identity = spiffe('shop', 'cart');
    const csr = await csrFor(identity);
    const total = 200;
    for (const [name, authority] of [['EC P-256 self-signed', ec], ['RSA-2048 plug-in (Istio samples)', rsa]] as const) {
      let start = performance.now();
      for (let i = 0; i < total; i++) await authority.sign(csr, identity, 3600);
      const sequential = total / ((performance.now() - start) / 1000);
      start = performance.now();
      const workers = Array.from({ length: 8 }, async () => {
        for (let i = 0; i < total / 8; i++) await authority.sign(csr, identity, 3600);
      });
      await Promise.all(workers);
      const concurrent = total / ((performance.now() - start) / 1000);
      const line = `${name}: ${sequential.toFixed(0)} certs/s sequential, ${concurrent.toFixed(0)} certs/s with 8 concurrent (CSR verify + sign)`;
      t.diagnostic(line);
      console.log(line);
      assert.ok(sequential > 0 && concurrent > 0);
    }
  });
});
