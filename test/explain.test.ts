import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { pino } from 'pino';
import { Action, AuthorizationSchema, Scope } from '../src/gen/istio/security/authorization_pb.js';
import {
  LoadBalancing_Mode,
  LoadBalancing_Scope,
  ServiceSchema,
  TunnelProtocol,
  WorkloadSchema,
  WorkloadStatus,
  type Service,
  type Workload,
} from '../src/gen/istio/workload/workload_pb.js';
import { ipToBytes } from '../src/api/ip.js';
import { explainConnection, type SourcePod } from '../src/explain/explain.js';
import { candidateNames } from '../src/explain/host.js';
import { renderExplanation } from '../src/explain/render.js';
import { stateFromResources } from '../src/explain/state-from-resources.js';
import { ExplainArgumentError, parseOutputFormat, parseSourcePod, parseTarget } from '../src/explain/target.js';
import type { Explanation } from '../src/explain/types.js';
import { buildRawResources } from '../src/ztunnel/admin/resources.js';
import { ZtunnelState } from '../src/ztunnel/state/store.js';

const NETWORK1 = 'network1';
const NETWORK2 = 'network2';
const NODE = 'node-a';
const HELLO = 'helloworld.sample.svc.cluster.local';
const HELLO_KEY = `sample/${HELLO}`;
const HELLO_VIP = '10.96.0.10';
const GATEWAY_IP = '198.18.5.1';
const spiffe = (namespace: string, sa: string) => `spiffe://cluster.local/ns/${namespace}/sa/${sa}`;

type WorkloadInit = Omit<Exclude<MessageInitShape<typeof WorkloadSchema>, Workload>, 'addresses'> & { ips?: string[] };

function pod(name: string, init: WorkloadInit = {}): Workload {
  const { ips = [], ...rest } = init;
  return create(WorkloadSchema, {
    uid: `cluster1//Pod/sample/${name}`,
    name,
    namespace: 'sample',
    node: NODE,
    clusterId: 'cluster1',
    network: NETWORK1,
    serviceAccount: name,
    tunnelProtocol: TunnelProtocol.HBONE,
    addresses: ips.map(ipToBytes),
    ...rest,
  });
}

const backsHello = { [HELLO_KEY]: { ports: [{ servicePort: 5000, targetPort: 8080 }] } };

function helloService(init: Exclude<MessageInitShape<typeof ServiceSchema>, Service> = {}): Service {
  return create(ServiceSchema, {
    name: 'helloworld',
    namespace: 'sample',
    hostname: HELLO,
    addresses: [{ network: NETWORK1, address: ipToBytes(HELLO_VIP) }],
    ports: [{ servicePort: 5000, targetPort: 8080 }],
    ...init,
  });
}

const curl = pod('curl', { ips: ['10.0.0.1'], locality: { region: 'r1', zone: 'z1' } });
const curlPod: SourcePod = { namespace: 'sample', name: 'curl', ip: '10.0.0.1', node: NODE };

/** The same service in cluster2 on network1: addressed directly. */
const sameNetworkRemote = pod('helloworld-v1', { uid: 'cluster2//Pod/sample/helloworld-v1', clusterId: 'cluster2', node: 'node-x', ips: ['10.1.0.7'], locality: { region: 'r2' }, services: backsHello });
const eastWest = create(WorkloadSchema, {
  uid: 'cluster3/Gateway/istio-system/eastwest',
  name: 'eastwest',
  namespace: 'istio-system',
  serviceAccount: 'eastwest',
  network: NETWORK2,
  clusterId: 'cluster3',
  tunnelProtocol: TunnelProtocol.HBONE,
  addresses: [ipToBytes(GATEWAY_IP)],
});
/** helloworld's endpoints on network2, behind its east-west gateway. */
const onNetwork2 = pod('helloworld', {
  uid: `${NETWORK2}/SyntheticGateway/sample/${HELLO}`,
  network: NETWORK2,
  node: '',
  clusterId: '',
  capacity: 2,
  networkGateway: { hboneMtlsPort: 15008, destination: { case: 'address', value: { network: NETWORK2, address: ipToBytes(GATEWAY_IP) } } },
  services: backsHello,
});

