// One real node (kubelet 1.20 + containerd from src/lab/node) joins the one-cluster lab: Ready, a pod from an image
// built here runs with a probe, kubectl exec/logs/port-forward work, its address is routed on the lab network, an
// unknown image gives ErrImagePull, and stopping the node (after kill -9 of kubelet and containerd) leaves nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { kubectl, repoRoot, sh, waitFor } from './helpers/lab.js';
import { freshLab, labDownChecked } from './helpers/multicluster.js';
import { clusterFiles } from '../src/lab/controlplane.js';
import { attachNode, detachNode } from '../src/lab/fabric.js';
import { netnsNameForNode, CLUSTER_DOMAIN, type NodePlan } from '../src/lab/plan.js';
import { labDir, readState } from '../src/lab/state.js';
import { buildImageArchive, importImageArchive, issueNodeCredentials, nodeLeftovers, nodePids, startRealNode, stopRealNode, type NodeRecord, type RealNodeSpec } from '../src/lab/node/index.js';

const CTX = 'lab-cluster1';
const NODE = 'cluster1-real1';
const IMAGE = 'ambit.local/tiny:1';
const numbers: string[] = [];
let labPids: number[] = [];
let node: NodePlan;
let spec: RealNodeSpec;
let record: NodeRecord | undefined;
let work: string;

const rssMiB = (pid: number) => {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line!.split(/\s+/)[1]) / 1024;
};
const comm = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};
const jsonOf = async (args: string[]) => JSON.parse(await kubectl(CTX, [...args, '-o', 'json'])) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function podManifest(name: string, image: string, probe: boolean): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels: { app: name } },
    spec: {
      nodeName: NODE,
      terminationGracePeriodSeconds: 2,
      containers: [
        {
          name: 'tiny',
          image,
          args: ['serve', '8080'],
          ports: [{ containerPort: 8080 }],
          ...(probe ? { readinessProbe: { httpGet: { path: '/ready', port: 8080 }, periodSeconds: 1, initialDelaySeconds: 0 } } : {}),
        },
      ],
    },
  });
}

