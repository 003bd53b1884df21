import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { READER_SERVICE_ACCOUNT } from '../src/api/names.js';
import { readState } from '../src/lab/state.js';
import { tokenSecretName } from '../src/multicluster-cli/remote-secret.js';
import { ambit, kubectl, labExec, rolloutStatus, samples, sh, waitFor } from './helpers/lab.js';
import { curlFrom, inNode, pods, ztunnelMetrics } from './helpers/mesh.js';
import { captureIn, eastWestGateway, freshLab, gatewayCrossings, globalService, helloworldSubsetRoute, labDownChecked, meshClusters, onlyVersions, versions, versionsOnOneConnection } from './helpers/multicluster.js';

const CLUSTERS = [
  { name: 'cluster1', ctx: 'lab-cluster1', network: 'network1', version: 'v1' },
  { name: 'cluster2', ctx: 'lab-cluster2', network: 'network2', version: 'v2' },
] as const;
const numbers: string[] = [];

interface GatewayStatusView {
  status?: { addresses?: Array<{ value: string }>; conditions?: Array<{ type: string; status: string }> };
}
let labPids: number[] = [];

describe('mesh: two clusters on two networks (seed 000)', { timeout: 1_500_000 }, () => {
  before(async () => {
    labPids = await freshLab('topologies/two-networks.yaml');
    // §4–§7: one root CA (Istio's sample certs), install with network, remote secrets both ways, east-west gateways.
    await meshClusters(CLUSTERS);
    // §8: the sample.
    for (const c of CLUSTERS) {
      await kubectl(c.ctx, ['create', 'ns', 'sample']);
      await kubectl(c.ctx, ['label', 'ns', 'sample', 'istio.io/dataplane-mode=ambient', '--overwrite']);
      await kubectl(c.ctx, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`, '-l', 'service=helloworld']);
      await kubectl(c.ctx, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`, '-l', `version=${c.version}`]);
      await kubectl(c.ctx, ['label', 'svc', 'helloworld', '-n', 'sample', 'istio.io/global=true', '--overwrite']);
      await kubectl(c.ctx, ['apply', '-n', 'sample', '-f', `${samples}curl.yaml`]);
    }
    for (const c of CLUSTERS) await rolloutStatus(c.ctx, 'sample', [`helloworld-${c.version}`, 'curl']);
  });

  after(() => labDownChecked(labPids, numbers));

  it('the east-west gateways are Accepted and Programmed with their LoadBalancer address in status', async () => {
    for (const c of CLUSTERS) {
      const lb = (await kubectl(c.ctx, ['-n', 'istio-system', 'get', 'svc', 'istio-eastwestgateway', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}'])).trim();
      await waitFor(`${c.name} gateway Programmed`, async () => {
        const now = JSON.parse(await kubectl(c.ctx, ['-n', 'istio-system', 'get', 'gateway', 'istio-eastwestgateway', '-o', 'json'])) as GatewayStatusView;
        return now.status?.conditions?.find((x) => x.type === 'Programmed')?.status === 'True' && now.status.addresses?.[0]?.value === lb;
      });
    }
  });

  it('seed 000 §8: 20 requests from each cluster return both versions, roughly evenly', async () => {
    for (const c of CLUSTERS) {
      await onlyVersions(c.name, ['v1', 'v2'], `both versions from ${c.name}`, 90_000);
      const { seen, failures } = await versions(c.name, 20);
      assert.equal(failures, 0, `failed requests from ${c.name}`);
      for (const v of ['v1', 'v2']) assert.ok((seen.get(v) ?? 0) >= 4, `${c.name}: ${v} answered ${seen.get(v) ?? 0} of 20`);
    }
    // Request latency, local version vs the other network's (through both gateways' tunnels), from cluster1.
    const times = new Map<string, number[]>();
    const timed = await sh('node', ['bin/ambit.js', 'lab', 'exec', '--cluster', 'cluster1', '-n', 'sample', 'deploy/curl', '--', 'sh', '-c',
      'for i in $(seq 1 40); do curl -sS --max-time 5 -w " %{time_total}\\n" helloworld.sample:5000/hello; done']);
    // The body ends with a newline, so each time is on the line after its answer.
    let answered: string | undefined;
    for (const line of timed.stdout.split('\n')) {
      const version = /^Hello version: (v\d),/.exec(line);
      const seconds = /^\s*(\d+\.\d+)\s*$/.exec(line);
      if (version) answered = version[1];
      else if (seconds && answered) {
        times.set(answered, [...(times.get(answered) ?? []), Number(seconds[1]) * 1000]);
        answered = undefined;
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    numbers.push(`curl request from cluster1, median: same cluster (v1) ${median(times.get('v1') ?? []).toFixed(2)} ms, other network via gateway (v2) ${median(times.get('v2') ?? []).toFixed(2)} ms`);
  });

  it('a waypoint in cluster1 for the global helloworld with a VirtualService 80/20 by version subsets: requests from cluster1 split across the clusters per request, over one client connection', async () => {
    const [c1] = CLUSTERS;
    const undo = await helloworldSubsetRoute(c1.ctx, { v1: 80, v2: 20 });
    try {
      // In force once the waypoint counts requests; then the split is measured.
      const counted = async () => Number((await labExec(c1.name, 'sample', 'deploy/waypoint', ['sh', '-c', 'curl -s localhost:15020/stats/prometheus | grep "^istio_requests_total" | awk "{s+=\\$NF} END {print s+0}"'])).stdout.trim() || 0);
      await waitFor('requests through the waypoint', async () => {
        await versions(c1.name, 2);
        return (await counted()) > 0;
      }, 90_000, 500);
      let split = await versionsOnOneConnection(c1.name, 100);
      // Binomial(100, 0.2) is outside [8, 35] about 0.1% of the time: one more run before calling it wrong.
      if ((split.seen.get('v2') ?? 0) < 8 || (split.seen.get('v2') ?? 0) > 35) split = await versionsOnOneConnection(c1.name, 100);
      const v1 = split.seen.get('v1') ?? 0;
      const v2 = split.seen.get('v2') ?? 0;
      numbers.push(`80/20 VirtualService at cluster1's waypoint, 100 requests on one connection: v1 (cluster1) ${v1}, v2 (cluster2, through the east-west gateways) ${v2}, TCP connects ${split.connects}`);
      assert.equal(v1 + v2, 100, JSON.stringify([...split.seen]));
      assert.ok(v2 >= 8 && v2 <= 35, `about 20% v2: ${v2}`);
      assert.equal(split.connects, 1, 'one client connection for all 100 requests');
    } finally {
      await undo();
    }
    await onlyVersions(c1.name, ['v1', 'v2'], 'both versions without the waypoint', 60_000);
  });

  it('a DENY applied in cluster2 while pooled cross-network sessions run: no request from cluster1 reaches v2 any more', async () => {
    const [c1, c2] = CLUSTERS;
    await versions(c1.name, 10);
    const applied = Date.now();
    await kubectl(c2.ctx, ['apply', '-f', '-'], [
      'apiVersion: security.istio.io/v1',
      'kind: AuthorizationPolicy',
      'metadata: { name: deny-curl, namespace: sample }',
      'spec:',
      '  selector: { matchLabels: { app: helloworld } }',
      '  action: DENY',
      '  rules: [ { from: [ { source: { principals: ["cluster.local/ns/sample/sa/curl"] } } ] } ]',
      '',
    ].join('\n'));
    try {
      await waitFor('cluster2 to refuse curl from cluster1', async () => !(await versions(c1.name, 6)).seen.has('v2'), 30_000, 200);
      numbers.push(`DENY in cluster2 → enforced for cluster1's requests through the gateway: ${((Date.now() - applied) / 1000).toFixed(2)} s (includes kubectl and exec)`);
      const { seen, failures } = await versions(c1.name, 40);
      assert.equal(seen.get('v2') ?? 0, 0, `v2 answered ${seen.get('v2') ?? 0} of 40 requests after the DENY`);
      assert.ok((seen.get('v1') ?? 0) > 0 && failures > 0, 'v1 still answers; the requests sent to cluster2 are refused');
    } finally {
      await kubectl(c2.ctx, ['delete', '-n', 'sample', 'authorizationpolicy', 'deny-curl']);
      await onlyVersions(c1.name, ['v1', 'v2'], 'both versions again after the DENY is removed', 30_000);
    }
  });

  it('between networks only gateway addresses on 15008 cross, and no clear text', async () => {
    const state = readState()!;
    const gateways = await Promise.all(CLUSTERS.map(async (c) => (await kubectl(c.ctx, ['-n', 'istio-system', 'get', 'svc', 'istio-eastwestgateway', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}'])).trim()));
    const ports = state.plan.networks.map((n) => n.corePort);
    const { text: out, flows: all } = await captureIn('ambit-core', async () => {
      for (const c of CLUSTERS) await versions(c.name, 10);
    });
    assert.ok(ports.length === 2);
    assert.doesNotMatch(out, /Hello version|GET \/hello/, 'application bytes crossed networks in clear text');
    const flows = [...all].filter((flow) => {
      const [, src, sport, dst, dport] = /^(.+):(\d+) > (.+):(\d+)$/.exec(flow)!;
      return !((gateways.includes(dst!) && dport === '15008') || (gateways.includes(src!) && sport === '15008'));
    });
    assert.deepEqual(flows.slice(0, 10), [], 'only east-west gateway :15008 may cross networks');
    assert.match(out, /\.15008[ :]/, 'cross-network traffic was captured');
  });

  it('without the istio.io/global label each cluster answers only with its own version', async () => {
    for (const c of CLUSTERS) await kubectl(c.ctx, ['label', 'svc', 'helloworld', '-n', 'sample', 'istio.io/global-']);
    try {
      for (const c of CLUSTERS) await onlyVersions(c.name, [c.version], `${c.name} to answer with ${c.version} only`);
    } finally {
      for (const c of CLUSTERS) await kubectl(c.ctx, ['label', 'svc', 'helloworld', '-n', 'sample', 'istio.io/global=true', '--overwrite']);
    }
    for (const c of CLUSTERS) await onlyVersions(c.name, ['v1', 'v2'], `${c.name} back to both versions`);
  });

  it('MeshConfig serviceScopeConfigs make services global without the label, at run time, from the local cluster\'s config', async () => {
    const [c1, c2] = CLUSTERS;
    const meshConfig = (entries: string) => ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', '  name: istio', '  namespace: istio-system', 'data:', '  mesh: |', entries, ''].join('\n');
    const byNamespace = ['    serviceScopeConfigs:', '      - namespaceSelector:', '          matchLabels:', '            mesh-scope: shared', '        scope: GLOBAL'].join('\n');
    for (const c of CLUSTERS) await kubectl(c.ctx, ['label', 'svc', 'helloworld', '-n', 'sample', 'istio.io/global-']);
    // The selector reads each cluster's own namespace labels (the lab's Kubernetes 1.20 has no kubernetes.io/metadata.name).
    for (const c of CLUSTERS) await kubectl(c.ctx, ['label', 'ns', 'sample', 'mesh-scope=shared', '--overwrite']);
    try {
      for (const c of CLUSTERS) await onlyVersions(c.name, [c.version], `${c.name} local only without the label`);
      await kubectl(c1.ctx, ['apply', '-f', '-'], meshConfig(byNamespace));
      await onlyVersions(c1.name, ['v1', 'v2'], 'cluster1 to treat every sample service as global', 60_000);
      await onlyVersions(c2.name, ['v2'], 'cluster2 (no such config) to stay local');
      // An invalid edit is refused and the config in force stays.
      await kubectl(c1.ctx, ['apply', '-f', '-'], meshConfig('    serviceScopeConfigs: [{ scope: SOMETIMES }]'));
      await new Promise((r) => setTimeout(r, 2000));
      await onlyVersions(c1.name, ['v1', 'v2'], 'cluster1 to keep the last valid config');
    } finally {
      await kubectl(c1.ctx, ['apply', '-f', '-'], meshConfig('    serviceScopeConfigs: []'));
      for (const c of CLUSTERS) await kubectl(c.ctx, ['label', 'svc', 'helloworld', '-n', 'sample', 'istio.io/global=true', '--overwrite']);
    }
    for (const c of CLUSTERS) await onlyVersions(c.name, ['v1', 'v2'], `${c.name} back to both versions`);
  });

  it('PreferClose: only the local version while it exists; scaled to 0 → the remote one; scaled back → local', async () => {
    const [c1] = CLUSTERS;
    for (const c of CLUSTERS) await kubectl(c.ctx, ['annotate', 'svc', 'helloworld', '-n', 'sample', 'networking.istio.io/traffic-distribution=PreferClose', '--overwrite']);
    await onlyVersions(c1.name, ['v1'], 'cluster1 to prefer its own v1');
    try {
      await kubectl(c1.ctx, ['scale', 'deploy', 'helloworld-v1', '-n', 'sample', '--replicas=0']);
      await waitFor('v1 gone', async () => (await pods(c1.ctx, 'sample', 'app=helloworld')).length === 0);
      // As before requests were one exec each: the first one left about a second after the pods went.
      await new Promise((r) => setTimeout(r, 1000));
      const { seen, failures } = await versions(c1.name, 10);
      assert.ok(failures <= 1, `${failures} failed requests during failover`);
      assert.deepEqual([...seen.keys()], ['v2'], 'failover to the remote network');
      await kubectl(c1.ctx, ['scale', 'deploy', 'helloworld-v1', '-n', 'sample', '--replicas=1']);
      await rolloutStatus(c1.ctx, 'sample', ['helloworld-v1']);
      await onlyVersions(c1.name, ['v1'], 'cluster1 back to its own v1');
    } finally {
      await kubectl(c1.ctx, ['scale', 'deploy', 'helloworld-v1', '-n', 'sample', '--replicas=1']);
      for (const c of CLUSTERS) await kubectl(c.ctx, ['annotate', 'svc', 'helloworld', '-n', 'sample', 'networking.istio.io/traffic-distribution-']);
      await rolloutStatus(c1.ctx, 'sample', ['helloworld-v1']);
    }
    await onlyVersions(c1.name, ['v1', 'v2'], 'both versions again');
  });

  it('a global service that exists only in cluster2 is reachable from cluster1 by name; a non-global one never leaks', async () => {
    const [c1, c2] = CLUSTERS;
    const service = (name: string, global: boolean) =>
      [
        'apiVersion: v1',
        'kind: Service',
        'metadata:',
        `  name: ${name}`,
        '  namespace: sample',
        ...(global ? ['  labels:', '    istio.io/global: "true"'] : []),
        'spec:',
        '  selector:',
        '    app: helloworld',
        '  ports:',
        '  - name: http',
        '    port: 5000',
        '',
      ].join('\n');
    await kubectl(c2.ctx, ['apply', '-f', '-'], service('hello-remote', true));
    await kubectl(c2.ctx, ['apply', '-f', '-'], service('hello-private', false));
    const answered = await waitFor('hello-remote to answer in cluster1', async () => {
      const r = await curlFrom(c1.name, 'sample', 'deploy/curl', 'hello-remote.sample:5000/hello', 5);
      return r.code === 0 && r.stdout;
    }, 60_000);
    assert.match(answered, /^Hello version: v2,/);
    const looked = await sh('node', ['bin/ambit.js', 'lab', 'exec', '--cluster', c1.name, '-n', 'sample', 'deploy/curl', '--', 'dig', '+short', 'hello-remote.sample.svc.cluster.local']);
    assert.match(looked.stdout.trim(), /^240\.240\.\d+\.\d+$/, 'the name resolves to its allocated VIP');
    const hidden = await curlFrom(c1.name, 'sample', 'deploy/curl', 'hello-private.sample:5000/hello', 3);
    assert.notEqual(hidden.code, 0, `a non-global service of cluster2 answered in cluster1: ${hidden.stdout}`);
  });

  it('remote secret deleted → remote endpoints leave within seconds; re-linked → they come back', async () => {
    const [c1, c2] = CLUSTERS;
    await kubectl(c1.ctx, ['delete', 'secret', '-n', 'istio-system', `istio-remote-secret-${c2.name}`]);
    const gone = Date.now();
    await onlyVersions(c1.name, ['v1'], 'cluster2 endpoints to leave cluster1', 30_000);
    numbers.push(`remote secret deleted → remote endpoints gone from cluster1's traffic: ${((Date.now() - gone) / 1000).toFixed(1)} s`);
    const link = await ambit(['link', '--context', c1.ctx, '--context', c2.ctx], { timeoutMs: 120_000 });
    assert.equal(link.code, 0, link.stderr);
    await onlyVersions(c1.name, ['v1', 'v2'], 'cluster2 endpoints back in cluster1', 60_000);
  });

  it('a cluster name mismatch is refused with both names in the message', async () => {
    const [c1] = CLUSTERS;
    const ztunnel = (await pods(c1.ctx, 'istio-system', 'app=ztunnel'))[0]!;
    const r = await sh('node', ['bin/ambit.js', 'lab', 'exec', '--cluster', c1.name, '-n', 'istio-system', ztunnel.name, '--', 'env', 'CLUSTER_ID=cluster9', process.execPath, `${process.cwd()}/bin/ambit.js`, 'ztunnel', 'request-certificate', 'spiffe://cluster.local/ns/istio-system/sa/ztunnel']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cluster9/);
    assert.match(r.stderr, /cluster1/);
  });

  it('a Passthrough east-west listener is not accepted: UnsupportedProtocol', async () => {
    const [c1] = CLUSTERS;
    await kubectl(c1.ctx, ['apply', '--server-side', '-f', '-'], eastWestGateway(c1.network, 'Passthrough', 'passthrough-gateway'));
    await waitFor('UnsupportedProtocol in the listener status', async () => {
      const gw = JSON.parse(await kubectl(c1.ctx, ['-n', 'istio-system', 'get', 'gateway', 'passthrough-gateway', '-o', 'json'])) as {
        status?: { listeners?: Array<{ conditions?: Array<{ type: string; status: string; reason: string }> }> };
      };
      const accepted = gw.status?.listeners?.[0]?.conditions?.find((c) => c.type === 'Accepted');
      return accepted?.status === 'False' && accepted.reason === 'UnsupportedProtocol';
    });
    await kubectl(c1.ctx, ['delete', 'gateway', '-n', 'istio-system', 'passthrough-gateway']);
  });

  it('several east-west gateways on a network: connections spread over both; one scaled to 0 → the other takes over, no failed request', async () => {
    const [, c2] = CLUSTERS;
    // Only in cluster2, so every request from cluster1 crosses the networks.
    await kubectl(c2.ctx, ['apply', '-f', '-'], globalService('hello-v2', { app: 'helloworld', version: 'v2' }));
    await kubectl(c2.ctx, ['apply', '--server-side', '-f', '-'], eastWestGateway(c2.network, 'Terminate', 'second-eastwestgateway'));
    await waitFor('the second gateway address', async () =>
      (await kubectl(c2.ctx, ['-n', 'istio-system', 'get', 'svc', 'second-eastwestgateway', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}'])).trim(),
    );
    try {
      await rolloutStatus(c2.ctx, 'istio-system', ['second-eastwestgateway']);
      await spreadAndFailOver();
    } finally {
      await kubectl(c2.ctx, ['delete', 'gateway', '-n', 'istio-system', 'second-eastwestgateway']);
    }
  });

  async function spreadAndFailOver(): Promise<void> {
    const [c1, c2] = CLUSTERS;
    const gateways = ['istio-eastwestgateway', 'second-eastwestgateway'];
    const before = await Promise.all(gateways.map((g) => gatewayCrossings(c2, g)));
    await waitFor('both gateways to carry connections from cluster1', async () => {
      for (let i = 0; i < 10; i++) await curlFrom(c1.name, 'sample', 'deploy/curl', 'hello-v2.sample:5000/hello', 5);
      const now = await Promise.all(gateways.map((g) => gatewayCrossings(c2, g)));
      return now.every((count, i) => count > before[i]!);
    }, 60_000);

    await kubectl(c2.ctx, ['scale', 'deploy', 'second-eastwestgateway', '-n', 'istio-system', '--replicas=0']);
    await waitFor('the second gateway pod gone', async () => (await pods(c2.ctx, 'istio-system', 'gateway.networking.k8s.io/gateway-name=second-eastwestgateway')).length === 0);
    let failures = 0;
    for (let i = 0; i < 20; i++) {
      const r = await curlFrom(c1.name, 'sample', 'deploy/curl', 'hello-v2.sample:5000/hello', 5);
      if (r.code !== 0 || !/^Hello version: v2,/.test(r.stdout)) failures++;
    }
    assert.equal(failures, 0, 'requests failed while one gateway of the network was down');
    // Whichever came first: ztunnel ejected the unreachable gateway (data plane), or the Gateway's
    // Programmed=False reached cluster1 and its workload turned Unhealthy (control plane).
    const nodes = (await pods(c1.ctx, 'istio-system', 'app=ztunnel')).map((p) => p.node);
    const metrics = (await Promise.all(nodes.map((n) => ztunnelMetrics(c1.name, n)))).join('\n');
    const failovers = Number(/^ambit_gateway_failovers_total (\d+)/m.exec(metrics)?.[1] ?? 0);
    const dump = await inNode(c1.name, nodes[0]!, ['curl', '-sS', '--max-time', '2', 'http://127.0.0.1:15000/config_dump']);
    const second = (JSON.parse(dump.stdout) as { workloads: Array<{ uid: string; status: string }> }).workloads.find((w) => w.uid === 'cluster2/Gateway/istio-system/second-eastwestgateway');
    assert.equal(second?.status, 'Unhealthy', 'the scaled-down gateway is marked unhealthy in cluster1\'s ztunnel');
    numbers.push(`second gateway scaled to 0: 20/20 requests answered; ztunnel failovers to the other gateway: ${failovers}`);
  }

  it('a rotated reader token is picked up without a restart; a new pod in cluster2 reaches cluster1\'s ztunnel', async () => {
    const [c1, c2] = CLUSTERS;
    const controlPlane = async () => {
      const [pod] = await pods(c1.ctx, 'istio-system', 'app=ambit-controlplane');
      const restarts = await kubectl(c1.ctx, ['-n', 'istio-system', 'get', 'pod', pod!.name, '-o', 'jsonpath={.status.containerStatuses[0].restartCount}']);
      return `${pod!.name}/${restarts.trim()}`;
    };
    const running = await controlPlane();
    // Rotation: the old token stops working at once (its Secret is gone), then `link` issues and distributes a new one.
    await kubectl(c2.ctx, ['-n', 'istio-system', 'delete', 'secret', tokenSecretName(READER_SERVICE_ACCOUNT)]);
    const link = await ambit(['link', '--context', c1.ctx, '--context', c2.ctx], { timeoutMs: 120_000 });
    assert.equal(link.code, 0, link.stderr);
    // A change made in cluster2 after the rotation must reach cluster1: only a watch with the new token can see it.
    await kubectl(c2.ctx, ['apply', '-f', '-'], globalService('hello-rotated', { app: 'helloworld' }));
    const answered = await waitFor('a service created after the rotation to answer in cluster1', async () => {
      const r = await curlFrom(c1.name, 'sample', 'deploy/curl', 'hello-rotated.sample:5000/hello', 5);
      return r.code === 0 && r.stdout;
    }, 60_000);
    assert.match(answered, /^Hello version: v2,/);
    assert.equal(await controlPlane(), running, 'the control plane was not restarted');

    // A pod becoming Ready in cluster2 → the capacity of its synthetic workload in cluster1's ztunnel.
    const node = (await pods(c1.ctx, 'sample', 'app=curl'))[0]!.node;
    const capacity = async () => {
      const r = await inNode(c1.name, node, ['curl', '-sS', '--max-time', '2', `http://127.0.0.1:15000/config_dump`]);
      const dump = JSON.parse(r.stdout) as { workloads: Array<{ uid: string; capacity?: number }> };
      return dump.workloads.find((w) => w.uid === `network2/SyntheticGateway/sample/helloworld.sample.svc.cluster.local`)?.capacity ?? 0;
    };
    assert.equal(await capacity(), 1);
    await kubectl(c2.ctx, ['scale', 'deploy', 'helloworld-v2', '-n', 'sample', '--replicas=2']);
    try {
      const ready = await waitFor('a second v2 pod Ready', async () => {
        const list = await pods(c2.ctx, 'sample', 'app=helloworld');
        return list.filter((p) => p.ready).length === 2 && Date.now();
      }, 60_000, 20);
      const seen = await waitFor('capacity 2 in cluster1\'s ztunnel', async () => (await capacity()) === 2 && Date.now(), 30_000, 20);
      numbers.push(`pod Ready in cluster2 (seen by polling kubectl) → its endpoint in cluster1's ztunnel (polling the admin dump): ${seen - ready} ms, polling resolution ~100–200 ms`);
    } finally {
      await kubectl(c2.ctx, ['scale', 'deploy', 'helloworld-v2', '-n', 'sample', '--replicas=1']);
    }
  });

  it('different roots (CA mismatch): cross-network connections refused, and ztunnel says "untrusted peer certificate"', async () => {
    const [c1, c2] = CLUSTERS;
    // cluster2 forgets the shared CA: a self-signed root of its own, new certificates everywhere.
    await kubectl(c2.ctx, ['delete', 'secret', '-n', 'istio-system', 'cacerts']);
    await kubectl(c2.ctx, ['rollout', 'restart', '-n', 'istio-system', 'deploy/ambit-controlplane']);
    await rolloutStatus(c2.ctx, 'istio-system', ['ambit-controlplane']);
    await kubectl(c2.ctx, ['rollout', 'restart', '-n', 'istio-system', 'ds/ztunnel', 'deploy/istio-eastwestgateway']);
    await kubectl(c2.ctx, ['rollout', 'status', '-n', 'istio-system', 'ds/ztunnel', '--timeout=120s']);
    await rolloutStatus(c2.ctx, 'istio-system', ['istio-eastwestgateway']);
    await waitFor('cluster2 workloads to carry certificates of the new root', async () => {
      const { seen } = await versions(c1.name, 6);
      return !seen.has('v2');
    }, 90_000);
    const { seen } = await versions(c1.name, 10);
    assert.ok(!seen.has('v2'), 'v2 must not answer through certificates of an untrusted root');
    const nodes = (await pods(c1.ctx, 'istio-system', 'app=ztunnel')).map((p) => p.node);
    const metrics = (await Promise.all(nodes.map((n) => ztunnelMetrics(c1.name, n)))).join('\n');
    assert.match(metrics, /untrusted_peer_certificate/);
  });
});
