/**
 * One ztunnel data path (src/ztunnel/proxy Proxy) in a process of its own, for the loopback HBONE
 * harness (loopback-hbone.ts forks two of these). Not a CLI of its own: the parent sends the
 * configuration over IPC and asks for memory figures and the stop.
 *
 * Loopback stands in for capture: a client "pod" connects to `<destination pod IP>:<outbound port>`
 * and the original destination is that socket's local address; the app port comes from the
 * configuration (one app port per destination pod IP). On the server side the HBONE listener's
 * accepted sockets are sent to `<pod IP>:15008`, as after nftables REDIRECT.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import type { Socket } from 'node:net';

import { create } from '@bufbuild/protobuf';
import koffi from 'koffi';
import { pino } from 'pino';

import { normalizeIp, ipToBytes } from '../../src/api/ip.js';
import {
  GatewayAddressSchema,
  NetworkAddressSchema,
  PortListSchema,
  PortSchema,
  ServiceSchema,
  TunnelProtocol,
  WorkloadSchema,
  WorkloadType,
  type Service,
  type Workload,
} from '../../src/gen/istio/workload/workload_pb.js';
import { issueLeaf, loadCa } from '../../src/util/pki.js';
import type { CertificateSource, WorkloadCertificate } from '../../src/ztunnel/identity/types.js';
import { createProxyMetrics } from '../../src/ztunnel/metrics.js';
import { Proxy } from '../../src/ztunnel/proxy/proxy.js';
import { WaypointSchema } from '../../src/gen/ambit/waypoint/waypoint_pb.js';
import { RequestMetrics } from '../../src/l7/metrics.js';
import { WaypointConfig } from '../../src/waypoint/config.js';
import { WaypointProxy } from '../../src/waypoint/waypoint.js';
import { ZtunnelState } from '../../src/ztunnel/state/store.js';

export const TRUST_DOMAIN = 'cluster.local';
export const CLUSTER = 'perf';
export const HBONE_PORT = 15008;

export interface PodSpec {
  name: string;
  ip: string;
  node: string;
  /** Services the pod is an endpoint of (resource names), on this port (service port = target port). */
  services?: Record<string, number>;
}

/** A Service (namespace default), optionally served by the waypoint pod at `waypointIp` (15008). */
export interface ServiceSpec {
  name: string;
  vip: string;
  port: number;
  waypointIp?: string;
}

export interface ZtunnelNodeConfig {
  /** A ztunnel (default), or the waypoint proxy of the pod named `waypointPod`, serving `services`' waypoint-served ones. */
  role?: 'ztunnel' | 'waypoint';
  waypointPod?: string;
  /** Waypoint: one access log line per request. */
  accessLog?: boolean;
  node: string;
  caCertPem: string;
  caKeyPem: string;
  pods: PodSpec[];
  /** App port of each destination pod IP (what a captured connection to that IP was going to). */
  appPortByIp: Record<string, number>;
  services?: ServiceSpec[];
  /** Where this node dials the HBONE port of the other node. */
  peerHbonePort: number;
  /** HBONE ports of particular addresses (a waypoint pod), instead of `peerHbonePort`. */
  hbonePortByIp?: Record<string, number>;
  /** Pino level of the proxy's log (the harness writes it to the child's log file). */
  logLevel: string;
}

export type ParentMessage =
  | { type: 'start'; config: ZtunnelNodeConfig }
  /** Figures of this process; `gc` collects garbage first, `trim` then returns free malloc memory to the OS (malloc_trim). */
  | { type: 'memory'; gc?: boolean; trim?: boolean }
  /** Starts V8's sampling heap profiler, counting garbage too (what a workload allocates, not what it keeps). */
  | { type: 'heap-sampling-start' }
  /** Stops it and writes the profile (Chrome .heapprofile format) to `file`. */
  | { type: 'heap-sampling-stop'; file: string }
  | { type: 'stop' };
export type ChildMessage =
  | { type: 'started'; ports: { outbound: number; inbound: number; inboundPlaintext: number } }
  | { type: 'memory'; memory: NodeJS.MemoryUsage }
  | { type: 'done' }
  | { type: 'error'; message: string };

const DAY_MS = 24 * 3600_000;

export const serviceName = (spec: ServiceSpec) => `default/${spec.name}.default.svc.cluster.local`;

