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
import { TunnelProtocol, WorkloadSchema, WorkloadType, type Workload } from '../../src/gen/istio/workload/workload_pb.js';
import { issueLeaf, loadCa } from '../../src/util/pki.js';
import type { CertificateSource, WorkloadCertificate } from '../../src/ztunnel/identity/types.js';
import { createProxyMetrics } from '../../src/ztunnel/metrics.js';
import { Proxy } from '../../src/ztunnel/proxy/proxy.js';
import { ZtunnelState } from '../../src/ztunnel/state/store.js';

export const TRUST_DOMAIN = 'cluster.local';
export const CLUSTER = 'perf';
export const HBONE_PORT = 15008;

export interface PodSpec {
  name: string;
  ip: string;
  node: string;
}

export interface ZtunnelNodeConfig {
  node: string;
  caCertPem: string;
  caKeyPem: string;
  pods: PodSpec[];
  /** App port of each destination pod IP (what a captured connection to that IP was going to). */
  appPortByIp: Record<string, number>;
  /** Where this node dials the HBONE port of the other node. */
  peerHbonePort: number;
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

function pod(spec: PodSpec): Workload {
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
  });
}

/** Certificates issued on first use by the harness CA (the same CA in both processes). */
class LocalCertificates implements CertificateSource {
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
}

async function start(config: ZtunnelNodeConfig): Promise<Proxy> {
  const log = pino({ level: config.logLevel, base: { component: 'ztunnel', node: config.node } });
  const state = new ZtunnelState({ network: '', nodeName: config.node, clusterId: CLUSTER, systemNamespace: 'istio-system', logger: log });
  state.applyAddresses(
    config.pods.map((spec) => ({ name: `${CLUSTER}//Pod/default/${spec.name}`, workload: pod(spec) })),
    [],
  );
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
    dialAddress: (ip, port) => ({ host: ip, port: port === HBONE_PORT ? config.peerHbonePort : port }),
  });
  await proxy.start();
  inboundPort = proxy.ports().inbound;
  return proxy;
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

let running: Proxy | undefined;
process.on('message', (message: ParentMessage) => {
  switch (message.type) {
    case 'start':
      start(message.config).then(
        (proxy) => {
          running = proxy;
          send({ type: 'started', ports: proxy.ports() });
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
      void (running?.stop({ drainTimeoutMs: 200 }) ?? Promise.resolve()).finally(() => process.exit(0));
      return;
  }
});
process.on('disconnect', () => process.exit(0));
