import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ambit, kubectl, labExec, labLeftovers, rolloutStatus, samples, waitFor } from './helpers/lab.js';
import { readState } from '../src/lab/state.js';

/**
 * topologies/three-clusters-mixed.yaml: cluster1 and cluster2 share network-east, cluster3 is
 * alone on network-west. Pod CIDRs of the two networks overlap by design.
 */
const clusters = ['cluster1', 'cluster2', 'cluster3'] as const;
const ctx = (c: string) => `lab-${c}`;
let labPids: number[] = [];

interface Backend {
  podName: string;
  podIp: string;
  nodeIp: string;
  lbIp: string;
}
const backends = new Map<string, Backend>();

async function curlFrom(cluster: string, url: string) {
  return labExec(cluster, 'sample', 'deploy/curl', ['curl', '-sS', '--max-time', '3', url]);
}

describe('lab: networks (three clusters, two networks)', { timeout: 600_000 }, () => {
  before(async () => {
    if (readState()) await ambit(['lab', 'down']);
    const up = await ambit(['lab', 'up', '-f', 'topologies/three-clusters-mixed.yaml'], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    labPids = readState()!.processes.map((p) => p.pid);
    await Promise.all(
      clusters.map(async (c, i) => {
        const version = i === 0 ? 'v1' : 'v2';
        await kubectl(ctx(c), ['create', 'ns', 'sample']);
        await kubectl(ctx(c), ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`, '-l', `version=${version}`]);
        await kubectl(ctx(c), ['apply', '-n', 'sample', '-f', `${samples}curl.yaml`]);
        await kubectl(ctx(c), ['expose', 'deploy', `helloworld-${version}`, '-n', 'sample', '--name', 'hello-lb', '--type', 'LoadBalancer', '--port', '5000']);
        await rolloutStatus(ctx(c), 'sample', [`helloworld-${version}`, 'curl']);
        const pod = JSON.parse(await kubectl(ctx(c), ['get', 'pods', '-n', 'sample', '-l', `version=${version}`, '-o', 'json'])) as {
          items: Array<{ metadata: { name: string }; status: { podIP: string; hostIP: string } }>;
        };
        const lbIp = await waitFor(`LoadBalancer address in ${c}`, async () =>
          (await kubectl(ctx(c), ['get', 'svc', '-n', 'sample', 'hello-lb', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}'])).trim(),
        );
        backends.set(c, { podName: pod.items[0]!.metadata.name, podIp: pod.items[0]!.status.podIP, nodeIp: pod.items[0]!.status.hostIP, lbIp });
      }),
    );
  });

  after(async () => {
    // A crashed lab must come down too: kill two of its processes hard first.
    const state = readState();
    for (const name of ['cluster3/agent', 'cluster2/kube-apiserver']) {
      const pid = state?.processes.find((p) => p.name === name)?.pid;
      if (pid) process.kill(pid, 'SIGKILL');
    }
    const down = await ambit(['lab', 'down']);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await labLeftovers(labPids), []);
  });

  it('same network: pod IPs route across clusters (cluster1 <-> cluster2)', async () => {
    const to2 = await curlFrom('cluster1', `http://${backends.get('cluster2')!.podIp}:5000/hello`);
    assert.match(to2.stdout, new RegExp(`instance: ${backends.get('cluster2')!.podName}`), to2.stderr);
    const to1 = await curlFrom('cluster2', `http://${backends.get('cluster1')!.podIp}:5000/hello`);
    assert.match(to1.stdout, new RegExp(`instance: ${backends.get('cluster1')!.podName}`), to1.stderr);
  });

  it('different networks: a pod IP of cluster3 is not reachable from cluster1, nor its node IP', async () => {
    const remote = backends.get('cluster3')!;
    // Pod CIDRs overlap across networks: the same address may exist in cluster1, so the proof is
    // that cluster3's pod never answers.
    const toPod = await curlFrom('cluster1', `http://${remote.podIp}:5000/hello`);
    assert.doesNotMatch(toPod.stdout, new RegExp(remote.podName));
    const toNode = await curlFrom('cluster1', `http://${remote.nodeIp}:15000/`);
    assert.notEqual(toNode.code, 0);
    assert.match(toNode.stderr, /timed out|Couldn't connect|No route/);
    const back = await curlFrom('cluster3', `http://${backends.get('cluster1')!.podIp}:5000/hello`);
    assert.doesNotMatch(back.stdout, new RegExp(backends.get('cluster1')!.podName));
  });

  it('different networks: LoadBalancer addresses are reachable both ways', async () => {
    const to3 = await curlFrom('cluster1', `http://${backends.get('cluster3')!.lbIp}:5000/hello`);
    assert.match(to3.stdout, new RegExp(`instance: ${backends.get('cluster3')!.podName}`), to3.stderr);
    const to1 = await curlFrom('cluster3', `http://${backends.get('cluster1')!.lbIp}:5000/hello`);
    assert.match(to1.stdout, new RegExp(`instance: ${backends.get('cluster1')!.podName}`), to1.stderr);
  });

  it('each cluster has its own ClusterIP range and cluster DNS', async () => {
    const ips = await Promise.all(clusters.map(async (c) => (await kubectl(ctx(c), ['get', 'svc', '-n', 'sample', 'curl', '-o', 'jsonpath={.spec.clusterIP}'])).trim()));
    assert.deepEqual(ips.map((ip) => ip.split('.')[2]!.length > 0), [true, true, true]);
    assert.equal(new Set(ips.map((ip) => Math.floor(Number(ip.split('.')[2]) / 8))).size, 3);
    for (const c of clusters) {
      const r = await labExec(c, 'sample', 'deploy/curl', ['dig', '+short', 'curl.sample.svc.cluster.local']);
      assert.equal(r.stdout.trim(), ips[clusters.indexOf(c)]);
    }
  });

  it('lab status lists every cluster with its network and Ready nodes', async () => {
    const r = await ambit(['lab', 'status']);
    for (const c of clusters) assert.match(r.stdout, new RegExp(`cluster ${c}\\s+network=network-(east|west)`));
    assert.equal((r.stdout.match(/ Ready/g) ?? []).length, 3);
  });
});
