// ambit:lab-test (makes network namespaces and nftables rules; needs root)
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import type { V1Endpoints, V1EndpointSubset, V1Service, V1ServiceSpec } from '@kubernetes/client-node';

import {
  applyRules,
  buildServiceViews,
  checkRules,
  deleteTable,
  renderLoadBalancerRules,
  renderNodeServiceRules,
  type ServiceBackendView,
} from '../src/lab/agent/service-rules.js';
import { run } from '../src/util/exec.js';

// Only 198.19.250.0/24 (pods) and 198.19.251.0/24 (node, router, virtual IPs) are used.
const PREFIX = `svct-${process.pid}`;
const IS_ROOT = process.getuid?.() === 0;
const NEEDS_ROOT = IS_ROOT ? false : 'needs root (network namespaces, nftables)';

const POD_A = '198.19.250.10';
const POD_B = '198.19.250.11';
const POD_C = '198.19.250.12';
const NODE_IP = '198.19.251.1';
const ROUTER_IP = '198.19.251.2';
const EXT_IP = '198.19.251.50';
const WEB_IP = '198.19.251.100';
const EMPTY_IP = '198.19.251.101';
const SELF_IP = '198.19.251.102';
const STICKY_IP = '198.19.251.103';
const LB_WEB_IP = '198.19.251.200';
const LB_EMPTY_IP = '198.19.251.201';

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

function service(name: string, spec: V1ServiceSpec, lbIPs: string[] = []): V1Service {
  return {
    metadata: { name, namespace: 'default' },
    spec,
    status: lbIPs.length ? { loadBalancer: { ingress: lbIPs.map((ip) => ({ ip })) } } : {},
  };
}

function endpoints(name: string, subsets: V1EndpointSubset[]): V1Endpoints {
  return { metadata: { name, namespace: 'default' }, subsets };
}

/** Pod a serves http on 8080, pod b on 8081 (named port "http"), both dns on 5353/udp. */
function webSubsets(pods: ('a' | 'b')[]): V1EndpointSubset[] {
  const byPod = { a: { ip: POD_A, http: 8080 }, b: { ip: POD_B, http: 8081 } };
  return pods.map((p) => ({
    addresses: [{ ip: byPod[p].ip, nodeName: 'node1' }],
    ports: [
      { name: 'http', port: byPod[p].http, protocol: 'TCP' },
      { name: 'dns', port: 5353, protocol: 'UDP' },
    ],
  }));
}