describe('lab: a real kubelet + containerd node', { timeout: 900_000 }, () => {
  before(async () => {
    labPids = await freshLab('topologies/one-cluster.yaml');
    const state = readState()!;
    const cluster = state.plan.clusters[0]!;
    // One more node on the cluster's network, planned as the lab plans its nodes (the k-th node of the network).
    const k = state.plan.clusters.filter((c) => c.network === cluster.network).flatMap((c) => c.nodes).length;
    node = {
      name: NODE,
      cluster: cluster.name,
      network: cluster.network,
      region: 'region1',
      zone: 'zone3',
      netns: netnsNameForNode(cluster.name, NODE),
      ip: `198.18.${16 + state.plan.networks.findIndex((n) => n.name === cluster.network)}.${10 + k}`,
      podCidr: `198.19.${k}.0/24`,
      routerPort: `node${k}`,
    };
    await attachNode(state.plan, node);
    const stateDir = join(labDir(), 'real-nodes', NODE);
    const creds = await issueNodeCredentials({ apiServerUrl: cluster.apiServerUrl, files: clusterFiles(cluster.name) }, node, join(labDir(), 'real-nodes', `${NODE}-pki`));
    spec = {
      name: NODE,
      netns: node.netns,
      ip: node.ip,
      podCidr: node.podCidr,
      labels: {
        'topology.kubernetes.io/region': node.region,
        'topology.kubernetes.io/zone': node.zone,
        'topology.istio.io/network': node.network,
        'lab.ambit.dev/cluster': node.cluster,
      },
      apiServerUrl: cluster.apiServerUrl,
      ...creds,
      clusterDns: [cluster.dnsServiceIp],
      clusterDomain: CLUSTER_DOMAIN,
      stateDir,
    };
    work = mkdtempSync(join(tmpdir(), 'ambit-real-node-'));
  });

  after(async () => {
    if (spec) await stopRealNode(spec).catch((err: unknown) => console.log(`# stop failed: ${String(err)}`));
    if (node) await detachNode(readState()!.plan, node);
    await sh('kubectl', ['--context', CTX, 'delete', 'node', NODE, '--ignore-not-found']);
    if (work) rmSync(work, { recursive: true, force: true });
    await labDownChecked(labPids, numbers);
  });

  it('registers a Node that kubelet makes Ready', async () => {
    const started = Date.now();
    record = await startRealNode(spec);
    const ready = await waitFor(
      'the real node to be Ready',
      async () => {
        const n = await jsonOf(['get', 'node', NODE]);
        return n.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True') && n;
      },
      120_000,
      200,
    );
    const readyAt = Date.now();
    const registered = Date.parse(ready.metadata.creationTimestamp as string);
    numbers.push(`real node Ready ${((readyAt - started) / 1000).toFixed(1)} s after start (kubelet started ${((record.startedKubeletAt - started) / 1000).toFixed(1)} s, Node registered ~${Math.max(0, (registered - started) / 1000).toFixed(0)} s)`);
    if (process.env.AMBIT_DEBUG_NODE) console.log(readFileSync(join(spec.stateDir, 'logs', 'kubelet.log'), 'utf8').split('\n').filter((l) => /Ready|ready|network|Network|register/.test(l)).slice(0, 40).join('\n'));
    assert.equal(ready.metadata.labels['topology.kubernetes.io/zone'], 'zone3');
    assert.equal(ready.metadata.labels['topology.istio.io/network'], node.network);
    assert.ok(ready.status.addresses.some((a: { type: string; address: string }) => a.type === 'InternalIP' && a.address === node.ip));
    assert.match(ready.status.nodeInfo.kubeletVersion, /^v1\.20\./);
    assert.match(ready.status.nodeInfo.containerRuntimeVersion, /^containerd:\/\//);
    // kubelet's node lease controller renews its Lease on its own schedule: it may come a moment after Ready.
    const lease = await waitFor('the node Lease', () => jsonOf(['-n', 'kube-node-lease', 'get', 'lease', NODE]), 30_000, 300);
    assert.equal(lease.spec.holderIdentity, NODE);
  });

  it('runs a pod from an image built here: Running, Ready by its probe, address from the node pod CIDR', async () => {
    const binary = join(work, 'tiny');
    const cc = await sh('gcc', ['-Os', '-Wall', '-Werror', '-static', '-o', binary, join(repoRoot, 'test/fixtures/tiny-server.c')]);
    assert.equal(cc.code, 0, cc.stderr);
    const archive = join(work, 'tiny.oci.tar');
    writeFileSync(archive, buildImageArchive({ name: IMAGE, files: [{ path: 'tiny', content: readFileSync(binary), mode: 0o755 }], entrypoint: ['/tiny'] }));
    await importImageArchive(spec, archive);
    const created = Date.now();
    await kubectl(CTX, ['apply', '-f', '-'], podManifest('tiny', IMAGE, true));
    const pod = await waitFor(
      'pod tiny to be Ready',
      async () => {
        const p = await jsonOf(['-n', 'default', 'get', 'pod', 'tiny']);
        return p.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True') && p;
      },
      120_000,
      200,
    );
    numbers.push(`pod created → Ready ${((Date.now() - created) / 1000).toFixed(1)} s (readiness probe httpGet, period 1 s)`);
    assert.equal(pod.status.phase, 'Running');
    assert.match(pod.status.podIP, new RegExp(`^${node.podCidr.split('.').slice(0, 3).join('\\.')}\\.([2-9]|[1-9]\\d|1\\d\\d|2[0-4]\\d|25[0-4])$`));
    assert.equal(pod.status.hostIP, node.ip);
  });

  it('kubectl exec, logs and port-forward work; the pod is reachable from another lab node', async () => {
    const podIp = (await kubectl(CTX, ['-n', 'default', 'get', 'pod', 'tiny', '-o', 'jsonpath={.status.podIP}'])).trim();
    const exec = await kubectl(CTX, ['-n', 'default', 'exec', 'tiny', '--', '/tiny', 'say', 'hello', 'from', 'exec']);
    assert.equal(exec.trim(), 'hello from exec');
    const peer = readState()!.plan.clusters[0]!.nodes[0]!;
    const curl = await sh('ip', ['netns', 'exec', peer.netns, 'curl', '-sS', '--max-time', '5', `http://${podIp}:8080/from-peer`]);
    assert.equal(curl.code, 0, curl.stderr);
    assert.equal(curl.stdout.trim(), 'hello from tiny');
    const logs = await kubectl(CTX, ['-n', 'default', 'logs', 'tiny']);
    assert.match(logs, /tiny serving on :8080 as tiny/);
    assert.match(logs, new RegExp(`request from ${peer.ip.replace(/\./g, '\\.')}: GET /from-peer HTTP/1.1`));
    assert.match(logs, /GET \/ready HTTP/);
    // port-forward: kube-apiserver → kubelet → containerd's streaming server → the pod's netns.
    const pf = spawn('kubectl', ['--context', CTX, '-n', 'default', 'port-forward', 'pod/tiny', '18089:8080'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const body = await waitFor('port-forward to answer', async () => {
        const r = await sh('curl', ['-sS', '--max-time', '3', 'http://127.0.0.1:18089/pf']);
        return r.code === 0 && r.stdout;
      }, 30_000, 300);
      assert.equal(body.trim(), 'hello from tiny');
    } finally {
      pf.kill();
    }
  });

  it('an image that is not on the node gives ErrImagePull / ImagePullBackOff', async () => {
    await kubectl(CTX, ['apply', '-f', '-'], podManifest('missing', 'ambit.local/does-not-exist:1', false));
    const reason = await waitFor(
      'pod missing to fail pulling',
      async () => {
        const p = await jsonOf(['-n', 'default', 'get', 'pod', 'missing']);
        const r = p.status?.containerStatuses?.[0]?.state?.waiting?.reason as string | undefined;
        return (r === 'ErrImagePull' || r === 'ImagePullBackOff') && r;
      },
      90_000,
      300,
    );
    assert.ok(reason);
  });

  it('measures kubelet, containerd and shim memory', () => {
    const pids = nodePids(spec);
    const shims = pids.filter((p) => comm(p) === 'containerd-shim');
    assert.ok(shims.length >= 2, `expected a shim per pod, found ${shims.length}`);
    numbers.push(`RSS kubelet ${rssMiB(record!.kubeletPid).toFixed(0)} MiB, containerd ${rssMiB(record!.containerdPid).toFixed(0)} MiB, shims ${shims.map((p) => rssMiB(p).toFixed(1)).join(' / ')} MiB (${shims.length} pods)`);
  });

  it('stops the node after kill -9 of kubelet and containerd and leaves nothing', async () => {
    const before = nodePids(spec);
    const shims = before.filter((p) => comm(p) === 'containerd-shim');
    process.kill(record!.kubeletPid, 'SIGKILL');
    process.kill(record!.containerdPid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(shims.every((p) => existsSync(`/proc/${p}`)), 'shims outlive containerd');
    const stopped = Date.now();
    await stopRealNode(spec);
    numbers.push(`stop (${before.length} processes: kubelet, containerd, shims, containers) ${((Date.now() - stopped) / 1000).toFixed(1)} s`);
    assert.deepEqual(nodeLeftovers(spec), []);
    const stat = (pid: number) => {
      try {
        const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return `${pid} ${comm(pid)} state ${fields[0]} ppid ${fields[1]}`;
      } catch {
        return undefined;
      }
    };
    assert.deepEqual(before.map(stat).filter(Boolean), [], 'no process of the node is left');
    assert.ok(!existsSync('/var/log/pods') || readdirSync('/var/log/pods').length === 0, 'no /var/log/pods entries on the host');
    assert.ok(!existsSync('/var/lib/cni') || readdirSync('/var/lib/cni').length === 0, 'no CNI state on the host');
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(spec.stateDir) && !mounts.includes('ambit-node-run'), 'no mount of the node on the host');
    await detachNode(readState()!.plan, node);
    const netns = (await sh('ip', ['netns', 'list'])).stdout;
    assert.ok(!netns.includes(node.netns), `netns ${node.netns} is gone`);
    assert.ok(!/cni-/.test(netns), 'no CNI network namespace on the host');
  });
});
