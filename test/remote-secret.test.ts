import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { parse, parseAllDocuments } from 'yaml';
import { registerMulticlusterCommands } from '../src/cli/multicluster-commands.js';
import { isLoopbackServer, validateServer } from '../src/multicluster-cli/api-server.js';
import { createRemoteSecret } from '../src/multicluster-cli/create-remote-secret.js';
import { scrub, type KubectlRunner, type MulticlusterDeps } from '../src/multicluster-cli/kube-access.js';
import { linkClusters, orderedPairs, parseAssignments } from '../src/multicluster-cli/link.js';
import {
  CLUSTER_ANNOTATION,
  MULTICLUSTER_LABEL,
  REDACTED,
  remoteSecretName,
  renderRedactedRemoteSecret,
  renderRemoteSecret,
  tokenSecretName,
  validateClusterName,
} from '../src/multicluster-cli/remote-secret.js';

// ---------------------------------------------------------------------------------------------
// A fake kubectl: a few clusters, each answering the calls the commands make, and a token
// controller that fills token secrets after a given number of reads.

const TOKEN_SECRET = tokenSecretName('istio-reader-service-account');
const b64 = (text: string) => Buffer.from(text).toString('base64');

interface KubeObject {
  kind?: string;
  type?: string;
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

interface FakeClusterSpec {
  context: string;
  server: string;
  /** CLUSTER_ID of the installed control plane; no Deployment when undefined. */
  clusterId?: string;
  reachable?: boolean;
  readerAccount?: boolean;
  /** Reads of the token secret after its creation before the controller fills it; Infinity: never. */
  fillAfterReads?: number;
  /** Fill only the token, never ca.crt. */
  omitCa?: boolean;
  /** Make every apply of a remote secret fail with this message. */
  applyError?: string;
}

class FakeCluster {
  readonly token: string;
  readonly caData: string;
  readonly secrets = new Map<string, KubeObject>();
  /** Every apply, in order: the namespace and the object applied. */
  readonly applied: Array<{ namespace: string; object: KubeObject }> = [];
  private readsUntilFill = 0;

  constructor(readonly spec: FakeClusterSpec) {
    this.token = `token-of-${spec.context}-${'x'.repeat(20)}`;
    this.caData = b64(`-----BEGIN CERTIFICATE-----\nCA of ${spec.context}\n-----END CERTIFICATE-----\n`);
  }

  get reachable(): boolean {
    return this.spec.reachable ?? true;
  }

  /** A token secret already filled, as left by an earlier run. */
  withFilledToken(): this {
    this.secrets.set(TOKEN_SECRET, this.filledTokenSecret());
    return this;
  }

  private filledTokenSecret(): KubeObject {
    return {
      kind: 'Secret',
      type: 'kubernetes.io/service-account-token',
      metadata: { name: TOKEN_SECRET, namespace: 'istio-system', annotations: { 'kubernetes.io/service-account.name': 'istio-reader-service-account' } },
      data: { token: b64(this.token), ...(this.spec.omitCa ? {} : { 'ca.crt': this.caData }), namespace: b64('istio-system') },
    };
  }

  get(kind: string, namespace: string, name: string): unknown {
    if (namespace !== 'istio-system') return undefined;
    if (kind === 'serviceaccount') return (this.spec.readerAccount ?? true) && name === 'istio-reader-service-account' ? { kind: 'ServiceAccount', metadata: { name } } : undefined;
    if (kind === 'deployment') {
      if (name !== 'ambit-controlplane' || this.spec.clusterId === undefined) return undefined;
      return {
        kind: 'Deployment',
        spec: { template: { spec: { containers: [{ name: 'controlplane', env: [{ name: 'NETWORK', value: 'n' }, { name: 'CLUSTER_ID', value: this.spec.clusterId }] }] } } },
      };
    }
    if (kind === 'secret') {
      const secret = this.secrets.get(name);
      if (secret && name === TOKEN_SECRET && !secret.data && --this.readsUntilFill <= 0) {
        const filled = this.filledTokenSecret();
        secret.data = filled.data;
      }
      return secret && structuredClone(secret);
    }
    throw new Error(`fake kubectl: unexpected get ${kind}`);
  }

