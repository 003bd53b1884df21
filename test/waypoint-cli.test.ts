// Unit tests of `ambit waypoint`: the Gateway generated for each --for, flag checks, list/status tables, and apply/delete/wait against a fake kubectl.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

import { GATEWAY_CRD } from '../src/api/names.js';
import type { Clock, KubectlRunner } from '../src/multicluster-cli/kube-access.js';
import { applyWaypoint, deleteWaypoints, listWaypoints, waitProgrammed, waypointStatus, type WaypointIo } from '../src/waypoint-cli/actions.js';
import { oneLine, WaypointKube } from '../src/waypoint-cli/cluster.js';
import { parseWaypointFor, renderGatewayYaml, validateWaypointName, waypointGateway, WaypointCliError } from '../src/waypoint-cli/gateway.js';
import { renderList, renderStatus, waypointRows, type GatewayJson } from '../src/waypoint-cli/tables.js';

const repoRoot = fileURLToPath(new URL('../', import.meta.url));

// ---------------------------------------------------------------------------------------------
// A fake kubectl with one context: namespaces with labels, Gateways, and a control plane that
// marks a waypoint Programmed after a number of reads (never, when Infinity).

interface FakeOptions {
  reachable?: boolean;
  crds?: boolean;
  programmedAfterReads?: number;
}

class FakeCluster {
  readonly namespaces = new Map<string, Record<string, string>>([['sample', { 'istio.io/dataplane-mode': 'ambient' }], ['default', {}]]);
  readonly gateways = new Map<string, GatewayJson & { metadata: { name: string; namespace: string } }>();
  readonly calls: string[][] = [];
  private reads = 0;

  constructor(private readonly options: FakeOptions = {}) {}

  addGateway(namespace: string, name: string, className: string, labels: Record<string, string> = {}, programmed?: string): void {
    this.gateways.set(`${namespace}/${name}`, {
      metadata: { name, namespace, labels },
      spec: { gatewayClassName: className },
      ...(programmed ? { status: { conditions: [{ type: 'Programmed', status: programmed, reason: programmed === 'True' ? 'Programmed' : 'Pending', message: 'msg' }] } } : {}),
    });
  }