const SERVICES: V1Service[] = [
  service(
    'web',
    {
      type: 'LoadBalancer',
      clusterIP: WEB_IP,
      ports: [
        { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP', nodePort: 30080 },
        { name: 'dns', port: 53, targetPort: 'dns', protocol: 'UDP' },
      ],
    },
    [LB_WEB_IP],
  ),
  service('empty', { type: 'LoadBalancer', clusterIP: EMPTY_IP, ports: [{ port: 80, targetPort: 8080, nodePort: 30081 }] }, [
    LB_EMPTY_IP,
  ]),
  service('self', { clusterIP: SELF_IP, ports: [{ port: 80, targetPort: 8080 }] }),
  service('sticky', {
    clusterIP: STICKY_IP,
    sessionAffinity: 'ClientIP',
    sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
    ports: [{ port: 80, targetPort: 'http', name: 'http' }],
  }),
  service('headless', { clusterIP: 'None', ports: [{ port: 80 }] }),
  service('external', { type: 'ExternalName', externalName: 'example.invalid', ports: [{ port: 80 }] }),
];

function endpointsFor(webPods: ('a' | 'b')[]): V1Endpoints[] {
  return [
    endpoints('web', webSubsets(webPods)),
    endpoints('empty', [{ notReadyAddresses: [{ ip: POD_B }], ports: [{ port: 8080 }] }]),
    endpoints('self', [{ addresses: [{ ip: POD_A }], ports: [{ port: 8080 }] }]),
    endpoints('sticky', webSubsets(['a', 'b']).map((s) => ({ ...s, ports: s.ports?.filter((p) => p.name === 'http') }))),
    endpoints('headless', [{ addresses: [{ ip: POD_A }], ports: [{ port: 80 }] }]),
  ];
}

function viewsFor(webPods: ('a' | 'b')[]): ServiceBackendView[] {
  return buildServiceViews(SERVICES, endpointsFor(webPods));
}

/** Many services, to check scale and that nothing grows linearly in the hook chains. */
function manyViews(n: number): ServiceBackendView[] {
  return Array.from({ length: n }, (_, i) => ({
    namespace: `ns${i % 7}`,
    name: `svc-${i}`,
    type: i % 3 === 0 ? 'NodePort' : 'ClusterIP',
    clusterIP: `198.19.251.${(i % 250) + 1}`,
    loadBalancerIPs: i % 5 === 0 ? [`198.19.250.${(i % 250) + 1}`] : [],
    sessionAffinity: i % 11 === 0 ? 'ClientIP' : 'None',
    ports: [
      {
        name: 'p',
        protocol: i % 2 ? 'UDP' : 'TCP',
        port: 1000 + i,
        targetPort: 'p',
        ...(i % 3 === 0 ? { nodePort: 30000 + i } : {}),
        endpoints: Array.from({ length: i % 4 }, (_, j) => ({ ip: `198.19.250.${((i + j) % 250) + 1}`, port: 8000 + j })),
      },
    ],
  }));
}

// ---------------------------------------------------------------------------------------------
// Unit tests
// ---------------------------------------------------------------------------------------------

describe('buildServiceViews', () => {
  const views = viewsFor(['a', 'b']);
  const byName = (name: string) => {
    const v = views.find((x) => x.name === name);
    assert.ok(v, `view ${name}`);
    return v;
  };

  test('skips headless and ExternalName services', () => {
    assert.deepEqual(
      views.map((v) => v.name),
      ['empty', 'self', 'sticky', 'web'],
    );
  });

  test('resolves named targetPorts per Endpoints subset, TCP and UDP', () => {
    const web = byName('web');
    assert.equal(web.type, 'LoadBalancer');
    assert.equal(web.clusterIP, WEB_IP);
    assert.deepEqual(web.loadBalancerIPs, [LB_WEB_IP]);
    const [http, dns] = web.ports;
    assert.deepEqual(http, {
      name: 'http',
      protocol: 'TCP',
      port: 80,
      nodePort: 30080,
      targetPort: 'http',
      endpoints: [
        { ip: POD_A, port: 8080, nodeName: 'node1' },
        { ip: POD_B, port: 8081, nodeName: 'node1' },
      ],
    });
    assert.deepEqual(dns, {
      name: 'dns',
      protocol: 'UDP',
      port: 53,
      targetPort: 'dns',
      endpoints: [
        { ip: POD_A, port: 5353, nodeName: 'node1' },
        { ip: POD_B, port: 5353, nodeName: 'node1' },
      ],
    });
  });

  test('uses only ready addresses', () => {
    const empty = byName('empty');
    assert.equal(empty.ports[0]?.endpoints.length, 0);
    assert.equal(empty.ports[0]?.nodePort, 30081);
  });

  test('session affinity and missing Endpoints', () => {
    const sticky = byName('sticky');
    assert.equal(sticky.sessionAffinity, 'ClientIP');
    assert.equal(sticky.sessionAffinityTimeoutSeconds, 600);
    assert.equal(byName('web').sessionAffinity, 'None');
    const [lonely] = buildServiceViews([service('lonely', { clusterIP: WEB_IP, ports: [{ port: 80 }] })], []);
    assert.deepEqual(lonely?.ports[0]?.endpoints, []);
    assert.equal(lonely?.ports[0]?.targetPort, 80);
  });

  test('numeric targetPort works for Endpoints without ports; named one does not guess', () => {
    const svcs = [
      service('num', { clusterIP: WEB_IP, ports: [{ port: 80, targetPort: 9090 }] }),
      service('named', { clusterIP: SELF_IP, ports: [{ port: 80, targetPort: 'web' }] }),
    ];
    const eps = [endpoints('num', [{ addresses: [{ ip: POD_A }] }]), endpoints('named', [{ addresses: [{ ip: POD_A }] }])];
    const [named, num] = buildServiceViews(svcs, eps);
    assert.deepEqual(num?.ports[0]?.endpoints, [{ ip: POD_A, port: 9090 }]);
    assert.deepEqual(named?.ports[0]?.endpoints, []);
  });

  test('endpoint port must match the service port protocol', () => {
    const svcs = [service('dns', { clusterIP: WEB_IP, ports: [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 }] })];
    const eps = [endpoints('dns', [{ addresses: [{ ip: POD_A }], ports: [{ name: 'dns', port: 53, protocol: 'TCP' }] }])];
    assert.deepEqual(buildServiceViews(svcs, eps)[0]?.ports[0]?.endpoints, []);
  });
});