  apply(namespace: string, input: string): string {
    const lines: string[] = [];
    for (const doc of parseAllDocuments(input)) {
      const object = doc.toJS() as KubeObject | null;
      if (!object) continue;
      const name = object.metadata?.name ?? '';
      if (this.spec.applyError && name !== TOKEN_SECRET) throw new Error(this.spec.applyError);
      this.applied.push({ namespace, object });
      if (name === TOKEN_SECRET && !this.secrets.has(name)) this.readsUntilFill = this.spec.fillAfterReads ?? 2;
      const existing = this.secrets.get(name);
      this.secrets.set(name, { ...existing, ...object, ...(existing?.data ? { data: existing.data } : {}) });
      lines.push(`secret/${name} serverside-applied`);
    }
    return lines.join('\n');
  }
}

class FakeKube {
  readonly clusters = new Map<string, FakeCluster>();
  readonly calls: string[][] = [];
  currentContext: string | undefined;

  constructor(specs: FakeClusterSpec[]) {
    for (const spec of specs) this.clusters.set(spec.context, new FakeCluster(spec));
    this.currentContext = specs[0]?.context;
  }

  cluster(context: string): FakeCluster {
    return this.clusters.get(context)!;
  }

  readonly run: KubectlRunner = async (args, options) => {
    this.calls.push(args);
    if (args[0] === 'config' && args[1] === 'view') {
      const specs = [...this.clusters.values()].map((c) => c.spec);
      return {
        stdout: JSON.stringify({
          'current-context': this.currentContext ?? '',
          contexts: specs.map((s) => ({ name: s.context, context: { cluster: `${s.context}-cluster`, user: 'admin' } })),
          clusters: specs.map((s) => ({ name: `${s.context}-cluster`, cluster: { server: s.server } })),
        }),
      };
    }
    assert.equal(args[0], '--context', `fake kubectl: every call names its context: ${args.join(' ')}`);
    const cluster = this.clusters.get(args[1]!);
    if (!cluster) throw new Error(`error: context "${args[1]}" does not exist`);
    if (!cluster.reachable) throw new Error(`Unable to connect to the server: dial tcp ${new URL(cluster.spec.server).host}: i/o timeout`);
    const rest = args.slice(2);
    if (rest[0] === 'get' && rest[1] === '--raw') return { stdout: '{"gitVersion":"v1.20.2"}' };
    assert.equal(rest[0], '-n');
    const namespace = rest[1]!;
    if (rest[2] === 'get') {
      assert.ok(rest.includes('--ignore-not-found'));
      const object = cluster.get(rest[3]!, namespace, rest[4]!);
      return { stdout: object ? JSON.stringify(object) : '' };
    }
    if (rest[2] === 'apply') {
      assert.ok(rest.includes('--server-side'), 'applies are server-side');
      return { stdout: cluster.apply(namespace, options?.input ?? '') };
    }
    throw new Error(`fake kubectl: unexpected call ${args.join(' ')}`);
  };
}

function harness(kube: FakeKube): { deps: MulticlusterDeps; warnings: string[]; progress: string[]; clock: { now: number } } {
  const clock = { now: 0 };
  const warnings: string[] = [];
  const progress: string[] = [];
  return {
    deps: {
      kubectl: kube.run,
      clock: { now: () => clock.now, sleep: async (ms) => void (clock.now += ms) },
      warn: (line) => warnings.push(line),
      progress: (line) => progress.push(line),
    },
    warnings,
    progress,
    clock,
  };
}

async function rejection(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  assert.fail('expected the call to fail');
}

interface ParsedRemoteSecret {
  secret: KubeObject;
  kubeconfig: {
    apiVersion: string;
    kind: string;
    clusters: Array<{ name: string; cluster: { server: string; 'certificate-authority-data': string } }>;
    contexts: Array<{ name: string; context: { cluster: string; user: string } }>;
    'current-context': string;
    users: Array<{ name: string; user: { token: string } }>;
  };
}

function parseRemoteSecret(text: string): ParsedRemoteSecret {
  const docs = parseAllDocuments(text)
    .map((doc) => doc.toJS() as KubeObject | null)
    .filter((doc): doc is KubeObject => doc !== null);
  assert.equal(docs.length, 1, 'one Secret');
  const secret = docs[0]!;
  const keys = Object.keys(secret.stringData ?? {});
  assert.equal(keys.length, 1, 'stringData holds exactly one kubeconfig');
  return { secret, kubeconfig: parse(secret.stringData![keys[0]!]!) as ParsedRemoteSecret['kubeconfig'] };
}

const SECRET_INPUT = { cluster: 'cluster2', namespace: 'istio-system', server: 'https://198.18.2.10:6443', caData: b64('CA PEM'), token: 'eyJhbGciOi.secret-token' };

// ---------------------------------------------------------------------------------------------

describe('remote secret rendering', () => {
  it("renders Istio's shape: name, namespace, label, annotation, one kubeconfig keyed by the cluster", () => {
    const text = renderRemoteSecret(SECRET_INPUT);
    assert.ok(text.startsWith('# This file is autogenerated, do not edit.\n'));
    assert.ok(text.endsWith('---\n'), 'ends with a document separator so outputs concatenate');
    const { secret, kubeconfig } = parseRemoteSecret(text);
    assert.equal(secret.kind, 'Secret');
    assert.equal(secret.metadata?.name, 'istio-remote-secret-cluster2');
    assert.equal(secret.metadata?.namespace, 'istio-system');
    assert.deepEqual(secret.metadata?.labels, { [MULTICLUSTER_LABEL]: 'true' });
    assert.deepEqual(secret.metadata?.annotations, { [CLUSTER_ANNOTATION]: 'cluster2' });
    assert.deepEqual(Object.keys(secret.stringData!), ['cluster2']);
    assert.match(text, /istio\/multiCluster: "true"/, 'the label value is a quoted string');

    assert.equal(kubeconfig.kind, 'Config');
    assert.equal(kubeconfig.apiVersion, 'v1');
    assert.deepEqual(kubeconfig.clusters, [{ name: 'cluster2', cluster: { server: SECRET_INPUT.server, 'certificate-authority-data': SECRET_INPUT.caData } }]);
    assert.deepEqual(kubeconfig.contexts, [{ name: 'cluster2', context: { cluster: 'cluster2', user: 'cluster2' } }]);
    assert.equal(kubeconfig['current-context'], 'cluster2');
    assert.deepEqual(kubeconfig.users, [{ name: 'cluster2', user: { token: SECRET_INPUT.token } }]);
  });

  it('redacts the token and nothing else', () => {
    const text = renderRedactedRemoteSecret(SECRET_INPUT);
    assert.ok(!text.includes(SECRET_INPUT.token));
    const { kubeconfig } = parseRemoteSecret(text);
    assert.equal(kubeconfig.users[0]!.user.token, REDACTED);
    assert.equal(kubeconfig.clusters[0]!.cluster['certificate-authority-data'], SECRET_INPUT.caData);
  });

  it('names secrets as istioctl does, lowercasing the cluster name for the Secret name only', () => {
    assert.equal(tokenSecretName('istio-reader-service-account'), 'istio-reader-service-account-istio-remote-secret-token');
    assert.equal(remoteSecretName('Kubernetes'), 'istio-remote-secret-kubernetes');
    const { secret } = parseRemoteSecret(renderRemoteSecret({ ...SECRET_INPUT, cluster: 'Kubernetes' }));
    assert.equal(secret.metadata?.annotations?.[CLUSTER_ANNOTATION], 'Kubernetes');
    assert.deepEqual(Object.keys(secret.stringData!), ['Kubernetes']);
  });

  it('rejects cluster names unusable as a Secret key or name, naming the source', () => {
    assert.equal(validateClusterName('cluster-1.east', '--name'), 'cluster-1.east');
    assert.throws(() => validateClusterName('', '--name'), /--name: the cluster name is empty/);
    assert.throws(() => validateClusterName('a_b', '--name'), /--name: cluster name "a_b" may only contain/);
    assert.throws(() => validateClusterName('-a', '--name-for x=-a'), /--name-for x=-a: cluster name "-a"/);
    assert.throws(() => validateClusterName('a'.repeat(300), '--name'), /longer than/);
  });

  it('recognises loopback API servers and checks URLs', () => {
    for (const server of ['https://127.0.0.1:6443', 'https://127.0.1.1:443', 'https://localhost:6443', 'https://[::1]:6443', 'https://api.localhost']) {
      assert.equal(isLoopbackServer(server), true, server);
    }
    for (const server of ['https://198.18.0.10:6443', 'https://172.18.0.2:6443', 'https://api.example.com', 'https://localhost.example.com']) {
      assert.equal(isLoopbackServer(server), false, server);
    }
    assert.throws(() => validateServer('198.18.0.1:6443', '--server'), /--server: "198.18.0.1:6443" (is not a URL|must be an https)/);
    assert.throws(() => validateServer('not a url', '--server'), /--server: "not a url" is not a URL/);
    assert.equal(validateServer('https://198.18.0.1:6443', '--server'), 'https://198.18.0.1:6443');
  });

  it('scrubs secrets and their base64 form from messages', () => {
    const message = `failed: token abc.def and ${b64('abc.def')} leaked`;
    assert.equal(scrub(message, ['abc.def']), 'failed: token <redacted> and <redacted> leaked');
  });
});

describe('ambit create-remote-secret', () => {
  const spec = (extra: Partial<FakeClusterSpec> = {}): FakeClusterSpec => ({ context: 'lab-cluster2', server: 'https://198.18.2.10:6443', clusterId: 'cluster2', ...extra });

  it('creates the token secret, waits for the token controller and renders the secret from it', async () => {
    const kube = new FakeKube([spec({ fillAfterReads: 3 })]);
    const { deps, warnings, progress } = harness(kube);
    const text = await createRemoteSecret({ context: 'lab-cluster2', name: 'cluster2' }, deps);
    const cluster = kube.cluster('lab-cluster2');

    const tokenApply = cluster.applied.find((a) => a.object.metadata?.name === TOKEN_SECRET);
    assert.ok(tokenApply, 'the token secret was created');
    assert.equal(tokenApply.namespace, 'istio-system');
    assert.equal(tokenApply.object.type, 'kubernetes.io/service-account-token');
    assert.deepEqual(tokenApply.object.metadata?.annotations, { 'kubernetes.io/service-account.name': 'istio-reader-service-account' });

    const { secret, kubeconfig } = parseRemoteSecret(text);
    assert.equal(secret.metadata?.name, 'istio-remote-secret-cluster2');
    assert.equal(kubeconfig.users[0]!.user.token, cluster.token, 'the token, decoded from data.token');
    assert.equal(kubeconfig.clusters[0]!.cluster['certificate-authority-data'], cluster.caData, 'ca.crt, kept base64');
    assert.equal(kubeconfig.clusters[0]!.cluster.server, 'https://198.18.2.10:6443', "the context's server");
    assert.deepEqual(warnings, []);
    assert.ok(progress.some((line) => line.includes(TOKEN_SECRET)));
    for (const line of [...progress, ...warnings]) assert.ok(!line.includes(cluster.token), 'the token never appears in messages');
  });

  it('reuses a filled token secret without writing anything', async () => {
    const kube = new FakeKube([spec()]);
    kube.cluster('lab-cluster2').withFilledToken();
    const text = await createRemoteSecret({ context: 'lab-cluster2', name: 'cluster2' }, harness(kube).deps);
    assert.equal(kube.cluster('lab-cluster2').applied.length, 0);
    assert.equal(parseRemoteSecret(text).kubeconfig.users[0]!.user.token, kube.cluster('lab-cluster2').token);
  });

  it('uses --server, the current context, and the installed CLUSTER_ID when --name is absent', async () => {
    const kube = new FakeKube([spec({ clusterId: 'east' })]);
    const text = await createRemoteSecret({ server: 'https://203.0.113.7:6443' }, harness(kube).deps);
    const { secret, kubeconfig } = parseRemoteSecret(text);
    assert.equal(secret.metadata?.annotations?.[CLUSTER_ANNOTATION], 'east');
    assert.equal(kubeconfig.clusters[0]!.cluster.server, 'https://203.0.113.7:6443');
  });

  it('honours --namespace and --service-account', async () => {
    const kube = new FakeKube([spec()]);
    const message = await rejection(createRemoteSecret({ context: 'lab-cluster2', name: 'c', serviceAccount: 'other-reader' }, harness(kube).deps));
    assert.match(message, /service account istio-system\/other-reader does not exist/);
    const inOther = await rejection(createRemoteSecret({ context: 'lab-cluster2', name: 'c', namespace: 'mesh-system' }, harness(kube).deps));
    assert.match(inOther, /service account mesh-system\/istio-reader-service-account does not exist/);
  });

  it('warns on stderr about a loopback API server', async () => {
    const kube = new FakeKube([spec({ server: 'https://127.0.0.1:41234' })]);
    const { deps, warnings } = harness(kube);
    await createRemoteSecret({ context: 'lab-cluster2', name: 'cluster2' }, deps);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /127\.0\.0\.1:41234.*loopback.*--server/);
  });

  it('names the known contexts when the context is unknown', async () => {
    const kube = new FakeKube([spec(), spec({ context: 'lab-cluster1' })]);
    const message = await rejection(createRemoteSecret({ context: 'kind-cluster9', name: 'x' }, harness(kube).deps));
    assert.equal(message, 'context "kind-cluster9" is not in the kubeconfig; known contexts: lab-cluster2, lab-cluster1');
  });

  it('asks for ambit install when the reader service account is missing', async () => {
    const kube = new FakeKube([spec({ readerAccount: false })]);
    const message = await rejection(createRemoteSecret({ context: 'lab-cluster2', name: 'cluster2' }, harness(kube).deps));
    assert.match(message, /service account istio-system\/istio-reader-service-account does not exist in context "lab-cluster2"; run `ambit install --context lab-cluster2` first/);
    assert.equal(kube.cluster('lab-cluster2').applied.length, 0);
  });

  it('names the API server when it is unreachable', async () => {
    const kube = new FakeKube([spec({ reachable: false })]);
    const message = await rejection(createRemoteSecret({ context: 'lab-cluster2', name: 'cluster2' }, harness(kube).deps));
    assert.match(message, /^cannot reach the API server of context "lab-cluster2" at https:\/\/198\.18\.2\.10:6443: Unable to connect/);
  });

  it('gives up with a clear message when the token controller never fills the secret', async () => {
    const kube = new FakeKube([spec({ fillAfterReads: Infinity })]);
    const { deps, clock } = harness(kube);
    const message = await rejection(createRemoteSecret({ context: 'lab-cluster2', name: 'cluster2', timeoutMs: 5000 }, deps));
    assert.match(message, /token controller did not fill data\.token of secret istio-system\/istio-reader-service-account-istio-remote-secret-token in context "lab-cluster2" within 5s/);
    assert.ok(clock.now >= 5000, 'it waited for the whole timeout (fake clock)');
  });

  it('says so when the token is filled but ca.crt never is', async () => {
    const kube = new FakeKube([spec({ fillAfterReads: 1, omitCa: true })]);
    const message = await rejection(createRemoteSecret({ context: 'lab-cluster2', name: 'cluster2', timeoutMs: 2000 }, harness(kube).deps));
    assert.match(message, /filled data\.token but not data\.ca\.crt .*--root-ca-file/);
  });

  it('refuses a token secret of the wrong type instead of overwriting it', async () => {
    const kube = new FakeKube([spec()]);
    kube.cluster('lab-cluster2').secrets.set(TOKEN_SECRET, { kind: 'Secret', type: 'Opaque', metadata: { name: TOKEN_SECRET }, data: { token: b64('x') } });
    const message = await rejection(createRemoteSecret({ context: 'lab-cluster2', name: 'cluster2' }, harness(kube).deps));
    assert.match(message, /is of type Opaque, not kubernetes\.io\/service-account-token; delete it \(kubectl --context lab-cluster2 -n istio-system delete secret/);
  });

  it('asks for --name when no control plane is installed, and checks --name', async () => {
    const kube = new FakeKube([spec({ clusterId: undefined })]);
    const message = await rejection(createRemoteSecret({ context: 'lab-cluster2' }, harness(kube).deps));
    assert.match(message, /cannot tell the cluster name of context "lab-cluster2": deployment istio-system\/ambit-controlplane does not exist.*; pass --name <cluster>/);
    assert.match(await rejection(createRemoteSecret({ context: 'lab-cluster2', name: 'bad name' }, harness(kube).deps)), /--name: cluster name "bad name"/);
  });
});

describe('ambit link', () => {
  const specs = (n: number, extra: Partial<FakeClusterSpec> = {}): FakeClusterSpec[] =>
    Array.from({ length: n }, (_, i) => ({ context: `lab-cluster${i + 1}`, server: `https://198.18.${i + 1}.10:6443`, clusterId: `cluster${i + 1}`, ...extra }));

  /** The remote secrets applied to a cluster: cluster name → the token in its kubeconfig. */
  function remoteSecretsIn(cluster: FakeCluster): Map<string, { token: string; server: string; namespace: string }> {
    const result = new Map<string, { token: string; server: string; namespace: string }>();
    for (const { namespace, object } of cluster.applied) {
      if (object.metadata?.labels?.[MULTICLUSTER_LABEL] !== 'true') continue;
      const name = object.metadata.annotations![CLUSTER_ANNOTATION]!;
      const kubeconfig = parse(object.stringData![name]!) as ParsedRemoteSecret['kubeconfig'];
      result.set(name, { token: kubeconfig.users[0]!.user.token, server: kubeconfig.clusters[0]!.cluster.server, namespace });
    }
    return result;
  }

  it('enumerates every ordered pair of distinct clusters', () => {
    assert.deepEqual(orderedPairs(['a', 'b']), [
      { target: 'a', source: 'b' },
      { target: 'b', source: 'a' },
    ]);
    const three = orderedPairs(['a', 'b', 'c']);
    assert.equal(three.length, 6);
    assert.deepEqual(
      three.map((p) => `${p.target}<-${p.source}`),
      ['a<-b', 'a<-c', 'b<-a', 'b<-c', 'c<-a', 'c<-b'],
    );
    assert.deepEqual(orderedPairs(['a']), []);
  });

  it("applies each cluster's secret to the other (2 clusters), one line per pair", async () => {
    const kube = new FakeKube(specs(2));
    const out: string[] = [];
    await linkClusters({ contexts: ['lab-cluster1', 'lab-cluster2'] }, (text) => out.push(text), harness(kube).deps);
    const c1 = kube.cluster('lab-cluster1');
    const c2 = kube.cluster('lab-cluster2');
    assert.deepEqual(remoteSecretsIn(c1), new Map([['cluster2', { token: c2.token, server: 'https://198.18.2.10:6443', namespace: 'istio-system' }]]));
    assert.deepEqual(remoteSecretsIn(c2), new Map([['cluster1', { token: c1.token, server: 'https://198.18.1.10:6443', namespace: 'istio-system' }]]));
    assert.equal(out.length, 2);
    assert.match(out[0]!, /^context lab-cluster1: applied secret istio-system\/istio-remote-secret-cluster2; cluster cluster1 now reads cluster cluster2\n$/);
    assert.match(out[1]!, /^context lab-cluster2: applied secret istio-system\/istio-remote-secret-cluster1; cluster cluster2 now reads cluster cluster1\n$/);
    for (const line of out) assert.ok(!line.includes(c1.token) && !line.includes(c2.token));
  });

  it('links 3 clusters: every cluster holds the secrets of the two others', async () => {
    const kube = new FakeKube(specs(3));
    const out: string[] = [];
    await linkClusters({ contexts: ['lab-cluster1', 'lab-cluster2', 'lab-cluster3'] }, (text) => out.push(text), harness(kube).deps);
    assert.equal(out.length, 6);
    for (const [i, cluster] of [...kube.clusters.values()].entries()) {
      const others = [1, 2, 3].filter((n) => n !== i + 1).map((n) => `cluster${n}`);
      const secrets = remoteSecretsIn(cluster);
      assert.deepEqual([...secrets.keys()].sort(), others);
      for (const other of others) assert.equal(secrets.get(other)!.token, kube.cluster(`lab-${other}`).token);
    }
  });

  it('is idempotent: a second run updates the same secrets and reuses the tokens', async () => {
    const kube = new FakeKube(specs(2));
    const { deps } = harness(kube);
    await linkClusters({ contexts: ['lab-cluster1', 'lab-cluster2'] }, () => {}, deps);
    await linkClusters({ contexts: ['lab-cluster1', 'lab-cluster2'] }, () => {}, deps);
    for (const cluster of kube.clusters.values()) {
      assert.equal(cluster.applied.filter((a) => a.object.metadata?.name === TOKEN_SECRET).length, 1, 'token secret created once');
      const remote = cluster.applied.filter((a) => a.object.metadata?.name?.startsWith('istio-remote-secret-'));
      assert.equal(remote.length, 2, 'applied on each run');
      assert.equal(new Set(remote.map((a) => a.object.metadata?.name)).size, 1, 'to the same Secret');
      assert.equal([...cluster.secrets.keys()].filter((k) => k.startsWith('istio-remote-secret-')).length, 1);
    }
  });

  it('resolves cluster names: --name-for first, then the installed CLUSTER_ID, else asks for --name-for', async () => {
    const kube = new FakeKube([...specs(2), { context: 'kind-west', server: 'https://198.18.9.10:6443' }]);
    await linkClusters({ contexts: ['lab-cluster1', 'lab-cluster2', 'kind-west'], nameFor: ['lab-cluster1=alpha', 'kind-west=west'] }, () => {}, harness(kube).deps);
    assert.deepEqual([...remoteSecretsIn(kube.cluster('kind-west')).keys()].sort(), ['alpha', 'cluster2']);

    const missing = new FakeKube([...specs(1), { context: 'kind-west', server: 'https://198.18.9.10:6443' }]);
    const message = await rejection(linkClusters({ contexts: ['lab-cluster1', 'kind-west'] }, () => {}, harness(missing).deps));
    assert.match(message, /cannot tell the cluster name of context "kind-west": deployment istio-system\/ambit-controlplane does not exist .*; pass --name-for kind-west=<cluster>/);
    for (const cluster of missing.clusters.values()) assert.equal(cluster.applied.length, 0, 'nothing applied');
  });

  it('refuses two contexts with the same cluster name', async () => {
    const kube = new FakeKube(specs(2, { clusterId: 'Kubernetes' }));
    const message = await rejection(linkClusters({ contexts: ['lab-cluster1', 'lab-cluster2'] }, () => {}, harness(kube).deps));
    assert.match(message, /contexts "lab-cluster1" and "lab-cluster2" have the same cluster name "Kubernetes"; every cluster needs its own name/);
  });

  it('dry run: prints every pair with tokens redacted and writes nothing', async () => {
    const kube = new FakeKube(specs(2));
    kube.cluster('lab-cluster1').withFilledToken();
    const out: string[] = [];
    await linkClusters({ contexts: ['lab-cluster1', 'lab-cluster2'], dryRun: true }, (text) => out.push(text), harness(kube).deps);
    const text = out.join('');
    for (const cluster of kube.clusters.values()) {
      assert.equal(cluster.applied.length, 0, `nothing applied to ${cluster.spec.context}`);
      assert.ok(!text.includes(cluster.token), 'no token in the output');
      assert.ok(!text.includes(b64(cluster.token)), 'no encoded token in the output');
    }
    assert.match(text, /# would apply to context lab-cluster1 \(cluster cluster1\): access to cluster cluster2/);
    assert.match(text, /# would apply to context lab-cluster2 \(cluster cluster2\): access to cluster cluster1/);
    assert.match(text, /# would first create secret istio-system\/istio-reader-service-account-istio-remote-secret-token in context lab-cluster2/);
    const secrets = parseAllDocuments(text)
      .map((doc) => doc.toJS() as KubeObject | null)
      .filter((doc): doc is KubeObject => doc !== null);
    assert.equal(secrets.length, 2);
    const toCluster2 = secrets.find((s) => s.metadata?.annotations?.[CLUSTER_ANNOTATION] === 'cluster1')!;
    const kubeconfig = parse(toCluster2.stringData!.cluster1!) as ParsedRemoteSecret['kubeconfig'];
    assert.equal(kubeconfig.users[0]!.user.token, REDACTED);
    assert.equal(kubeconfig.clusters[0]!.cluster['certificate-authority-data'], kube.cluster('lab-cluster1').caData, 'the real CA when the token secret exists');
  });

  it('never puts a token in an error message', async () => {
    const kube = new FakeKube(specs(2));
    const c1 = kube.cluster('lab-cluster1');
    kube.cluster('lab-cluster2').spec.applyError = `Secret "istio-remote-secret-cluster1" is invalid: token ${c1.token} rejected`;
    const message = await rejection(linkClusters({ contexts: ['lab-cluster1', 'lab-cluster2'] }, () => {}, harness(kube).deps));
    assert.match(message, /cannot apply secret istio-system\/istio-remote-secret-cluster1 in context "lab-cluster2": .*<redacted> rejected/);
    assert.ok(!message.includes(c1.token));
  });

  it('checks every context before changing anything', async () => {
    const kube = new FakeKube([...specs(2), { context: 'lab-cluster3', server: 'https://198.18.3.10:6443', clusterId: 'cluster3', readerAccount: false }]);
    const message = await rejection(linkClusters({ contexts: ['lab-cluster1', 'lab-cluster2', 'lab-cluster3'] }, () => {}, harness(kube).deps));
    assert.match(message, /service account istio-system\/istio-reader-service-account does not exist in context "lab-cluster3"; run `ambit install/);
    for (const cluster of kube.clusters.values()) assert.equal(cluster.applied.filter((a) => a.object.metadata?.name !== TOKEN_SECRET).length, 0);

    const down = new FakeKube([...specs(1), { context: 'lab-cluster2', server: 'https://198.18.2.10:6443', clusterId: 'cluster2', reachable: false }]);
    assert.match(await rejection(linkClusters({ contexts: ['lab-cluster1', 'lab-cluster2'] }, () => {}, harness(down).deps)), /cannot reach the API server of context "lab-cluster2"/);
    assert.equal(down.cluster('lab-cluster1').applied.length, 0);
  });

  it('uses --server-for and warns about loopback servers', async () => {
    const kube = new FakeKube([
      { context: 'kind-cluster1', server: 'https://127.0.0.1:40001', clusterId: 'cluster1' },
      { context: 'kind-cluster2', server: 'https://127.0.0.1:40002', clusterId: 'cluster2' },
    ]);
    const { deps, warnings } = harness(kube);
    await linkClusters({ contexts: ['kind-cluster1', 'kind-cluster2'], serverFor: ['kind-cluster1=https://172.18.0.2:6443'] }, () => {}, deps);
    assert.equal(remoteSecretsIn(kube.cluster('kind-cluster2')).get('cluster1')!.server, 'https://172.18.0.2:6443');
    assert.equal(remoteSecretsIn(kube.cluster('kind-cluster1')).get('cluster2')!.server, 'https://127.0.0.1:40002');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /cluster "cluster2" is https:\/\/127\.0\.0\.1:40002/);
  });

  it('rejects bad context lists and assignments', async () => {
    const kube = new FakeKube(specs(2));
    const { deps } = harness(kube);
    assert.match(await rejection(linkClusters({ contexts: ['lab-cluster1'] }, () => {}, deps)), /at least two --context values/);
    assert.match(await rejection(linkClusters({ contexts: ['lab-cluster1', 'lab-cluster1'] }, () => {}, deps)), /--context "lab-cluster1" is given twice/);
    assert.match(await rejection(linkClusters({ contexts: ['lab-cluster1', 'nope'] }, () => {}, deps)), /context "nope" is not in the kubeconfig; known contexts: lab-cluster1, lab-cluster2/);
    assert.throws(() => parseAssignments(['lab-cluster1'], '--name-for', ['lab-cluster1']), /--name-for: expected <context>=<value>, got "lab-cluster1"/);
    assert.throws(() => parseAssignments(['=x'], '--name-for', ['lab-cluster1']), /expected <context>=<value>/);
    assert.throws(() => parseAssignments(['other=x'], '--name-for', ['lab-cluster1']), /"other" is not one of the --context values \(lab-cluster1\)/);
    assert.throws(() => parseAssignments(['a=x', 'a=y'], '--name-for', ['a']), /context "a" is given twice, as "x" and "y"/);
    assert.deepEqual(parseAssignments(['arn:aws:eks:eu-west-1:1:cluster/a=east'], '--name-for', ['arn:aws:eks:eu-west-1:1:cluster/a']), new Map([['arn:aws:eks:eu-west-1:1:cluster/a', 'east']]));
  });
});

describe('multicluster CLI', () => {
  it('registers create-remote-secret and link with their options', () => {
    const program = new Command('ambit');
    registerMulticlusterCommands(program);
    const create = program.commands.find((c) => c.name() === 'create-remote-secret');
    const link = program.commands.find((c) => c.name() === 'link');
    assert.ok(create && link);
    const flags = (command: Command) => command.options.map((o) => o.long);
    for (const flag of ['--context', '--name', '--namespace', '--server', '--service-account', '--timeout']) assert.ok(flags(create).includes(flag), flag);
    for (const flag of ['--context', '--name-for', '--server-for', '--namespace', '--service-account', '--dry-run', '--timeout']) assert.ok(flags(link).includes(flag), flag);
  });
});