function stateWith(service: Service | undefined, ...workloads: Workload[]): ZtunnelState {
  const state = new ZtunnelState({ network: NETWORK1, nodeName: NODE, clusterId: 'cluster1', systemNamespace: 'istio-system', logger: pino({ level: 'silent' }) });
  state.applyAddresses(
    [...[curl, ...workloads].map((workload) => ({ name: workload.uid, workload })), ...(service ? [{ name: HELLO_KEY, service }] : [])],
    [],
  );
  return state;
}

function explain(state: ZtunnelState, to: string, source: SourcePod = curlPod): Explanation {
  return explainConnection({ state, source, target: parseTarget(to) });
}

describe('explain: source', () => {
  it('finds the pod\'s workload, its identity and place, and that ztunnel captures it', () => {
    const { source } = explain(stateWith(helloService(), sameNetworkRemote), `${HELLO}:5000`);
    assert.equal(source.captured, true);
    assert.equal(source.workload?.identity, spiffe('sample', 'curl'));
    assert.deepEqual([source.workload?.cluster, source.workload?.network, source.workload?.locality], ['cluster1', NETWORK1, 'r1/z1']);
  });

  it('says a pod that is not enrolled is not captured, and what happens instead', () => {
    const plain = pod('legacy', { ips: ['10.0.0.9'], tunnelProtocol: TunnelProtocol.NONE });
    const explanation = explain(stateWith(helloService(), sameNetworkRemote, plain), `${HELLO}:5000`, { ...curlPod, name: 'legacy', ip: '10.0.0.9' });
    assert.equal(explanation.source.captured, false);
    assert.match(explanation.source.capture, /tunnel protocol NONE/);
    assert.equal(explanation.paths.length, 1);
    assert.equal(explanation.paths[0]?.kind, 'uncaptured');
    assert.equal(explanation.service?.endpoints.length, 1, 'the endpoints are still shown');
  });

  it('says a pod ztunnel does not know is not captured', () => {
    const explanation = explain(stateWith(helloService(), sameNetworkRemote), `${HELLO}:5000`, { ...curlPod, name: 'stranger', ip: '10.0.0.77' });
    assert.equal(explanation.source.workload, undefined);
    assert.match(explanation.source.capture, /not in ztunnel's state/);
  });
});

describe('explain: destinations', () => {
  it('goes straight to an endpoint of another cluster on the same network: 4 hops, expecting its SAN', () => {
    const explanation = explain(stateWith(helloService(), sameNetworkRemote), 'helloworld.sample:5000');
    assert.equal(explanation.destination.resolution, `ztunnel's DNS proxy answers ${HELLO} with VIP ${HELLO_VIP}`);
    assert.equal(explanation.destination.service, HELLO_KEY);
    const [path, ...others] = explanation.paths;
    assert.equal(others.length, 0);
    assert.equal(path?.kind, 'hbone');
    assert.equal(path?.probability, 1);
    assert.deepEqual(path?.hops.map((hop) => hop.kind), ['capture', 'hbone', 'destination-ztunnel', 'deliver']);
    assert.equal(path?.hops[1]?.address, '10.1.0.7:15008');
    assert.equal(path?.hops[1]?.authority, '10.1.0.7:8080');
    assert.deepEqual(path?.hops[1]?.expectedIdentities, [spiffe('sample', 'helloworld-v1')]);
    assert.match(path?.hops[2]?.text ?? '', /node node-x, cluster cluster2/);
    assert.equal(path?.hops[3]?.text, '→ pod sample/helloworld-v1 at 10.1.0.7:8080');
    assert.equal(path?.authorization.evaluated, true);
  });

  it('goes through the east-west gateway to another network: 5 hops, the gateway\'s SAN outside and the destination\'s inside', () => {
    const explanation = explain(stateWith(helloService(), onNetwork2, eastWest), `${HELLO}:5000`);
    const [path] = explanation.paths;
    assert.equal(path?.kind, 'double-hbone');
    assert.deepEqual(path?.hops.map((hop) => hop.kind), ['capture', 'outer-hbone', 'inner-hbone', 'gateway', 'deliver']);
    const [, outer, inner] = path!.hops;
    assert.equal(outer?.address, `${GATEWAY_IP}:15008`);
    assert.deepEqual(outer?.expectedIdentities, [spiffe('istio-system', 'eastwest')]);
    assert.equal(outer?.authority, `${HELLO}:5000`);
    assert.deepEqual(outer?.headers, { 'x-forwarded-network': NETWORK1 });
    assert.deepEqual(inner?.expectedIdentities, [spiffe('sample', 'helloworld')]);
    assert.equal(path?.authorization.evaluated, false);
    assert.equal(explanation.service?.endpoints[0]?.reach, `gateway ${GATEWAY_IP}:15008`);
  });

  it('under PreferClose gives the local endpoint every chance and says why the remote one is not used', () => {
    const preferClose = { routingPreference: [LoadBalancing_Scope.NETWORK, LoadBalancing_Scope.REGION, LoadBalancing_Scope.ZONE], mode: LoadBalancing_Mode.FAILOVER };
    const local = pod('helloworld-local', { ips: ['10.0.1.1'], locality: { region: 'r1', zone: 'z1' }, services: backsHello });
    const explanation = explain(stateWith(helloService({ loadBalancing: preferClose }), local, onNetwork2, eastWest), `${HELLO}:5000`);
    assert.equal(explanation.service?.loadBalancing.summary, 'PreferClose → FAILOVER over NETWORK, REGION, ZONE: the best rank present is used');
    const byName = new Map(explanation.service?.endpoints.map((endpoint) => [endpoint.workload.name, endpoint]));
    assert.equal(byName.get('sample/helloworld-local')?.probability, 1);
    assert.equal(byName.get('sample/helloworld')?.probability, 0);
    assert.equal(byName.get('sample/helloworld')?.exclusionKind, 'lower-rank');
    assert.deepEqual(explanation.paths.map((path) => path.endpoint), ['sample/helloworld-local']);
  });

  it('lists every possible endpoint with its chance when there is no preference', () => {
    const local = pod('helloworld-local', { ips: ['10.0.1.1'], services: backsHello });
    const explanation = explain(stateWith(helloService(), local, onNetwork2, eastWest), `${HELLO}:5000`);
    assert.deepEqual(
      explanation.paths.map((path) => [path.endpoint, path.kind, Math.round(path.probability * 100)]),
      [
        ['sample/helloworld', 'double-hbone', 67],
        ['sample/helloworld-local', 'hbone', 33],
      ],
    );
  });

  it('passes a name the mesh does not know through', () => {
    const explanation = explain(stateWith(helloService(), sameNetworkRemote), 'example.com:443');
    assert.equal(explanation.destination.kind, 'unknown');
    assert.match(explanation.destination.resolution, /no mesh service is named .*example\.com/);
    assert.deepEqual(explanation.paths.map((path) => path.kind), ['passthrough']);
    assert.match(explanation.summary, /passthrough, not routed by the mesh/);
  });

  it('says why a service has no usable endpoint', () => {
    const sick = pod('helloworld-v1', { ips: ['10.0.1.1'], status: WorkloadStatus.UNHEALTHY, services: backsHello });
    const explanation = explain(stateWith(helloService(), sick), `${HELLO}:5000`);
    assert.deepEqual(explanation.paths, []);
    assert.match(explanation.unavailable ?? '', /has 1 endpoint for port 5000, none healthy/);
    assert.equal(explanation.service?.endpoints[0]?.excluded, 'unhealthy');
    assert.match(explanation.summary, /refused/);
  });

  it('addresses a pod by IP, and dials one outside the mesh in plain TCP', () => {
    const direct = explain(stateWith(undefined, sameNetworkRemote), '10.1.0.7:8080');
    assert.equal(direct.destination.kind, 'workload');
    assert.deepEqual(direct.paths.map((path) => path.kind), ['hbone']);
    const legacy = pod('legacy', { ips: ['10.0.1.9'], tunnelProtocol: TunnelProtocol.NONE });
    const plain = explain(stateWith(undefined, legacy), '10.0.1.9:80');
    assert.deepEqual(plain.paths[0]?.hops.map((hop) => hop.kind), ['capture', 'plaintext', 'deliver']);
  });

  it('gives the destination ztunnel\'s authorization decision for the source identity', () => {
    const local = pod('helloworld-v1', { ips: ['10.0.1.1'], services: backsHello });
    const state = stateWith(helloService(), local);
    const denyCurl = create(AuthorizationSchema, {
      name: 'deny-curl',
      namespace: 'sample',
      scope: Scope.NAMESPACE,
      action: Action.DENY,
      rules: [{ clauses: [{ matches: [{ principals: [{ matchType: { case: 'exact', value: 'cluster.local/ns/sample/sa/curl' } }] }] }] }],
    });
    state.applyAuthorizations([{ name: 'sample/deny-curl', authorization: denyCurl }], []);
    const authorization = explain(state, `${HELLO}:5000`).paths[0]?.authorization;
    assert.deepEqual(authorization && authorization.evaluated && [authorization.allowed, authorization.policy], [false, 'sample/deny-curl']);
  });
});

describe('explain: host names', () => {
  it('tries names as the pod\'s resolver would: search list first below 5 dots', () => {
    assert.deepEqual(candidateNames('helloworld.sample', 'default'), [
      'helloworld.sample.default.svc.cluster.local',
      'helloworld.sample.svc.cluster.local',
      'helloworld.sample.cluster.local',
      'helloworld.sample',
    ]);
    assert.deepEqual(candidateNames('a.b.c.d.e.f', 'default')[0], 'a.b.c.d.e.f');
    assert.deepEqual(candidateNames(`${HELLO}.`, 'default'), [HELLO]);
  });

  it('expands short forms and a bare name in the pod\'s namespace', () => {
    const state = stateWith(helloService(), sameNetworkRemote);
    for (const host of ['helloworld', 'helloworld.sample', 'helloworld.sample.svc', HELLO, 'HelloWorld.Sample']) {
      assert.equal(explain(state, `${host}:5000`).destination.service, HELLO_KEY, host);
    }
  });
});

describe('explain: names answered with pod addresses, or not at all', () => {
  const DB = 'db.sample.svc.cluster.local';
  const headless = create(ServiceSchema, { name: 'db', namespace: 'sample', hostname: DB, ports: [{ servicePort: 5432, targetPort: 5432 }] });
  const db0 = pod('db-0', { ips: ['10.0.2.1'], services: { [`sample/${DB}`]: { ports: [{ servicePort: 5432, targetPort: 5432 }] } } });

  function withHeadless(): ZtunnelState {
    const state = stateWith(undefined, db0);
    state.applyAddresses([{ name: `sample/${DB}`, service: headless }], []);
    return state;
  }

  it('follows a headless service to the pod address the DNS proxy answers', () => {
    const explanation = explain(withHeadless(), 'db.sample:5432');
    assert.match(explanation.destination.resolution, /answers db\.sample\.svc\.cluster\.local with pod address 10\.0\.2\.1 \(a headless service/);
    assert.equal(explanation.destination.kind, 'workload');
    assert.deepEqual(explanation.paths.map((path) => [path.kind, path.endpoint]), [['hbone', 'sample/db-0']]);
  });

  it('leaves a mesh service without an answer on the pod\'s network to the cluster\'s DNS, saying so', () => {
    const elsewhere = helloService({ addresses: [{ network: NETWORK2, address: ipToBytes('10.200.0.10') }] });
    const explanation = explain(stateWith(elsewhere, onNetwork2, eastWest), 'helloworld.sample:5000');
    assert.equal(explanation.destination.service, HELLO_KEY);
    assert.deepEqual(explanation.paths, []);
    assert.match(explanation.unresolved ?? '', /depends on the cluster's DNS answer/);
  });
});

describe('explain: rendering', () => {
  it('prints the summary, the source, the endpoints and the hops', () => {
    const preferClose = { routingPreference: [LoadBalancing_Scope.NETWORK, LoadBalancing_Scope.REGION, LoadBalancing_Scope.ZONE], mode: LoadBalancing_Mode.FAILOVER };
    const text = renderExplanation(explain(stateWith(helloService({ loadBalancing: preferClose }), sameNetworkRemote, onNetwork2, eastWest), 'helloworld.sample:5000'));
    for (const fact of [
      'sample/curl → helloworld.sample:5000: HBONE to sample/helloworld-v1',
      'captured by ztunnel: yes',
      `identity ${spiffe('sample', 'curl')}`,
      'PreferClose → FAILOVER over NETWORK, REGION, ZONE',
      'rank 0, below the best rank 3 present',
      '1. pod sample/curl (10.0.0.1) → ztunnel on node node-a (captured on 15001)',
      `2. HBONE mTLS to 10.1.0.7:15008, CONNECT 10.1.0.7:8080, expecting SAN ${spiffe('sample', 'helloworld-v1')}`,
      '4. → pod sample/helloworld-v1 at 10.1.0.7:8080',
      'authorization at the destination: allowed: no authorization policy applies to sample/helloworld-v1',
    ]) {
      assert.ok(text.includes(fact), `missing "${fact}" in:\n${text}`);
    }
  });

  it('prints the gateway hops', () => {
    const text = renderExplanation(explain(stateWith(helloService(), onNetwork2, eastWest), `${HELLO}:5000`));
    assert.match(text, /2\. outer HBONE mTLS to east-west gateway istio-system\/eastwest at 198\.18\.5\.1:15008 \(network network2\), expecting SAN spiffe:\/\/cluster\.local\/ns\/istio-system\/sa\/eastwest, CONNECT helloworld\.sample\.svc\.cluster\.local:5000, x-forwarded-network: network1/);
    assert.match(text, /3\. inner HBONE inside it, mTLS end to end with the destination: .*expecting SAN spiffe:\/\/cluster\.local\/ns\/sample\/sa\/helloworld/);
  });
});

describe('explain: ztunnel resources', () => {
  it('rebuilds the same state from /debug/resources', () => {
    const state = stateWith(helloService(), onNetwork2, eastWest);
    const body = JSON.stringify(buildRawResources(state));
    const rebuilt = stateFromResources(body, 'ztunnel test');
    assert.deepEqual(rebuilt.refused, []);
    assert.deepEqual([rebuilt.state.nodeName, rebuilt.state.clusterId, rebuilt.state.network], [NODE, 'cluster1', NETWORK1]);
    assert.deepEqual(explain(rebuilt.state, `${HELLO}:5000`), explain(state, `${HELLO}:5000`));
  });

  it('explains an older ztunnel or a foreign answer', () => {
    assert.throws(() => stateFromResources('no such endpoint /debug/resources; try /config_dump\n', 'ztunnel x'), /does not serve \/debug\/resources/);
    assert.throws(() => stateFromResources('{"node": 1}', 'ztunnel x'), /unexpected \/debug\/resources answer: node/);
    const bad = JSON.stringify({ node: 'n', clusterId: 'c', network: '', systemNamespace: 's', workloads: [{ bogus: 1 }], services: [], authorizations: [] });
    assert.throws(() => stateFromResources(bad, 'ztunnel x'), /workload\[0\] is not a valid workload message/);
  });
});

describe('explain: waypoints', () => {
  const WAYPOINT_HOST = 'waypoint.sample.svc.cluster.local';
  const waypointRef = { hboneMtlsPort: 15008, destination: { case: 'hostname' as const, value: { namespace: 'sample', hostname: WAYPOINT_HOST } } };
  const waypointPod = pod('waypoint-abc', { ips: ['10.0.0.50'], serviceAccount: 'waypoint', tunnelProtocol: TunnelProtocol.NONE, node: 'node-w', services: { [`sample/${WAYPOINT_HOST}`]: { ports: [{ servicePort: 15008, targetPort: 15008 }] } } });
  const waypointService = create(ServiceSchema, { name: 'waypoint', namespace: 'sample', hostname: WAYPOINT_HOST, addresses: [{ network: NETWORK1, address: ipToBytes('10.96.0.50') }], ports: [{ servicePort: 15008, targetPort: 15008 }] });
  const hello = pod('helloworld-v1', { ips: ['10.0.0.7'], node: 'node-b', services: backsHello });
  const withWaypointService = (service: Service, ...workloads: Workload[]) => {
    const state = stateWith(service, ...workloads);
    state.applyAddresses([{ name: `sample/${WAYPOINT_HOST}`, service: waypointService }], []);
    return state;
  };

  it('a service with a waypoint: client ztunnel → waypoint (name, pod, identity) → the endpoint the waypoint picks', () => {
    const explanation = explain(withWaypointService(helloService({ waypoint: waypointRef }), hello, waypointPod), `${HELLO}:5000`);
    assert.equal(explanation.paths.length, 1);
    const [path] = explanation.paths;
    assert.equal(path?.kind, 'waypoint');
    assert.deepEqual(path?.waypoint, { name: `sample/${WAYPOINT_HOST}`, pod: 'sample/waypoint-abc', address: '10.0.0.50:15008', identity: spiffe('sample', 'waypoint') });
    assert.equal(path?.hops[1]?.authority, `${HELLO_VIP}:5000`);
    assert.match(explanation.summary, /HBONE through waypoint sample\/waypoint\.sample\.svc\.cluster\.local \(pod sample\/waypoint-abc\)/);
    const text = renderExplanation(explanation);
    assert.match(text, /HBONE mTLS to waypoint sample\/waypoint\.sample\.svc\.cluster\.local \(pod sample\/waypoint-abc\) at 10\.0\.0\.50:15008, CONNECT 10\.96\.0\.10:5000, expecting SAN spiffe:\/\/cluster\.local\/ns\/sample\/sa\/waypoint/);
  });

  it('a pod with Workload.waypoint: the path goes through the waypoint to that pod, the destination\'s L4 policy evaluated for the waypoint', () => {
    const behind = pod('helloworld-v1', { ips: ['10.0.0.7'], node: 'node-b', services: backsHello, waypoint: waypointRef });
    const explanation = explain(withWaypointService(helloService(), behind, waypointPod), `${HELLO}:5000`);
    const [path] = explanation.paths;
    assert.equal(path?.kind, 'waypoint');
    assert.equal(path?.hops[1]?.authority, '10.0.0.7:8080');
    assert.equal(path?.endpoint, 'sample/helloworld-v1');
    assert.ok(path?.hops.some((hop) => hop.kind === 'destination-ztunnel' && /sandwich/.test(hop.text)));
    assert.equal(path?.authorization.evaluated, true);
  });

  it('a waypoint without a pod: refused, naming the waypoint', () => {
    const explanation = explain(withWaypointService(helloService({ waypoint: waypointRef }), hello), `${HELLO}:5000`);
    assert.match(explanation.unavailable ?? '', /waypoint sample\/waypoint\.sample\.svc\.cluster\.local has no usable pod/);
  });

  it('the waypoint fields survive /debug/resources', () => {
    const state = withWaypointService(helloService({ waypoint: waypointRef }), hello, waypointPod);
    const rebuilt = stateFromResources(JSON.stringify(buildRawResources(state)), 'ztunnel test');
    assert.deepEqual(explain(rebuilt.state, `${HELLO}:5000`), explain(state, `${HELLO}:5000`));
    assert.equal(explain(rebuilt.state, `${HELLO}:5000`).paths[0]?.kind, 'waypoint');
  });
});

describe('explain: arguments', () => {
  it('parses --to', () => {
    assert.deepEqual(parseTarget('helloworld.sample:5000'), { host: 'helloworld.sample', port: 5000 });
    assert.deepEqual(parseTarget('10.96.0.10:80'), { host: '10.96.0.10', port: 80 });
    assert.deepEqual(parseTarget('[fd00::10]:80'), { host: 'fd00::10', port: 80 });
  });

  it('refuses a malformed --to, saying what is wrong', () => {
    const refuses = (text: string, message: RegExp) => assert.throws(() => parseTarget(text), (error: unknown) => error instanceof ExplainArgumentError && message.test(error.message));
    refuses('helloworld.sample', /missing port/);
    refuses('helloworld.sample:', /missing port/);
    refuses(':80', /missing host/);
    refuses('helloworld:http', /port "http" is not a number/);
    refuses('helloworld:0', /port 0 is out of range \(1-65535\)/);
    refuses('helloworld:65536', /port 65536 is out of range/);
    refuses('fd00::10', /IPv6 address needs brackets/);
    refuses('[helloworld]:80', /not an IPv6 address/);
    refuses('hello world:80', /neither an IP address nor a DNS name/);
  });

  it('refuses a malformed --from and --output', () => {
    assert.deepEqual(parseSourcePod('sample/curl'), { namespace: 'sample', name: 'curl' });
    assert.throws(() => parseSourcePod('curl'), /expected <namespace>\/<pod>/);
    assert.throws(() => parseSourcePod('sample/'), /expected <namespace>\/<pod>/);
    assert.throws(() => parseOutputFormat('yaml'), /expected text or json/);
  });
});