  readonly run: KubectlRunner = async (argv, options) => {
    this.calls.push(argv);
    const args = argv.filter((a) => !a.startsWith('--request-timeout'));
    const at = (flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
    const context = at('--context');
    const namespace = at('-n');
    const rest = args.filter((a, i) => !['--context', '-n', '--kubeconfig'].includes(a) && !['--context', '-n', '--kubeconfig'].includes(args[i - 1] ?? ''));
    const fail = (message: string) => Promise.reject(new Error(message));
    const [verb] = rest;
    if (verb === 'config') {
      return { stdout: JSON.stringify({ 'current-context': 'lab-cluster1', contexts: [{ name: 'lab-cluster1', context: { cluster: 'c1' } }], clusters: [{ name: 'c1', cluster: { server: 'https://198.18.1.10:6443' } }] }) };
    }
    if (context !== 'lab-cluster1') return fail(`unexpected context ${context}`);
    if (this.options.reachable === false) return fail('E0101 00:00:00.000 memcache.go:265] couldn\'t get current server API group list\nThe connection to the server 198.18.1.10:6443 was refused - did you specify the right host or port?');
    if (verb === 'get' && rest[1] === '--raw') return { stdout: '{"gitVersion":"v1.20.0"}' };
    if (verb === 'get' && rest[1] === 'namespace') {
      const labels = this.namespaces.get(rest[2]!);
      return { stdout: labels ? JSON.stringify({ metadata: { name: rest[2], labels } }) : '' };
    }
    if (verb === 'label' && rest[1] === 'namespace') {
      const [key, value] = rest[3]!.split('=');
      this.namespaces.get(rest[2]!)![key!] = value!;
      return { stdout: '' };
    }
    if ((verb === 'get' || verb === 'delete' || verb === 'apply') && this.options.crds === false) return fail('error: the server doesn\'t have a resource type "gateways"');
    if (verb === 'apply') {
      const object = JSON.parse(options!.input!) as GatewayJson & { metadata: { name: string; namespace: string } };
      this.gateways.set(`${object.metadata.namespace}/${object.metadata.name}`, object);
      return { stdout: `gateway.gateway.networking.k8s.io/${object.metadata.name} serverside-applied` };
    }
    if (verb === 'get' && rest[1] === GATEWAY_CRD && rest[2] !== undefined && !rest[2].startsWith('-')) {
      const gateway = this.gateways.get(`${namespace}/${rest[2]}`);
      if (!gateway) return { stdout: '' };
      if (++this.reads > (this.options.programmedAfterReads ?? 0)) gateway.status = { conditions: [{ type: 'Programmed', status: 'True', reason: 'Programmed', message: 'Resource programmed' }] };
      else gateway.status = { conditions: [{ type: 'Programmed', status: 'False', reason: 'Pending', message: 'waiting for the waypoint Deployment to have an available pod' }] };
      return { stdout: JSON.stringify(gateway) };
    }
    if (verb === 'get' && rest[1] === GATEWAY_CRD) {
      const items = [...this.gateways.values()].filter((g) => args.includes('-A') || g.metadata.namespace === namespace);
      return { stdout: JSON.stringify({ items }) };
    }
    if (verb === 'delete' && rest[1] === GATEWAY_CRD) {
      this.gateways.delete(`${namespace}/${rest[2]}`);
      return { stdout: '' };
    }
    return fail(`unexpected kubectl ${argv.join(' ')}`);
  };
}

function fakeIo(): WaypointIo & { lines: string[]; warnings: string[]; slept: number } {
  let now = 0;
  const io = {
    lines: [] as string[],
    warnings: [] as string[],
    slept: 0,
    clock: { now: () => now, sleep: async (ms: number) => void ((now += ms), (io.slept += ms)) } satisfies Clock,
    out: (line: string) => io.lines.push(line),
    warn: (line: string) => io.warnings.push(line),
  };
  return io;
}

const connect = (cluster: FakeCluster, context?: string) => WaypointKube.connect({ context }, cluster.run);

// ---------------------------------------------------------------------------------------------

describe('waypoint Gateway generation', () => {
  for (const type of ['service', 'workload', 'all', 'none'] as const) {
    it(`--for ${type}: class istio-waypoint, label istio.io/waypoint-for=${type}, one HBONE listener on 15008`, () => {
      const object = parse(renderGatewayYaml(waypointGateway({ namespace: 'sample', for: parseWaypointFor(type) }))) as Record<string, unknown>;
      assert.deepEqual(object, {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        metadata: { name: 'waypoint', namespace: 'sample', labels: { 'istio.io/waypoint-for': type } },
        spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
      });
    });
  }

  it('defaults: name waypoint, for service; no namespace unless given (as istioctl generate)', () => {
    const gateway = waypointGateway({ for: parseWaypointFor(undefined) });
    assert.equal(gateway.metadata.name, 'waypoint');
    assert.equal(gateway.metadata.labels['istio.io/waypoint-for'], 'service');
    assert.equal('namespace' in gateway.metadata, false);
    assert.equal(waypointGateway({ name: 'reviews-wp' }).metadata.name, 'reviews-wp');
  });

  it('rejects an unknown --for, a name that is not a DNS label, the reserved name none, a bad namespace', () => {
    assert.throws(() => parseWaypointFor('services'), (e: Error) => e instanceof WaypointCliError && /--for: "services".*service, workload, all, none/.test(e.message));
    for (const bad of ['Waypoint', 'way_point', '-wp', 'wp-', 'a'.repeat(64), '', 'a.b']) {
      assert.throws(() => validateWaypointName(bad), (e: Error) => e instanceof WaypointCliError && e.message.includes(`"${bad}"`), bad);
    }
    assert.throws(() => validateWaypointName('none'), /reserved/);
    assert.equal(validateWaypointName('a'.repeat(63)), 'a'.repeat(63));
    assert.throws(() => waypointGateway({ namespace: 'Sample' }), /--namespace: "Sample"/);
  });
});

describe('waypoint list and status tables', () => {
  const gateways: GatewayJson[] = [
    { metadata: { name: 'waypoint', namespace: 'sample', labels: { 'istio.io/waypoint-for': 'service' } }, spec: { gatewayClassName: 'istio-waypoint' }, status: { conditions: [{ type: 'Accepted', status: 'True' }, { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'Resource programmed' }] } },
    { metadata: { name: 'a-wp', namespace: 'sample', labels: { 'istio.io/waypoint-for': 'workload', 'istio.io/rev': 'canary' } }, spec: { gatewayClassName: 'istio-waypoint' } },
    { metadata: { name: 'east-west', namespace: 'istio-system' }, spec: { gatewayClassName: 'istio-east-west' } },
    { metadata: { name: 'bare', namespace: 'other' }, spec: { gatewayClassName: 'istio-waypoint' } },
  ];

  it('only istio-waypoint Gateways, sorted by namespace and name; revision default, a missing waypoint-for shown as service', () => {
    const rows = waypointRows(gateways);
    assert.deepEqual(rows.map((r) => [r.namespace, r.name, r.revision, r.trafficType, r.programmed?.status]), [
      ['other', 'bare', 'default', 'service', undefined],
      ['sample', 'a-wp', 'canary', 'workload', undefined],
      ['sample', 'waypoint', 'default', 'service', 'True'],
    ]);
  });

  it("list: istioctl's columns, aligned; NAMESPACE first with -A; a message when there are none", () => {
    const sample = waypointRows(gateways).filter((r) => r.namespace === 'sample');
    assert.equal(renderList(sample, false), ['NAME         REVISION     TRAFFIC TYPE     PROGRAMMED', 'a-wp         canary       workload         False', 'waypoint     default      service          True', ''].join('\n'));
    const all = renderList(waypointRows(gateways), true).split('\n');
    assert.match(all[0]!, /^NAMESPACE\s+NAME\s+REVISION\s+TRAFFIC TYPE\s+PROGRAMMED$/);
    assert.match(all[1]!, /^other\s+bare\s+default\s+service\s+False$/);
    assert.equal(renderList([], false), 'No waypoints found.\n');
  });

  it('status: the Programmed condition per waypoint', () => {
    const text = renderStatus(waypointRows(gateways).filter((r) => r.namespace === 'sample'), false).split('\n');
    assert.match(text[0]!, /^NAME\s+STATUS\s+TYPE\s+REASON\s+MESSAGE$/);
    assert.match(text[1]!, /^a-wp\s+Unknown\s+Programmed\s+no status written yet$/);
    assert.match(text[2]!, /^waypoint\s+True\s+Programmed\s+Programmed\s+Resource programmed$/);
  });
});

describe('waypoint commands against a (fake) cluster', () => {
  it('apply --enroll-namespace --wait: applies the Gateway, waits for Programmed, then labels the namespace', async () => {
    const cluster = new FakeCluster({ programmedAfterReads: 3 });
    const io = fakeIo();
    const kube = await connect(cluster);
    assert.equal(kube.defaultNamespace, 'default');
    await applyWaypoint(kube, { namespace: 'sample', enrollNamespace: true, wait: true, timeoutMs: 90_000 }, io);
    assert.deepEqual(io.lines, ['waypoint sample/waypoint applied', 'waypoint sample/waypoint is ready!', 'namespace sample labeled with "istio.io/use-waypoint: waypoint"']);
    assert.deepEqual(io.warnings, []);
    assert.equal(cluster.namespaces.get('sample')!['istio.io/use-waypoint'], 'waypoint');
    const applied = cluster.gateways.get('sample/waypoint')!;
    assert.equal(applied.spec?.gatewayClassName, 'istio-waypoint');
    assert.equal(applied.metadata.labels?.['istio.io/waypoint-for'], 'service');
    const apply = cluster.calls.find((c) => c.includes('apply'))!;
    assert.ok(apply.includes('--server-side'), apply.join(' '));
    // The label comes after the wait: the namespace is never enrolled in a waypoint that is not serving.
    const labelAt = cluster.calls.findIndex((c) => c.includes('label'));
    const lastRead = cluster.calls.length - 1 - [...cluster.calls].reverse().findIndex((c: string[]) => c.includes(GATEWAY_CRD));
    assert.ok(labelAt > lastRead);
  });

  it('--wait times out with a message naming the Gateway and its last condition, and does not enroll the namespace', async () => {
    const cluster = new FakeCluster({ programmedAfterReads: Infinity });
    const io = fakeIo();
    const kube = await connect(cluster);
    await assert.rejects(
      applyWaypoint(kube, { namespace: 'sample', name: 'wp1', enrollNamespace: true, wait: true, timeoutMs: 5000 }, io),
      (e: Error) => e instanceof WaypointCliError && e.message.includes('waypoint sample/wp1') && e.message.includes('after 5s') && e.message.includes('Programmed=False (Pending: waiting for the waypoint Deployment to have an available pod)'),
    );
    assert.equal(cluster.namespaces.get('sample')!['istio.io/use-waypoint'], undefined);
    assert.ok(io.slept >= 5000);
  });

  it('waitProgrammed: a Gateway deleted meanwhile is an error, not a wait until the timeout', async () => {
    const kube = await connect(new FakeCluster());
    await assert.rejects(waitProgrammed(kube, 'sample', 'gone', 90_000, fakeIo().clock), /sample\/gone was deleted/);
  });

  it('--enroll-namespace into a namespace using another waypoint needs --overwrite; warns when the namespace is not ambient', async () => {
    const cluster = new FakeCluster();
    cluster.namespaces.get('sample')!['istio.io/use-waypoint'] = 'old';
    const kube = await connect(cluster);
    await assert.rejects(applyWaypoint(kube, { namespace: 'sample', enrollNamespace: true }, fakeIo()), /namespace sample already uses waypoint "old".*--overwrite/);
    assert.equal(cluster.gateways.size, 0, 'nothing applied');
    await applyWaypoint(kube, { namespace: 'sample', enrollNamespace: true, overwrite: true }, fakeIo());
    assert.equal(cluster.namespaces.get('sample')!['istio.io/use-waypoint'], 'waypoint');
    const io = fakeIo();
    await applyWaypoint(kube, { namespace: 'default', enrollNamespace: true }, io);
    assert.match(io.warnings.join('\n'), /namespace default is not enrolled in ambient/);
  });

  it('a missing namespace, missing Gateway CRDs and an unreachable API server give one clear line each', async () => {
    const kube = await connect(new FakeCluster());
    await assert.rejects(applyWaypoint(kube, { namespace: 'nope' }, fakeIo()), { message: 'namespace "nope" not found in context "lab-cluster1"' });
    await assert.rejects(async () => listWaypoints(await connect(new FakeCluster({ crds: false })), { namespace: 'sample' }), /Gateway API CRDs are not installed in context "lab-cluster1"/);
    await assert.rejects(connect(new FakeCluster({ reachable: false })), {
      message: 'cannot reach the API server of context "lab-cluster1" at https://198.18.1.10:6443: The connection to the server 198.18.1.10:6443 was refused - did you specify the right host or port?',
    });
    await assert.rejects(connect(new FakeCluster(), 'lab-cluster9'), /context "lab-cluster9" is not in the kubeconfig; known contexts: lab-cluster1/);
    assert.equal(oneLine(new Error('error: a\nE0101 12:00:00.1 x.go:1] noise\n')), 'a');
  });

  it('delete removes only istio-waypoint Gateways; names another class or unknown fail after deleting the rest', async () => {
    const cluster = new FakeCluster();
    cluster.addGateway('sample', 'waypoint', 'istio-waypoint', {}, 'True');
    cluster.addGateway('sample', 'wp2', 'istio-waypoint');
    cluster.addGateway('sample', 'ingress', 'istio');
    cluster.addGateway('other', 'waypoint', 'istio-waypoint');
    cluster.namespaces.get('sample')!['istio.io/use-waypoint'] = 'waypoint';
    const kube = await connect(cluster);
    const io = fakeIo();
    await assert.rejects(deleteWaypoints(kube, { namespace: 'sample', names: ['waypoint', 'ingress', 'missing'] }, io), {
      message: 'Gateway sample/ingress is not a waypoint (class istio), not deleted; waypoint sample/missing not found',
    });
    assert.deepEqual(io.lines, ['waypoint sample/waypoint deleted']);
    assert.match(io.warnings.join('\n'), /still has istio\.io\/use-waypoint=waypoint/);
    assert.deepEqual([...cluster.gateways.keys()].sort(), ['other/waypoint', 'sample/ingress', 'sample/wp2']);
    await deleteWaypoints(kube, { namespace: 'sample', names: [], all: true }, io);
    assert.deepEqual([...cluster.gateways.keys()].sort(), ['other/waypoint', 'sample/ingress']);
    await assert.rejects(deleteWaypoints(kube, { namespace: 'sample', names: ['a'], all: true }, io), /not both/);
    await assert.rejects(deleteWaypoints(kube, { namespace: 'sample', names: [] }, io), /give the name of a waypoint/);
  });

  it('list and status read the namespace, or all of them', async () => {
    const cluster = new FakeCluster();
    cluster.addGateway('sample', 'waypoint', 'istio-waypoint', { 'istio.io/waypoint-for': 'service' }, 'True');
    cluster.addGateway('other', 'wp', 'istio-waypoint', {}, 'False');
    const kube = await connect(cluster);
    assert.match(await listWaypoints(kube, { namespace: 'sample' }), /^NAME\s+REVISION\s+TRAFFIC TYPE\s+PROGRAMMED\nwaypoint\s+default\s+service\s+True\n$/);
    assert.equal((await listWaypoints(kube, { namespace: 'sample', allNamespaces: true })).split('\n').filter(Boolean).length, 3);
    assert.equal(await listWaypoints(kube, { namespace: 'default' }), 'No waypoints found.\n');
    assert.match(await waypointStatus(kube, { namespace: 'sample', wait: true }, fakeIo()), /waypoint\s+True\s+Programmed/);
    await assert.rejects(waypointStatus(kube, { namespace: 'other', wait: true, timeoutMs: 3000 }, fakeIo()), /timed out after 3s waiting for waypoint other\/wp \(Programmed=False/);
  });
});

describe('the ambit waypoint CLI on bad input', () => {
  const cli = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: repoRoot, env: { ...process.env, KUBECONFIG: '/nonexistent/kubeconfig' } }, (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
      );
    });

  for (const [args, expected] of [
    [['waypoint', 'generate', '--for', 'bogus'], /^ambit: --for: "bogus" is not a traffic type/],
    [['waypoint', 'apply', '--name', 'Not_A_Label'], /^ambit: --name: "Not_A_Label" is not a valid waypoint name/],
    [['waypoint', 'apply', '-n', 'Bad.NS'], /^ambit: --namespace: "Bad.NS" is not a valid namespace name/],
    [['waypoint', 'delete', '-n', 'sample'], /^ambit: give the name of a waypoint to delete/],
    [['waypoint', 'list', '--context', 'nowhere'], /^ambit: context "nowhere" is not in the kubeconfig/],
  ] as const) {
    it(`${args.join(' ')}: one line naming the problem, exit code 1, no stack trace`, async () => {
      const r = await cli([...args]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, expected);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    });
  }

  it('generate prints the Gateway YAML and --revision only adds a note', async () => {
    const r = await cli(['waypoint', 'generate', '-n', 'sample', '--for', 'all', '--revision', 'canary']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((parse(r.stdout) as { metadata: { labels: Record<string, string> } }).metadata.labels['istio.io/waypoint-for'], 'all');
    assert.match(r.stderr, /note: --revision "canary" is ignored/);
  });
});