describe('renderNodeServiceRules (text)', () => {
  const script = renderNodeServiceRules(viewsFor(['a', 'b']), {});

  test('recreates the table atomically', () => {
    const lines = script.split('\n');
    assert.deepEqual(lines.slice(0, 3), [
      'table ip ambit-lab-services {}',
      'delete table ip ambit-lab-services',
      'table ip ambit-lab-services {',
    ]);
    assert.match(renderNodeServiceRules([], { table: 'other' }), /^table ip other \{\}\ndelete table ip other\n/);
    assert.throws(() => renderNodeServiceRules([], { table: 'bad name; flush ruleset' }), /invalid nftables table name/);
  });

  test('ClusterIP and NodePort go through verdict maps to a random endpoint', () => {
    assert.match(script, new RegExp(`${WEB_IP} \\. tcp \\. 80 : goto svc-[0-9a-f]{8}-default/web/tcp/http,`));
    assert.match(script, new RegExp(`${WEB_IP} \\. udp \\. 53 : goto svc-[0-9a-f]{8}-default/web/udp/dns,`));
    assert.match(script, /tcp \. 30080 : goto np-[0-9a-f]{8}-default\/web\/tcp\/http,/);
    assert.ok(script.includes(`meta l4proto tcp dnat to numgen random mod 2 map { 0 : ${POD_A} . 8080, 1 : ${POD_B} . 8081 }`));
    assert.ok(script.includes(`meta l4proto udp dnat to numgen random mod 2 map { 0 : ${POD_A} . 5353, 1 : ${POD_B} . 5353 }`));
    assert.ok(script.includes(`meta l4proto tcp dnat to ${POD_A}:8080`), 'single endpoint: plain dnat');
    assert.ok(script.includes('jhash ip saddr mod 2 seed 0x0 map'), 'ClientIP affinity hashes the client address');
    assert.ok(script.includes('ip daddr . meta l4proto . th dport vmap @service-ips'));
    assert.ok(script.includes('type nat hook prerouting priority dstnat;'));
    assert.ok(script.includes('type nat hook output priority -100;'));
    assert.ok(script.includes('type nat hook postrouting priority srcnat;'));
  });

  test('services without endpoints are rejected, not black-holed', () => {
    assert.ok(script.includes(`${EMPTY_IP} . tcp . 80,`));
    assert.ok(script.includes('tcp . 30081,'));
    assert.ok(!script.includes(`${EMPTY_IP} . tcp . 80 : goto`));
    assert.ok(script.includes('meta l4proto tcp reject with tcp reset'));
    assert.ok(script.includes('reject with icmp type port-unreachable'));
  });

  test('hairpin and NodePort masquerade', () => {
    assert.ok(script.includes(`${POD_A} . ${POD_A},`));
    assert.ok(script.includes(`${POD_B} . ${POD_B},`));
    assert.ok(script.includes('ct status dnat ip saddr . ip daddr @hairpin-endpoints masquerade'));
    assert.ok(script.includes('meta mark & 0x4000 == 0x4000 meta mark set meta mark ^ 0x4000 masquerade'));
  });

  test('zero services renders empty maps without element lists', () => {
    const empty = renderNodeServiceRules([], {});
    assert.ok(!empty.includes('elements'));
    assert.ok(empty.includes('map service-ips {'));
  });

  test('ignores IPv6 and invalid addresses instead of breaking the transaction', () => {
    const out = renderNodeServiceRules(
      [
        {
          namespace: 'default',
          name: 'v6',
          type: 'ClusterIP',
          clusterIP: 'fd00::1',
          loadBalancerIPs: [],
          sessionAffinity: 'None',
          ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 80, endpoints: [{ ip: 'fd00::2', port: 80 }] }],
        },
      ],
      {},
    );
    assert.ok(!out.includes('fd00'));
  });
});

