// A lab whose nodes are real kubelet + containerd (topologies/one-cluster-kubelet.yaml): seed 000's step 8 with kubectl
// exec/logs/port-forward as the seeds write them, kubelet's restarts, probes and image pulls, the mesh on real nodes,
// and `lab down` leaving nothing; prints lab up, pod and install timings and the memory of each node.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { cgroupExists } from '../src/lab/node/cgroups.js';
import { nodePids, readNodeRecord } from '../src/lab/node/index.js';
import { allRealNodePids, realNodeStateDir } from '../src/lab/real-nodes.js';
import { podsDir, readState } from '../src/lab/state.js';
import { ambit, kubectl, labLeftovers, rolloutStatus, samples, sh, waitFor } from './helpers/lab.js';
import { pods, rssMiB, ztunnelMetrics } from './helpers/mesh.js';

const CTX = 'lab-cluster1';
const CLUSTER = 'cluster1';
const TOPOLOGY = 'topologies/one-cluster-kubelet.yaml';
const numbers: string[] = [];
let nodeNames: string[] = [];
let downDone = false;

const secs = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`;
const jsonOf = async (args: string[]) => JSON.parse(await kubectl(CTX, [...args, '-o', 'json'])) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const hello = (out: string) => /^Hello version: (v\d), instance: (\S+)\n$/.exec(out);
const comm = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};

/** The seed's command, verbatim: kubectl exec --context … -n sample deploy/curl -c curl -- curl -sS "helloworld.sample:5000/hello". */
const seedCurl = (namespace = 'sample', url = 'helloworld.sample:5000/hello') =>
  sh('kubectl', ['exec', '--context', CTX, '-n', namespace, 'deploy/curl', '-c', 'curl', '--', 'curl', '-sS', '--max-time', '5', url]);

/** Moves deploy/curl to `node` (the samples leave placement to the scheduler; the test needs a cross-node pair). */
async function pinCurl(namespace: string, node: string): Promise<void> {
  await kubectl(CTX, ['-n', namespace, 'patch', 'deploy', 'curl', '--type', 'merge', '-p', JSON.stringify({ spec: { template: { spec: { nodeSelector: { 'kubernetes.io/hostname': node } } } } })]);
  await rolloutStatus(CTX, namespace, ['curl']);
}

function pod(name: string, spec: Record<string, unknown>, labels: Record<string, string> = { app: name }): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'sample', labels }, spec: { terminationGracePeriodSeconds: 0, ...spec } });
}

const CURL_IMAGE = 'docker.io/curlimages/curl:8.16.0';

async function waitingReason(name: string, wanted: string[], timeoutMs: number): Promise<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return waitFor(
    `pod ${name} to show ${wanted.join(' or ')}`,
    async () => {
      const status = (await jsonOf(['-n', 'sample', 'get', 'pod', name])).status?.containerStatuses?.[0];
      return wanted.includes(status?.state?.waiting?.reason) && status;
    },
    timeoutMs,
    500,
  );
}

describe('lab: nodeRuntime kubelet (real kubelet + containerd per node)', { timeout: 600_000 }, () => {
  before(async () => {
    if (readState()) await ambit(['lab', 'down']);
    const started = Date.now();
    const up = await ambit(['lab', 'up', '-f', TOPOLOGY], { timeoutMs: 900_000 });
    assert.equal(up.code, 0, up.stderr);
    // All cached, or what was built now: the app layer and archives after a change to dist/, everything on a cold cache.
    const images = /images: (all cached|\d+ layer\(s\) built, \d+ archive\(s\) written) in ([\d.]+)s/.exec(up.stderr);
    assert.ok(images, up.stderr);
    numbers.push(`lab up (images: ${images[1]} in ${images[2]} s) ${secs(started)}`);
    for (const line of up.stderr.split('\n').filter((l) => /started in|imported/.test(l))) numbers.push(`  ${line.replace(/^\[lab\] /, '')}`);
    nodeNames = readState()!.plan.clusters[0]!.nodes.map((n) => n.name);
  });

  after(async () => {
    for (const line of numbers) console.log(`# number: ${line}`);
    if (!downDone) await ambit(['lab', 'down']);
  });

  it('a second lab up keeps the nodes and builds nothing', async () => {
    const pidsBefore = nodeNames.map((n) => readNodeRecord(realNodeStateDir(n))!.kubeletPid);
    const again = Date.now();
    const up = await ambit(['lab', 'up', '-f', TOPOLOGY], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    numbers.push(`lab up again (lab already up) ${secs(again)}`);
    assert.match(up.stderr, /nothing to build/);
    assert.doesNotMatch(up.stderr, /kubelet \+ containerd started|imported/);
    assert.deepEqual(nodeNames.map((n) => readNodeRecord(realNodeStateDir(n))!.kubeletPid), pidsBefore);
  });

  it('nodes are registered by kubelet: Ready, with the lab labels, podCIDR and containerd', async () => {
    const plan = readState()!.plan.clusters[0]!;
    assert.equal(plan.nodeRuntime, 'kubelet');
    for (const planned of plan.nodes) {
      const node = await jsonOf(['get', 'node', planned.name]);
      assert.ok(node.status.conditions.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True'), `${planned.name} Ready`);
      assert.equal(node.metadata.labels['topology.kubernetes.io/region'], planned.region);
      assert.equal(node.metadata.labels['topology.kubernetes.io/zone'], planned.zone);
      assert.equal(node.metadata.labels['topology.istio.io/network'], planned.network);
      assert.equal(node.metadata.labels['kubernetes.io/hostname'], planned.name);
      assert.equal(node.spec.podCIDR, planned.podCidr);
      assert.ok(node.status.addresses.some((a: { type: string; address: string }) => a.type === 'InternalIP' && a.address === planned.ip));
      assert.match(node.status.nodeInfo.kubeletVersion, /^v1\.20\./);
      assert.match(node.status.nodeInfo.containerRuntimeVersion, /^containerd:\/\//);
    }
    const status = await ambit(['lab', 'status']);
    for (const n of plan.nodes) assert.match(status.stdout, new RegExp(`node ${n.name} .* Ready  kubelet running`));
    // The agent serves DNS and Services only: it runs no pods for these nodes.
    assert.ok(!existsSync(podsDir(CLUSTER)) || readdirSync(podsDir(CLUSTER)).length === 0);
  });

  it("seed 000 step 8: helloworld + curl Ready; kubectl exec as in the seed answers both versions across nodes", async () => {
    const applied = Date.now();
    await kubectl(CTX, ['create', 'ns', 'sample']);
    for (const selector of ['service=helloworld', 'version=v1', 'version=v2']) {
      await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`, '-l', selector]);
    }
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}curl.yaml`]);
    await rolloutStatus(CTX, 'sample', ['helloworld-v1', 'helloworld-v2', 'curl']);
    numbers.push(`seed 000 workloads (3 pods) applied → all Ready ${secs(applied)}`);
    // The pods kubelet does not have to wait for: started now, checked in the tests below.
    await kubectl(CTX, ['apply', '-f', '-'], pod('crash', { containers: [{ name: 'crash', image: CURL_IMAGE, command: ['sh', '-c', 'echo crashing now; exit 3'] }] }));
    await kubectl(CTX, ['apply', '-f', '-'], pod('missing', { containers: [{ name: 'missing', image: 'ambit.local/never-built:1' }] }));

    const v1 = (await pods(CTX, 'sample', 'version=v1'))[0]!;
    const other = nodeNames.find((n) => n !== v1.node)!;
    await pinCurl('sample', other);
    const curl = (await pods(CTX, 'sample', 'app=curl'))[0]!;
    assert.notEqual(curl.node, v1.node);
    for (const p of await pods(CTX, 'sample')) {
      const cidr = readState()!.plan.clusters[0]!.nodes.find((n) => n.name === p.node)!.podCidr;
      if (p.ip) assert.ok(p.ip.startsWith(cidr.replace(/0\/24$/, '')), `pod ${p.name} ${p.ip} is in ${p.node}'s pod CIDR ${cidr}`);
    }
    const seen = new Map<string, number>();
    for (let i = 0; i < 24 && seen.size < 2; i++) {
      const r = await seedCurl();
      assert.equal(r.code, 0, r.stderr);
      const m = hello(r.stdout);
      assert.ok(m, `unexpected answer ${JSON.stringify(r.stdout)}`);
      seen.set(m[1]!, (seen.get(m[1]!) ?? 0) + 1);
    }
    assert.deepEqual([...seen.keys()].sort(), ['v1', 'v2'], `curl on ${curl.node}, helloworld-v1 on ${v1.node}`);
    // ambit lab exec is kubectl exec here.
    const wrapped = await ambit(['lab', 'exec', '--cluster', CLUSTER, '-n', 'sample', 'deploy/curl', '--', 'curl', '-sS', 'helloworld.sample:5000/hello']);
    assert.equal(wrapped.code, 0, wrapped.stderr);
    assert.ok(hello(wrapped.stdout));
  });

  it('kubectl logs and kubectl port-forward svc/helloworld 5000 (curl localhost:5000/hello from the host)', async () => {
    const logs = await kubectl(CTX, ['logs', '-n', 'sample', 'deploy/helloworld-v1']);
    assert.match(logs, /GET \/hello 200/);
    const wrapped = await ambit(['lab', 'logs', '--cluster', CLUSTER, '-n', 'sample', 'deploy/helloworld-v2']);
    assert.equal(wrapped.code, 0, wrapped.stderr);
    assert.match(wrapped.stdout, /GET \/hello 200/);
    const pf = spawn('kubectl', ['port-forward', '--context', CTX, '-n', 'sample', 'svc/helloworld', '5000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const body = await waitFor('port-forward to answer', async () => {
        const r = await sh('curl', ['-sS', '--max-time', '3', 'localhost:5000/hello']);
        return r.code === 0 && r.stdout;
      }, 30_000, 300);
      assert.ok(hello(body), body);
    } finally {
      pf.kill();
    }
  });

  it('a container that exits is restarted by kubelet with back-off (CrashLoopBackOff)', async () => {
    const status = await waitingReason('crash', ['CrashLoopBackOff'], 60_000);
    assert.ok(status.restartCount >= 1);
    assert.equal(status.lastState.terminated.exitCode, 3);
    assert.match(await kubectl(CTX, ['logs', '-n', 'sample', 'crash', '--previous']), /crashing now/);
  });

  it('an image neither built nor cached gives ErrImagePull / ImagePullBackOff', async () => {
    const status = await waitingReason('missing', ['ErrImagePull', 'ImagePullBackOff'], 60_000);
    assert.match(status.state.waiting.message, /never-built/);
  });

  it('a failing readiness probe takes the pod out of its Service endpoints', async () => {
    await kubectl(CTX, ['apply', '-f', '-'], pod('flip', {
      containers: [{
        name: 'flip',
        image: CURL_IMAGE,
        command: ['sh', '-c', 'touch /tmp/ready; exec sleep infinity'],
        readinessProbe: { exec: { command: ['cat', '/tmp/ready'] }, periodSeconds: 1, failureThreshold: 1 },
      }],
    }));
    await kubectl(CTX, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'flip', namespace: 'sample' }, spec: { selector: { app: 'flip' }, ports: [{ port: 80 }] } }));
    const ip = await waitFor('flip to be a ready endpoint', async () => {
      const ep = await jsonOf(['-n', 'sample', 'get', 'endpoints', 'flip']);
      return ep.subsets?.[0]?.addresses?.[0]?.ip as string | undefined;
    }, 60_000, 300);
    const failed = Date.now();
    await kubectl(CTX, ['exec', '-n', 'sample', 'flip', '--', 'rm', '/tmp/ready']);
    await waitFor('flip to be out of the endpoints', async () => {
      const subset = (await jsonOf(['-n', 'sample', 'get', 'endpoints', 'flip'])).subsets?.[0];
      return !subset?.addresses?.length && subset?.notReadyAddresses?.some((a: { ip: string }) => a.ip === ip);
    }, 30_000, 300);
    numbers.push(`readiness probe failing → out of the endpoints ${secs(failed)}`);
  });

  it('ambit install --set profile=ambient is Ready on real nodes; an ambient namespace goes through ztunnel', async () => {
    const started = Date.now();
    const install = await ambit(['install', '--context', CTX, '--set', 'profile=ambient'], { timeoutMs: 300_000 });
    assert.equal(install.code, 0, install.stderr);
    numbers.push(`ambit install --set profile=ambient → Ready ${secs(started)}`);
    const ztunnels = await pods(CTX, 'istio-system', 'app=ztunnel');
    assert.deepEqual(ztunnels.map((z) => z.node).sort(), [...nodeNames].sort());
    assert.ok(ztunnels.every((z) => z.ready));

    await kubectl(CTX, ['create', 'ns', 'ambient']);
    await kubectl(CTX, ['label', 'ns', 'ambient', 'istio.io/dataplane-mode=ambient']);
    for (const selector of ['service=helloworld', 'version=v1']) await kubectl(CTX, ['apply', '-n', 'ambient', '-f', `${samples}helloworld.yaml`, '-l', selector]);
    await kubectl(CTX, ['apply', '-n', 'ambient', '-f', `${samples}curl.yaml`]);
    await rolloutStatus(CTX, 'ambient', ['helloworld-v1', 'curl']);
    const v1 = (await pods(CTX, 'ambient', 'version=v1'))[0]!;
    await pinCurl('ambient', nodeNames.find((n) => n !== v1.node)!);
    const principal = 'source_principal="spiffe://cluster.local/ns/ambient/sa/curl"';
    const answered = Date.now();
    const out = await waitFor('curl → helloworld through ztunnel (the server-side ztunnel reports the curl identity)', async () => {
      const r = await seedCurl('ambient', 'helloworld.ambient:5000/hello');
      if (r.code !== 0 || !hello(r.stdout)) return false;
      return (await ztunnelMetrics(CLUSTER, v1.node)).includes(principal) && r.stdout;
    }, 90_000, 1000);
    numbers.push(`ambient curl → helloworld over HBONE ${secs(answered)} after the pods were Ready`);
    assert.match(out, /Hello version: v1/);
  });

  it('measures kubelet, containerd and shim memory per node, and the agent', () => {
    for (const name of nodeNames) {
      const stateDir = realNodeStateDir(name);
      const record = readNodeRecord(stateDir)!;
      const pids = nodePids({ name, stateDir });
      const shims = pids.filter((p) => comm(p) === 'containerd-shim');
      const containers = pids.filter((p) => p !== record.kubeletPid && p !== record.containerdPid && !shims.includes(p));
      const sum = (list: number[]) => list.reduce((n, p) => n + rssMiB(p), 0);
      const total = rssMiB(record.kubeletPid) + rssMiB(record.containerdPid) + sum(shims);
      numbers.push(
        `RSS ${name}: kubelet ${rssMiB(record.kubeletPid)} MiB, containerd ${rssMiB(record.containerdPid)} MiB, ${shims.length} shims ${sum(shims).toFixed(0)} MiB ` +
          `(${(sum(shims) / Math.max(1, shims.length)).toFixed(1)} each): node overhead ${total.toFixed(0)} MiB; its ${containers.length} container processes (pause included) ${sum(containers).toFixed(0)} MiB`,
      );
    }
    const agent = readState()!.processes.find((p) => p.name === `${CLUSTER}/agent`)!;
    numbers.push(`RSS lab agent of ${CLUSTER} (DNS, Services, LoadBalancers; no pods) ${rssMiB(agent.pid)} MiB`);
  });

  it('lab up repairs a node whose kubelet and containerd were killed (-9): its pods run again and answer', async () => {
    const victim = nodeNames[1]!;
    const record = readNodeRecord(realNodeStateDir(victim))!;
    const containerIds = async () => {
      const list = (await jsonOf(['-n', 'sample', 'get', 'pods'])).items as Array<{ metadata: { name: string }; spec: { nodeName: string }; status: { containerStatuses?: Array<{ containerID?: string; ready: boolean }> } }>;
      return new Map(list.filter((p) => p.spec.nodeName === victim && /^(helloworld|curl)-/.test(p.metadata.name)).map((p) => [p.metadata.name, p.status.containerStatuses?.[0]]));
    };
    const before = await containerIds();
    assert.ok(before.size > 0, `no sample pod on ${victim}`);
    process.kill(record.kubeletPid, 'SIGKILL');
    process.kill(record.containerdPid, 'SIGKILL');
    const started = Date.now();
    const up = await ambit(['lab', 'up', '-f', TOPOLOGY], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stderr, new RegExp(`node ${victim}: kubelet \\+ containerd started`));
    assert.doesNotMatch(up.stderr, new RegExp(`node ${nodeNames[0]}: kubelet`), 'the healthy node is left alone');
    await waitFor(`the pods of ${victim} to run in new containers`, async () => {
      const now = await containerIds();
      return [...before].every(([name, old]) => now.get(name)?.ready && now.get(name)?.containerID !== old?.containerID);
    }, 120_000, 500);
    numbers.push(`kill -9 kubelet + containerd → lab up → ${before.size} pod(s) of ${victim} Ready in new containers ${secs(started)}`);
    const seen = new Set<string>();
    await waitFor('both versions to answer again', async () => {
      const m = hello((await seedCurl()).stdout);
      if (m) seen.add(m[1]!);
      return seen.size === 2;
    }, 60_000, 200);
  });

  it('lab down leaves nothing (containerd of one node killed -9 first): processes, mounts, cgroups, CNI state, network namespaces', async () => {
    const pids = [...readState()!.processes.map((p) => p.pid), ...allRealNodePids()];
    assert.ok(pids.length > 10);
    process.kill(readNodeRecord(realNodeStateDir(nodeNames[0]!))!.containerdPid, 'SIGKILL');
    const stateDirs = nodeNames.map((n) => realNodeStateDir(n));
    const started = Date.now();
    const down = await ambit(['lab', 'down']);
    downDone = true;
    assert.equal(down.code, 0, down.stderr);
    numbers.push(`lab down (${pids.length} processes) ${secs(started)}`);
    assert.deepEqual(await labLeftovers(pids), []);
    assert.deepEqual(pids.filter((p) => existsSync(`/proc/${p}`)).map((p) => `${p} ${comm(p)}`), [], 'no process left, not even a zombie');
    assert.deepEqual(nodeNames.flatMap((n) => cgroupExists(n)), [], 'no cgroup of a node left');
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    assert.ok(stateDirs.every((d) => !mounts.includes(d)) && !mounts.includes('ambit-node-run'), 'no mount of a node on the host');
    assert.ok(!existsSync('/var/log/pods') || readdirSync('/var/log/pods').length === 0, 'no /var/log/pods entries on the host');
    assert.ok(!existsSync('/var/lib/cni') || readdirSync('/var/lib/cni').length === 0, 'no CNI state on the host');
    const netns = (await sh('ip', ['netns', 'list'])).stdout;
    assert.ok(!/ambit-|cni-/.test(netns), `network namespaces left: ${netns}`);
  });
});
