import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ambit, kubectl, labExec, labLeftovers, rolloutStatus, samples, sh, waitFor } from './helpers/lab.js';
import { readState } from '../src/lab/state.js';

const CTX = 'lab-cluster1';
let labPids: number[] = [];

describe('lab: one cluster, two nodes', { timeout: 600_000 }, () => {
  before(async () => {
    if (readState()) {
      console.log('# a lab was already up; bringing it down (the tests need the lab address space)');
      await ambit(['lab', 'down']);
    }
    const up = await ambit(['lab', 'up', '-f', 'topologies/one-cluster.yaml'], { timeoutMs: 300_000 });
    assert.equal(up.code, 0, up.stderr);
    labPids = readState()!.processes.map((p) => p.pid);
  });

  after(async () => {
    const pids = [...labPids, ...(readState()?.processes.map((p) => p.pid) ?? [])];
    const down = await ambit(['lab', 'down']);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(await labLeftovers(pids), [], 'lab down must leave nothing behind');
  });

  it('a second lab up is idempotent: same processes, nodes still Ready', async () => {
    const again = await ambit(['lab', 'up', '-f', 'topologies/one-cluster.yaml']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /already exists/);
    assert.deepEqual(readState()!.processes.map((p) => p.pid).sort(), [...labPids].sort());
    const nodes = await kubectl(CTX, ['get', 'nodes', '-o', 'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {.metadata.labels.topology\\.kubernetes\\.io/zone}{"\\n"}{end}']);
    assert.deepEqual(nodes.trim().split('\n').sort(), ['cluster1-node1=True zone1', 'cluster1-node2=True zone2']);
  });

  it('a different topology is refused while a lab is up', async () => {
    const other = await ambit(['lab', 'up', '-f', 'topologies/two-networks.yaml']);
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /already up with a different topology; run `ambit lab down` first/);
  });

  it("seed 000: Istio's unmodified helloworld and curl samples answer from both versions", async () => {
    await kubectl(CTX, ['create', 'ns', 'sample']);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`, '-l', 'service=helloworld']);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`, '-l', 'version=v1']);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}helloworld.yaml`, '-l', 'version=v2']);
    await kubectl(CTX, ['apply', '-n', 'sample', '-f', `${samples}curl.yaml`]);
    await rolloutStatus(CTX, 'sample', ['helloworld-v1', 'helloworld-v2', 'curl']);
    const seen = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const r = await labExec('cluster1', 'sample', 'deploy/curl', ['curl', '-sS', '--max-time', '5', 'helloworld.sample:5000/hello']);
      assert.equal(r.code, 0, r.stderr);
      const m = /^Hello version: (v\d), instance: (helloworld-v\d-[a-z0-9]+-[a-z0-9]+)\n$/.exec(r.stdout);
      assert.ok(m, `unexpected answer ${JSON.stringify(r.stdout)}`);
      seen.set(m[1]!, (seen.get(m[1]!) ?? 0) + 1);
    }
    assert.deepEqual([...seen.keys()].sort(), ['v1', 'v2']);
    const nodes = await kubectl(CTX, ['get', 'pods', '-n', 'sample', '-o', 'jsonpath={.items[*].spec.nodeName}']);
    assert.ok(new Set(nodes.split(' ')).size >= 1);
  });

  it('cluster DNS: service names, search paths, pod names, NXDOMAIN', async () => {
    const short = await labExec('cluster1', 'sample', 'deploy/curl', ['dig', '+short', '+search', 'helloworld']);
    const clusterIp = (await kubectl(CTX, ['get', 'svc', '-n', 'sample', 'helloworld', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
    assert.equal(short.stdout.trim(), clusterIp);
    const fqdn = await labExec('cluster1', 'sample', 'deploy/curl', ['dig', '+short', 'kubernetes.default.svc.cluster.local']);
    assert.match(fqdn.stdout.trim(), /^198\.19\.128\.1$/);
    const missing = await labExec('cluster1', 'sample', 'deploy/curl', ['dig', 'nosuch.sample.svc.cluster.local']);
    assert.match(missing.stdout, /status: NXDOMAIN/);
  });

  it('a LoadBalancer Service gets an address in status that answers from the host and from pods', async () => {
    await kubectl(CTX, ['expose', 'deploy', 'helloworld-v1', '-n', 'sample', '--name', 'hello-lb', '--type', 'LoadBalancer', '--port', '80', '--target-port', '5000']);
    const ip = await waitFor('a LoadBalancer address', async () =>
      (await kubectl(CTX, ['get', 'svc', '-n', 'sample', 'hello-lb', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}'])).trim(),
    );
    assert.match(ip, /^198\.18\.64\.\d+$/);
    const fromHost = await waitFor('the LoadBalancer to answer', async () => {
      const r = await sh('curl', ['-sS', '--max-time', '3', `http://${ip}/hello`]);
      return r.code === 0 && r.stdout;
    });
    assert.match(fromHost, /Hello version: v1/);
    const fromPod = await labExec('cluster1', 'sample', 'deploy/curl', ['curl', '-sS', '--max-time', '5', `http://${ip}/hello`]);
    assert.match(fromPod.stdout, /Hello version: v1/, fromPod.stderr);
  });

  it('in-cluster clients authenticate with the projected service-account token', async () => {
    const script = 'curl -sS --max-time 5 --cacert /var/run/secrets/kubernetes.io/serviceaccount/ca.crt -H "Authorization: Bearer $(cat /var/run/secrets/kubernetes.io/serviceaccount/token)" https://kubernetes.default.svc/api; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace';
    const r = await labExec('cluster1', 'sample', 'deploy/curl', ['sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /"kind": "APIVersions"/);
    assert.match(r.stdout, /sample$/);
  });

  it('hostNetwork pods run in the node namespace with the node address; env and args are honoured', async () => {
    await kubectl(CTX, ['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'hostnet', namespace: 'default' },
      spec: {
        hostNetwork: true,
        nodeName: 'cluster1-node2',
        containers: [{ name: 'main', image: 'curlimages/curl', command: ['/bin/sh', '-c'], args: ['echo "greeting=$GREETING node=$NODE"; exec sleep infinity'], env: [{ name: 'GREETING', value: 'hi' }, { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }] }],
      },
    }));
    const ip = await waitFor('hostNetwork pod running', async () => {
      const out = await kubectl(CTX, ['get', 'pod', 'hostnet', '-o', 'jsonpath={.status.phase} {.status.podIP}']);
      return out.startsWith('Running ') && out.split(' ')[1];
    });
    assert.equal(ip, '198.18.16.11');
    const logs = await waitFor('hostnet output', async () => (await ambit(['lab', 'logs', '--cluster', 'cluster1', 'hostnet'])).stdout.trim());
    assert.equal(logs, 'greeting=hi node=cluster1-node2');
    const addr = await labExec('cluster1', 'default', 'hostnet', ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
    assert.match(addr.stdout, /198\.18\.16\.11\/24/);
    // ClusterIPs answer from the node namespace too (kube-proxy's output path). A hostNetwork pod
    // with the default dnsPolicy uses the host's resolver, as in Kubernetes, so use the address.
    const clusterIp = (await kubectl(CTX, ['get', 'svc', '-n', 'sample', 'helloworld', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
    const viaService = await labExec('cluster1', 'default', 'hostnet', ['curl', '-sS', '--max-time', '5', `http://${clusterIp}:5000/hello`]);
    assert.match(viaService.stdout, /Hello version: v[12]/, viaService.stderr);
  });

  it('projected service-account tokens carry the requested audience and are bound to the pod', async () => {
    await kubectl(CTX, ['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'projected', namespace: 'sample' },
      spec: {
        serviceAccountName: 'curl',
        containers: [{ name: 'main', image: 'curlimages/curl', command: ['sleep', 'infinity'], volumeMounts: [{ name: 'istio-token', mountPath: '/var/run/secrets/tokens', readOnly: true }] }],
        volumes: [{ name: 'istio-token', projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] } }],
      },
    }));
    await kubectl(CTX, ['wait', '-n', 'sample', 'pod/projected', '--for=condition=Ready', '--timeout=60s']);
    const token = (await labExec('cluster1', 'sample', 'projected', ['cat', '/var/run/secrets/tokens/istio-token'])).stdout;
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { aud: string[]; sub: string; 'kubernetes.io': { pod: { name: string } } };
    assert.deepEqual(claims.aud, ['istio-ca']);
    assert.equal(claims.sub, 'system:serviceaccount:sample:curl');
    assert.equal(claims['kubernetes.io'].pod.name, 'projected');
    const readOnly = await labExec('cluster1', 'sample', 'projected', ['sh', '-c', 'echo x > /var/run/secrets/tokens/istio-token']);
    assert.notEqual(readOnly.code, 0, 'a readOnly mount must not be writable');
  });

  it('an unknown image fails the pod with a reason naming the image and the known ones', async () => {
    await kubectl(CTX, ['run', 'unknown-image', '--image', 'quay.io/acme/widget:2']);
    const state = await waitFor('ErrImagePull', async () => {
      const out = await kubectl(CTX, ['get', 'pod', 'unknown-image', '-o', 'jsonpath={.status.containerStatuses[0].state.waiting}']);
      return out.includes('ErrImagePull') && out;
    });
    assert.match(state, /image \\?"quay\.io\/acme\/widget:2\\?" is not known to the ambit lab; known images: .*examples-helloworld-v1.*curlimages\/curl/);
  });

  it('a pod with no matching node stays Pending as Unschedulable', async () => {
    await kubectl(CTX, ['run', 'nowhere', '--image', 'curlimages/curl', '--overrides', '{"spec":{"nodeSelector":{"topology.kubernetes.io/zone":"zone9"}}}', '--command', '--', 'sleep', 'infinity']);
    const condition = await waitFor('PodScheduled=False', async () => {
      const out = await kubectl(CTX, ['get', 'pod', 'nowhere', '-o', 'jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}: {.status.conditions[?(@.type=="PodScheduled")].message}']);
      return out.startsWith('Unschedulable') && out;
    });
    assert.match(condition, /didn't match/);
  });

  it("deleting a namespace removes its pods' network namespaces", async () => {
    const uids = (await kubectl(CTX, ['get', 'pods', '-n', 'sample', '-o', 'jsonpath={.items[*].metadata.uid}'])).trim().split(' ');
    assert.ok(uids.length >= 3);
    const podNetns = uids.map((uid) => `ambit-pod-${uid.replace(/-/g, '').slice(0, 12)}`);
    const before = (await sh('ip', ['netns', 'list'])).stdout;
    for (const ns of podNetns) assert.ok(before.includes(ns), `${ns} should exist before`);
    await kubectl(CTX, ['delete', 'ns', 'sample', '--wait=true', '--timeout=120s']);
    // Pods with a zero grace period leave the API at once; the agent cleans up right after.
    await waitFor('pod network namespaces to be removed', async () => {
      const list = (await sh('ip', ['netns', 'list'])).stdout;
      return podNetns.every((ns) => !list.includes(ns));
    }, 30_000);
  });
});

describe('lab: bad inputs', () => {
  it('lab up without root is refused with a clear message', async () => {
    const r = await sh('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, 'bin/ambit.js', 'lab', 'up', '-f', 'topologies/one-cluster.yaml']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /must run as root/);
  });
  it('a malformed topology is refused naming the field, and nothing is created', async () => {
    const r = await ambit(['lab', 'up', '-f', '-'], { input: 'clusters:\n  - name: c1\n    network: n1\n    nodes: [{region: us-east, zone: "bad zone"}]\n' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /clusters\[0\]\.nodes\[0\]\.zone/);
    const dup = await ambit(['lab', 'up', '-f', '-'], { input: 'clusters: [{name: c1, network: n1}, {name: c1, network: n1}]\n' });
    assert.match(dup.stderr, /duplicate cluster name "c1"/);
    assert.equal((await sh('ip', ['netns', 'list'])).stdout.includes('ambit-'), false);
  });
  it('bad flags and commands on a stopped lab say what is wrong', async () => {
    const timeout = await ambit(['lab', 'up', '-f', 'topologies/one-cluster.yaml', '--timeout', 'soon']);
    assert.match(timeout.stderr, /--timeout: "soon" is not a positive number/);
    const exec = await ambit(['lab', 'exec', '--cluster', 'cluster1', 'x', '--', 'true']);
    assert.match(exec.stderr, /no lab is up/);
  });
});