export function service(spec: ServiceSpec): Service {
  return create(ServiceSchema, {
    name: spec.name,
    namespace: 'default',
    hostname: `${spec.name}.default.svc.cluster.local`,
    addresses: [create(NetworkAddressSchema, { network: '', address: ipToBytes(spec.vip) })],
    ports: [create(PortSchema, { servicePort: spec.port, targetPort: spec.port })],
    waypoint: spec.waypointIp ? create(GatewayAddressSchema, { destination: { case: 'address', value: create(NetworkAddressSchema, { network: '', address: ipToBytes(spec.waypointIp) }) }, hboneMtlsPort: HBONE_PORT }) : undefined,
  });
}

/** The pods and services of the configuration as xDS address resources. */
export function addresses(config: Pick<ZtunnelNodeConfig, 'pods' | 'services'>): Array<{ name: string; workload: Workload } | { name: string; service: Service }> {
  return [
    ...(config.services ?? []).map((spec) => ({ name: serviceName(spec), service: service(spec) })),
    ...config.pods.map((spec) => ({ name: `${CLUSTER}//Pod/default/${spec.name}`, workload: pod(spec) })),
  ];
}

export function pod(spec: PodSpec): Workload {
  return create(WorkloadSchema, {
    uid: `${CLUSTER}//Pod/default/${spec.name}`,
    name: spec.name,
    namespace: 'default',
    addresses: [ipToBytes(spec.ip)],
    node: spec.node,
    clusterId: CLUSTER,
    serviceAccount: spec.name,
    trustDomain: TRUST_DOMAIN,
    canonicalName: spec.name,
    canonicalRevision: 'v1',
    workloadName: spec.name,
    workloadType: WorkloadType.DEPLOYMENT,
    tunnelProtocol: TunnelProtocol.HBONE,
    services: Object.fromEntries(Object.entries(spec.services ?? {}).map(([name, port]) => [name, create(PortListSchema, { ports: [create(PortSchema, { servicePort: port, targetPort: port })] })])),
  });
}

/** Certificates issued on first use by the harness CA (the same CA in both processes). */
export class LocalCertificates implements CertificateSource {
  private readonly issued = new Map<string, Promise<WorkloadCertificate>>();

  constructor(
    private readonly caCertPem: string,
    private readonly caKeyPem: string,
  ) {}

  certificateFor(identity: string): Promise<WorkloadCertificate> {
    let certificate = this.issued.get(identity);
    if (!certificate) {
      certificate = (async () => {
        const ca = await loadCa(this.caCertPem, this.caKeyPem);
        const leaf = await issueLeaf(ca, { commonName: identity.split('/').pop() ?? 'workload', uris: [identity], client: true, server: true, lifetimeMs: DAY_MS });
        const now = Date.now();
        return { identity, certChainPem: leaf.certPem, keyPem: leaf.keyPem, rootsPem: this.caCertPem, notBefore: new Date(now), notAfter: new Date(now + DAY_MS) };
      })();
      this.issued.set(identity, certificate);
    }
    return certificate;
  }

  roots(): string {
    return this.caCertPem;
  }

  list(): WorkloadCertificate[] {
    return [];
  }

  /** Never renews (runs are short). */
  onRenewed(): () => void {
    return () => undefined;
  }
}

interface Running {
  ports: { outbound: number; inbound: number; inboundPlaintext: number };
  stop(): Promise<void>;
}

async function startWaypoint(config: ZtunnelNodeConfig): Promise<Running> {
  const log = pino({ level: config.logLevel, base: { component: 'waypoint', node: config.node } });
  const state = new ZtunnelState({ network: '', nodeName: config.node, clusterId: CLUSTER, systemNamespace: 'istio-system', logger: log });
  state.applyAddresses(addresses(config), []);
  const spec = config.pods.find((p) => p.name === config.waypointPod);
  if (!spec) throw new Error(`no waypoint pod ${String(config.waypointPod)}`);
  const identity = `spiffe://${TRUST_DOMAIN}/ns/default/sa/${spec.name}`;
  const certificates = new LocalCertificates(config.caCertPem, config.caKeyPem);
  await certificates.certificateFor(identity);
  const waypointConfig = new WaypointConfig('default/waypoint', log);
  const served = (config.services ?? []).filter((s) => s.waypointIp === spec.ip).map(serviceName);
  waypointConfig.apply([{ name: 'default/waypoint', resource: create(WaypointSchema, { name: 'waypoint', namespace: 'default', services: served }) }], []);
  const self = pod(spec);
  const proxy = new WaypointProxy({
    identity,
    certificates,
    state,
    config: waypointConfig,
    self: () => state.workloadByIp(spec.ip) ?? self,
    clusterId: CLUSTER,
    log,
    requestMetrics: new RequestMetrics(),
    proxyMetrics: createProxyMetrics(),
    accessLog: config.accessLog,
    dialAddress: (ip, port) => ({ host: ip, port: port === HBONE_PORT ? (config.hbonePortByIp?.[ip] ?? config.peerHbonePort) : port }),
  });
  await proxy.start(0, spec.ip);
  return { ports: { outbound: 0, inbound: proxy.port(), inboundPlaintext: 0 }, stop: () => proxy.stop(200) };
}