describe('renderLoadBalancerRules (text)', () => {
  const script = renderLoadBalancerRules(viewsFor(['a', 'b']), { table: 'ambit-lab-lb' });

  test('DNATs LB_IP:port to endpoints and masquerades', () => {
    assert.ok(script.startsWith('table ip ambit-lab-lb {}\ndelete table ip ambit-lab-lb\ntable ip ambit-lab-lb {\n'));
    assert.match(script, new RegExp(`${LB_WEB_IP} \\. tcp \\. 80 : goto lb-[0-9a-f]{8}-default/web/tcp/http,`));
    assert.match(script, new RegExp(`${LB_WEB_IP} \\. udp \\. 53 : goto lb-[0-9a-f]{8}-default/web/udp/dns,`));
    assert.ok(script.includes(`meta l4proto tcp dnat to numgen random mod 2 map { 0 : ${POD_A} . 8080, 1 : ${POD_B} . 8081 }`));
    assert.ok(script.includes(`${LB_EMPTY_IP} . tcp . 80,`));
    assert.ok(script.includes('masquerade'));
    assert.ok(!script.includes(WEB_IP), 'ClusterIPs are not handled by the router');
  });
});

describe('nft accepts every rendered script', { skip: NEEDS_ROOT }, () => {
  const netns = `${PREFIX}-chk`;
  before(async () => {
    await run('ip', ['netns', 'add', netns]);
  });
  after(async () => {
    await run('ip', ['netns', 'del', netns]).catch(() => undefined);
  });

  const noEndpoints = viewsFor([]).filter((v) => v.name === 'web' || v.name === 'empty');
  const cases: [string, () => string][] = [
    ['node: 0 services', () => renderNodeServiceRules([], {})],
    ['node: full fixture (named targetPorts, UDP, NodePort, affinity)', () => renderNodeServiceRules(viewsFor(['a', 'b']), {})],
    ['node: services without endpoints', () => renderNodeServiceRules(noEndpoints, {})],
    ['node: podCIDRs + custom mark', () =>
      renderNodeServiceRules(viewsFor(['a']), { podCIDRs: ['198.19.250.0/24'], masqueradeMark: 0x8000 })],
    ['node: 400 services', () => renderNodeServiceRules(manyViews(400), {})],
    ['lb: 0 services', () => renderLoadBalancerRules([], { table: 'ambit-lab-lb' })],
    ['lb: full fixture', () => renderLoadBalancerRules(viewsFor(['a', 'b']), { table: 'ambit-lab-lb' })],
    ['lb: services without endpoints', () => renderLoadBalancerRules(noEndpoints, { table: 'ambit-lab-lb' })],
    ['lb: 400 services', () => renderLoadBalancerRules(manyViews(400), { table: 'ambit-lab-lb' })],
  ];
  for (const [name, render] of cases) {
    test(name, async () => {
      const script = render();
      await checkRules(netns, script);
      // `nft -c` skips some kernel-side validation (e.g. reject in an unsupported hook), so also
      // apply for real, twice (the second run exercises the replace-existing-table path).
      await applyRules(netns, script);
      await applyRules(netns, script);
      const table = script.split('\n')[0]?.split(' ')[2] ?? '';
      const { stdout } = await run('ip', ['netns', 'exec', netns, 'nft', 'list', 'tables']);
      assert.ok(stdout.includes(`table ip ${table}`));
      await deleteTable(netns, table);
      await deleteTable(netns, table); // absent: still fine
      const after = await run('ip', ['netns', 'exec', netns, 'nft', 'list', 'tables']);
      assert.ok(!after.stdout.includes(`table ip ${table}`));
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Behaviour test on a real namespace topology
// ---------------------------------------------------------------------------------------------

/** Answers "<name> <peer address>" on each TCP port and on the UDP port. */
const SERVER = `
const net = require('node:net');
const dgram = require('node:dgram');
const [name, tcp, udp] = process.argv.slice(1);
const ports = tcp.split(',').map(Number);
let pending = ports.length + 1;
const ready = () => { if (--pending === 0) process.stdout.write('ready\\n'); };
for (const port of ports) {
  net.createServer((s) => { s.on('error', () => {}); s.end(name + ' ' + s.remoteAddress + '\\n'); }).listen(port, '0.0.0.0', ready);
}
const u = dgram.createSocket('udp4');
u.on('message', (m, r) => u.send(name + ' ' + r.address, r.port, r.address));
u.bind(Number(udp), '0.0.0.0', ready);
`;

/** Makes cfg.count sequential requests, each from a fresh socket; prints a JSON array of results. */
const CLIENT = `
const net = require('node:net');
const dgram = require('node:dgram');
const cfg = JSON.parse(process.argv[1]);
function once() {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let settled = false;
    const done = (r) => { if (!settled) { settled = true; clearTimeout(timer); resolve({ ...r, ms: Date.now() - t0 }); } };
    let s;
    const timer = setTimeout(() => { done({ ok: false, code: 'TIMEOUT' }); cfg.proto === 'udp' ? s.close() : s.destroy(); }, cfg.timeoutMs);
    if (cfg.proto === 'udp') {
      s = dgram.createSocket('udp4');
      s.on('message', (m) => { done({ ok: true, reply: String(m).trim() }); s.close(); });
      s.on('error', (e) => { done({ ok: false, code: e.code }); s.close(); });
      s.send('q', cfg.port, cfg.host);
    } else {
      let data = '';
      s = net.connect({ host: cfg.host, port: cfg.port });
      s.on('data', (d) => { data += d; });
      s.on('end', () => done({ ok: true, reply: data.trim() }));
      s.on('error', (e) => done({ ok: false, code: e.code }));
    }
  });
}
(async () => {
  const out = [];
  for (let i = 0; i < cfg.count; i++) out.push(await once());
  process.stdout.write(JSON.stringify(out));
})();
`;

interface Result {
  ok: boolean;
  reply?: string;
  code?: string;
  ms: number;
}

async function request(
  netns: string,
  host: string,
  port: number,
  count: number,
  proto: 'tcp' | 'udp' = 'tcp',
): Promise<Result[]> {
  const cfg = JSON.stringify({ host, port, count, proto, timeoutMs: 3000 });
  const { stdout } = await run('ip', ['netns', 'exec', netns, process.execPath, '-e', CLIENT, cfg], { timeoutMs: 60_000 });
  return JSON.parse(stdout) as Result[];
}

/** Asserts all requests succeeded and returns the replies. */
function replies(results: Result[]): string[] {
  const failed = results.filter((r) => !r.ok);
  assert.deepEqual(failed, [], 'all requests succeed');
  return results.map((r) => r.reply ?? '');
}

function backends(results: Result[]): Set<string> {
  return new Set(replies(results).map((r) => r.split(' ')[0] ?? ''));
}

describe('service rules on a namespace topology', { skip: NEEDS_ROOT }, () => {
  const ns = {
    node: `${PREFIX}-node`,
    a: `${PREFIX}-a`,
    b: `${PREFIX}-b`,
    c: `${PREFIX}-c`,
    router: `${PREFIX}-rtr`,
    ext: `${PREFIX}-ext`,
  };
  const created: string[] = [];
  const servers: ChildProcess[] = [];
  const NODE_TABLE = 'ambit-lab-services';
  const LB_TABLE = 'ambit-lab-lb';

  const ip = (...args: string[]) => run('ip', args);
  const inNs = (netns: string, ...args: string[]) => run('ip', ['netns', 'exec', netns, ...args]);

  async function addNetns(name: string): Promise<void> {
    await ip('netns', 'add', name);
    created.push(name);
    await ip('-n', name, 'link', 'set', 'lo', 'up');
  }

  /** Calico-style pod: /32 on eth0, default route via link-local 169.254.1.1 answered by proxy_arp. */
  async function addPod(pod: string, podIP: string, hostIf: string): Promise<void> {
    await addNetns(pod);
    await ip('-n', ns.node, 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod);
    await ip('-n', pod, 'addr', 'add', `${podIP}/32`, 'dev', 'eth0');
    await ip('-n', pod, 'link', 'set', 'eth0', 'up');
    await ip('-n', pod, 'route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link');
    await ip('-n', pod, 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0');
    await ip('-n', ns.node, 'link', 'set', hostIf, 'up');
    await inNs(ns.node, 'sysctl', '-qw', `net.ipv4.conf.${hostIf}.proxy_arp=1`);
    await inNs(ns.node, 'sysctl', '-qw', `net.ipv4.neigh.${hostIf}.proxy_delay=0`);
    await ip('-n', ns.node, 'route', 'add', `${podIP}/32`, 'dev', hostIf);
  }

  /** A point-to-point veth between two netns, each side with a /32 and a host route to the other. */
  async function link(left: string, leftIf: string, leftIP: string | undefined, right: string, rightIf: string, rightIP: string) {
    await ip('-n', left, 'link', 'add', leftIf, 'type', 'veth', 'peer', 'name', rightIf, 'netns', right);
    if (leftIP) await ip('-n', left, 'addr', 'add', `${leftIP}/32`, 'dev', leftIf);
    await ip('-n', right, 'addr', 'add', `${rightIP}/32`, 'dev', rightIf);
    await ip('-n', left, 'link', 'set', leftIf, 'up');
    await ip('-n', right, 'link', 'set', rightIf, 'up');
    await ip('-n', left, 'route', 'add', `${rightIP}/32`, 'dev', leftIf);
  }

  async function startServer(pod: string, name: string, tcpPorts: number[]): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', pod, process.execPath, '-e', SERVER, name, tcpPorts.join(','), '5353'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    servers.push(child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server ${name} did not start`)), 10_000);
      let out = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`server ${name} exited with ${code}`));
      });
    });
  }

  async function cleanup(): Promise<void> {
    await Promise.all(
      servers.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    servers.length = 0;
    for (const name of created.reverse()) {
      await ip('netns', 'del', name).catch(() => undefined);
    }
    created.length = 0;
  }

  async function applyNode(webPods: ('a' | 'b')[]): Promise<void> {
    await applyRules(ns.node, renderNodeServiceRules(viewsFor(webPods), { table: NODE_TABLE }));
  }

  before(async () => {
    try {
      // node: NODE_IP on lo, default route towards the router (so proxy_arp answers for
      // 169.254.1.1 and node processes have a route to ClusterIPs). The router has no default
      // route and the external client sits behind it: no traffic leaves this topology.
      await addNetns(ns.node);
      await inNs(ns.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
      await ip('-n', ns.node, 'addr', 'add', `${NODE_IP}/32`, 'dev', 'lo');
      await addNetns(ns.router);
      await inNs(ns.router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
      await link(ns.node, 'vr', undefined, ns.router, 'up0', ROUTER_IP);
      await ip('-n', ns.node, 'route', 'add', 'default', 'via', ROUTER_IP, 'dev', 'vr');
      await ip('-n', ns.router, 'route', 'add', NODE_IP, 'dev', 'up0', 'scope', 'link');
      await ip('-n', ns.router, 'route', 'add', '198.19.250.0/24', 'via', NODE_IP, 'dev', 'up0');
      await addNetns(ns.ext);
      await link(ns.router, 'vx', undefined, ns.ext, 'eth0', EXT_IP);
      await ip('-n', ns.ext, 'route', 'add', ROUTER_IP, 'dev', 'eth0', 'scope', 'link');
      await ip('-n', ns.ext, 'route', 'add', 'default', 'via', ROUTER_IP, 'dev', 'eth0');

      await addPod(ns.a, POD_A, 'va');
      await addPod(ns.b, POD_B, 'vb');
      await addPod(ns.c, POD_C, 'vc');

      await startServer(ns.a, 'a', [8080]);
      await startServer(ns.b, 'b', [8081]);
      await applyNode(['a', 'b']);
      await applyRules(ns.router, renderLoadBalancerRules(viewsFor(['a', 'b']), { table: LB_TABLE }));
    } catch (err) {
      await cleanup();
      throw err;
    }
  });

  after(cleanup);

  test('ClusterIP from a pod reaches both backends (named targetPort 8080/8081)', async () => {
    const results = await request(ns.c, WEB_IP, 80, 30);
    assert.deepEqual(backends(results), new Set(['a', 'b']));
    // Pod-to-service traffic keeps the client's address.
    for (const r of replies(results)) assert.ok(r.endsWith(` ${POD_C}`), r);
  });

  test('UDP ClusterIP with named targetPort', async () => {
    const results = await request(ns.c, WEB_IP, 53, 20, 'udp');
    assert.deepEqual(backends(results), new Set(['a', 'b']));
  });

  test('ClientIP session affinity sticks to one backend', async () => {
    const results = await request(ns.c, STICKY_IP, 80, 10);
    assert.equal(backends(results).size, 1);
  });

  test('ClusterIP from a process in the node netns (output hook)', async () => {
    const results = await request(ns.node, WEB_IP, 80, 20);
    assert.deepEqual(backends(results), new Set(['a', 'b']));
  });

  test('hairpin: a pod reaches itself through its service', async () => {
    const self = replies(await request(ns.a, SELF_IP, 80, 3));
    // Masqueraded to the node's address, otherwise the pod would drop a packet from itself.
    assert.deepEqual(self, [`a ${NODE_IP}`, `a ${NODE_IP}`, `a ${NODE_IP}`]);
    const mixed = await request(ns.a, WEB_IP, 80, 20);
    assert.deepEqual(backends(mixed), new Set(['a', 'b']));
  });

  test('service without endpoints is refused quickly', async () => {
    for (const [from, host, port] of [
      [ns.c, EMPTY_IP, 80],
      [ns.node, EMPTY_IP, 80],
      [ns.c, NODE_IP, 30081],
    ] as const) {
      const [r] = await request(from, host, port, 1);
      assert.equal(r?.code, 'ECONNREFUSED', `${from} -> ${host}:${port}: ${JSON.stringify(r)}`);
      assert.ok((r?.ms ?? Infinity) < 1000, `refused in ${r?.ms}ms`);
    }
  });

  test('NodePort reaches both backends, masqueraded', async () => {
    const results = await request(ns.c, NODE_IP, 30080, 20);
    assert.deepEqual(backends(results), new Set(['a', 'b']));
    for (const r of replies(results)) assert.ok(r.endsWith(` ${NODE_IP}`), r);
  });

  test('LoadBalancer IP via the router, from outside and from a pod', async () => {
    const outside = await request(ns.ext, LB_WEB_IP, 80, 20);
    assert.deepEqual(backends(outside), new Set(['a', 'b']));
    for (const r of replies(outside)) assert.ok(r.endsWith(` ${ROUTER_IP}`), r);
    // Client on the pods' network: works only because the router masquerades.
    const inside = await request(ns.c, LB_WEB_IP, 80, 20);
    assert.deepEqual(backends(inside), new Set(['a', 'b']));
    const udp = await request(ns.ext, LB_WEB_IP, 53, 10, 'udp');
    assert.ok(backends(udp).size >= 1);
    const [refused] = await request(ns.ext, LB_EMPTY_IP, 80, 1);
    assert.equal(refused?.code, 'ECONNREFUSED');
    assert.ok((refused?.ms ?? Infinity) < 1000);
  });

  test('re-applying with changed endpoints takes effect', async () => {
    try {
      await applyNode(['b']);
      assert.deepEqual(backends(await request(ns.c, WEB_IP, 80, 10)), new Set(['b']));
      await applyNode([]);
      const [r] = await request(ns.c, WEB_IP, 80, 1);
      assert.equal(r?.code, 'ECONNREFUSED');
      await applyNode(['a']);
      assert.deepEqual(backends(await request(ns.c, WEB_IP, 80, 10)), new Set(['a']));
      await applyNode(['a', 'b']);
      assert.deepEqual(backends(await request(ns.c, WEB_IP, 80, 30)), new Set(['a', 'b']));
    } finally {
      await applyNode(['a', 'b']);
    }
  });

  test('deleteTable removes the rules', async () => {
    await deleteTable(ns.router, LB_TABLE);
    await deleteTable(ns.router, LB_TABLE);
    const { stdout } = await inNs(ns.router, 'nft', 'list', 'tables');
    assert.ok(!stdout.includes(LB_TABLE));
  });
});
