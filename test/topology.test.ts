import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadTopology, parseTopology, TopologyError } from '../src/lab/topology.js';
import { planLab } from '../src/lab/plan.js';
import { repositoryOf, resolveImage, UnknownImageError } from '../src/lab/agent/images.js';

const problems = (text: string) => {
  try {
    parseTopology(text, 't.yaml');
  } catch (err) {
    assert.ok(err instanceof TopologyError);
    return err.problems.join('\n');
  }
  assert.fail('expected a TopologyError');
};

describe('topology', () => {
  it('loads every shipped example', () => {
    for (const name of ['one-cluster', 'one-cluster-kubelet', 'two-networks', 'three-clusters-mixed']) {
      const topology = loadTopology(fileURLToPath(new URL(`../topologies/${name}.yaml`, import.meta.url)));
      assert.ok(topology.clusters.length >= 1);
    }
  });
  it('names the field of every error', () => {
    assert.match(problems('clusters: [{name: Cluster_1, network: n1}]'), /clusters\[0\]\.name: must be a DNS label/);
    assert.match(problems('clusters: [{name: c1}]'), /clusters\[0\]\.network/);
    assert.match(problems('clusters: [{name: c1, network: n1, nodes: [{zone: 1}]}]'), /clusters\[0\]\.nodes\[0\]\.zone/);
    assert.match(problems('clusters: [{name: c1, network: n1, colour: red}]'), /clusters\[0\].*colour/);
    assert.match(problems('clusters: []'), /at least one cluster/);
    assert.match(problems('meshID: m\n'), /clusters/);
  });
  it('takes nodeRuntime from the cluster, else the topology, else agent, and names the field of a bad value', () => {
    const runtimes = (text: string) => parseTopology(text).clusters.map((c) => c.nodeRuntime);
    assert.deepEqual(runtimes('clusters: [{name: c1, network: n1}]'), ['agent']);
    assert.deepEqual(runtimes('nodeRuntime: kubelet\nclusters: [{name: c1, network: n1}, {name: c2, network: n1, nodeRuntime: agent}]'), ['kubelet', 'agent']);
    assert.deepEqual(runtimes('clusters: [{name: c1, network: n1, nodeRuntime: kubelet}, {name: c2, network: n1}]'), ['kubelet', 'agent']);
    assert.equal(planLab(parseTopology('clusters: [{name: c1, network: n1, nodeRuntime: kubelet}]')).clusters[0]!.nodeRuntime, 'kubelet');
    assert.match(problems('nodeRuntime: docker\nclusters: [{name: c1, network: n1}]'), /^nodeRuntime: must be one of: agent, kubelet$/m);
    assert.match(problems('clusters: [{name: c1, network: n1, nodeRuntime: true}]'), /^clusters\[0\]\.nodeRuntime: must be one of: agent, kubelet$/m);
  });
  it('rejects malformed YAML and non-mappings', () => {
    assert.match(problems('clusters: [name: c1'), /not valid YAML/);
    assert.match(problems('- a\n- b\n'), /must be a mapping/);
  });
  it('rejects duplicate cluster and node names', () => {
    assert.match(problems('clusters: [{name: c1, network: n1}, {name: c1, network: n2}]'), /clusters\[1\]\.name: duplicate cluster name "c1" \(also clusters\[0\]\)/);
    assert.match(problems('clusters: [{name: c1, network: n1, nodes: [{name: a}, {name: a}]}]'), /nodes\[1\]\.name: duplicate node name "a"/);
  });
  it('reports a missing file by name', () => {
    assert.throws(() => loadTopology('/nonexistent/topo.yaml'), /\/nonexistent\/topo\.yaml[\s\S]*ENOENT/);
  });
});

describe('address plan', () => {
  const plan = planLab(parseTopology(`
clusters:
  - {name: c1, network: east, nodes: [{}, {}]}
  - {name: c2, network: east}
  - {name: c3, network: west}
`));
  it('keeps node and pod addresses unique within a network and reuses pod CIDRs across networks', () => {
    const [c1, c2, c3] = plan.clusters;
    assert.deepEqual(c1!.nodes.map((n) => n.podCidr), ['198.19.0.0/24', '198.19.1.0/24']);
    assert.equal(c2!.nodes[0]!.podCidr, '198.19.2.0/24');
    assert.equal(c3!.nodes[0]!.podCidr, '198.19.0.0/24');
    assert.notEqual(c1!.nodes[0]!.ip, c3!.nodes[0]!.ip);
  });
  it('gives every cluster its own service, LoadBalancer and control-plane addresses', () => {
    const cidrs = plan.clusters.map((c) => c.serviceCidr);
    assert.equal(new Set(cidrs).size, 3);
    assert.equal(new Set(plan.clusters.map((c) => c.loadBalancerCidr)).size, 3);
    assert.equal(new Set(plan.clusters.map((c) => c.cpIp)).size, 3);
    for (const c of plan.clusters) assert.match(c.dnsServiceIp, /^198\.19\.\d+\.10$/);
  });
});

describe('images', () => {
  it('maps registry names with tags and digests', () => {
    assert.equal(repositoryOf('registry.istio.io/release/examples-helloworld-v1:1.0'), 'release/examples-helloworld-v1');
    assert.equal(repositoryOf('docker.io/curlimages/curl:8.16.0'), 'curlimages/curl');
    assert.equal(repositoryOf('localhost:5000/ambit@sha256:abc'), 'ambit');
    assert.equal(resolveImage('registry.istio.io/release/examples-helloworld-v2:1.0').env.SERVICE_VERSION, 'v2');
    assert.deepEqual(resolveImage('docker.io/curlimages/curl:8.16.0', ['/bin/sleep', 'infinity']).argv, ['/bin/sleep', 'infinity']);
  });
  it('refuses an unknown image, naming it and the known ones', () => {
    assert.throws(() => resolveImage('quay.io/acme/widget:2'), (err: unknown) => {
      assert.ok(err instanceof UnknownImageError);
      assert.match(err.message, /"quay\.io\/acme\/widget:2" is not known.*examples-helloworld-v1/);
      return true;
    });
  });
});