async function start(config: ZtunnelNodeConfig): Promise<Running> {
  if (config.role === 'waypoint') return startWaypoint(config);
  const log = pino({ level: config.logLevel, base: { component: 'ztunnel', node: config.node } });
  const state = new ZtunnelState({ network: '', nodeName: config.node, clusterId: CLUSTER, systemNamespace: 'istio-system', logger: log });
  state.applyAddresses(addresses(config), []);
  const certificates = new LocalCertificates(config.caCertPem, config.caKeyPem);
  // Issue this node's identities before traffic, as a running ztunnel has them.
  for (const spec of config.pods) if (spec.node === config.node) await certificates.certificateFor(`spiffe://${TRUST_DOMAIN}/ns/default/sa/${spec.name}`);
  let inboundPort = -1;
  const originalDestination = (socket: Socket) => {
    const ip = normalizeIp(socket.localAddress ?? '');
    if (socket.localPort === inboundPort) return { ip, port: HBONE_PORT };
    const port = config.appPortByIp[ip];
    return port === undefined ? undefined : { ip, port };
  };
  const proxy = new Proxy({
    state,
    certificates,
    log,
    metrics: createProxyMetrics(),
    clusterId: CLUSTER,
    listen: { outbound: 0, inbound: 0, inboundPlaintext: 0, host: '0.0.0.0' },
    originalDestination,
    hbonePort: HBONE_PORT,
    dialAddress: (ip, port) => ({ host: ip, port: port === HBONE_PORT ? (config.hbonePortByIp?.[ip] ?? config.peerHbonePort) : port }),
  });
  await proxy.start();
  inboundPort = proxy.ports().inbound;
  return { ports: proxy.ports(), stop: () => proxy.stop({ drainTimeoutMs: 200 }) };
}

let trim: ((pad: number) => number) | undefined;
function mallocTrim(): void {
  trim ??= koffi.load('libc.so.6').func('int malloc_trim(size_t pad)') as (pad: number) => number;
  trim(0);
}

const send = (message: ChildMessage) => process.send?.(message);

let inspector: Session | undefined;
function post(method: string, params?: object): Promise<unknown> {
  inspector ??= new Session();
  if (!inspector) throw new Error('no inspector');
  try {
    inspector.connect();
  } catch {
    // already connected
  }
  return new Promise((resolve, reject) => inspector!.post(method, params ?? {}, (error, result) => (error ? reject(error) : resolve(result))));
}

let running: Running | undefined;
process.on('message', (message: ParentMessage) => {
  switch (message.type) {
    case 'start':
      start(message.config).then(
        (proxy) => {
          running = proxy;
          send({ type: 'started', ports: proxy.ports });
        },
        (error: unknown) => send({ type: 'error', message: error instanceof Error ? error.stack ?? error.message : String(error) }),
      );
      return;
    case 'memory':
      if (message.gc && typeof globalThis.gc === 'function') globalThis.gc();
      if (message.trim) mallocTrim();
      send({ type: 'memory', memory: process.memoryUsage() });
      return;
    case 'heap-sampling-start':
      post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true }).then(
        () => send({ type: 'done' }),
        (error: unknown) => send({ type: 'error', message: String(error) }),
      );
      return;
    case 'heap-sampling-stop':
      post('HeapProfiler.stopSampling').then(
        (result) => {
          writeFileSync(message.file, JSON.stringify((result as { profile: unknown }).profile));
          send({ type: 'done' });
        },
        (error: unknown) => send({ type: 'error', message: String(error) }),
      );
      return;
    case 'stop':
      // A normal exit, so that --cpu-prof writes its profile.
      void (running?.stop() ?? Promise.resolve()).finally(() => process.exit(0));
      return;
  }
});
process.on('disconnect', () => process.exit(0));
