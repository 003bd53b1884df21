import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Container, V1ContainerStatus, V1Pod, V1PodCondition, V1Probe } from '@kubernetes/client-node';
import type { Logger } from '../../util/log.js';
import { CLUSTER_DOMAIN, podAddressRange, type ClusterPlan, type NodePlan } from '../plan.js';
import { isAlive, terminate } from '../processes.js';
import { writeFileAtomic } from '../state.js';
import { containerEnv, expandVariables } from './env.js';
import { resolveImage, UnknownImageError } from './images.js';
import { errorMessage, mergePatch, statusCode } from '../../kube/index.js';
import type { Kube } from './kube.js';
import { backoffDelay } from '../../util/backoff.js';
import { buildLaunchCommand, type Mount } from './pod-launch.js';
import { runInNetns, setUpPodNetwork, tearDownPodNetwork } from './pod-network.js';
import { prepareVolume, type PreparedVolume } from './volumes.js';

type ContainerState =
  | { kind: 'waiting'; reason: string; message?: string }
  | { kind: 'running'; startedAt: Date }
  | { kind: 'terminated'; exitCode: number; reason: string; startedAt?: Date; finishedAt: Date; signal?: string };

interface ContainerRecord {
  spec: V1Container;
  image: string;
  state: ContainerState;
  lastState?: ContainerState;
  restartCount: number;
  ready: boolean;
  child?: ChildProcess;
  pid?: number;
  restartTimer?: NodeJS.Timeout;
  probeTimer?: NodeJS.Timeout;
  probeSuccesses: number;
  probeFailures: number;
  livenessFailures: number;
}

interface PodRecord {
  uid: string;
  namespace: string;
  name: string;
  node: NodePlan;
  dir: string;
  pod: V1Pod;
  netns?: string;
  ip?: string;
  volumes: Map<string, PreparedVolume>;
  containers: Map<string, ContainerRecord>;
  startedAt?: Date;
  stopping: boolean;
  initError?: { reason: string; message: string };
  statusTimer?: NodeJS.Timeout;
  refreshTimer?: NodeJS.Timeout;
  queue: Promise<void>;
}

interface PersistedPod {
  uid: string;
  namespace: string;
  name: string;
  node: string;
  netns?: string;
  ip?: string;
  pids: number[];
}

const MAX_BACKOFF_MS = 5 * 60_000;
const MAX_GRACE_SECONDS = 10;

/** The kubelet of the lab: runs the pods bound to this cluster's nodes and reports their status. */
export class PodRuntime {
  private readonly pods = new Map<string, PodRecord>();
  private readonly usedIps = new Map<string, Set<string>>();
  private readonly nodesByName: Map<string, NodePlan>;

  constructor(
    private readonly kube: Kube,
    private readonly cluster: ClusterPlan,
    private readonly podsRoot: string,
    private readonly labDirectory: string,
    private readonly log: Logger,
  ) {
    this.nodesByName = new Map(cluster.nodes.map((n) => [n.name, n]));
    for (const n of cluster.nodes) this.usedIps.set(n.name, new Set());
  }

  /** Cleans up pods left by a previous agent (their processes are no longer ours to watch). */
  async recoverLeftovers(): Promise<void> {
    if (!existsSync(this.podsRoot)) return;
    for (const entry of readdirSync(this.podsRoot)) {
      const file = join(this.podsRoot, entry, 'pod.json');
      if (!existsSync(file)) continue;
      try {
        const saved = JSON.parse(readFileSync(file, 'utf8')) as PersistedPod;
        await terminate(saved.pids.filter(isAlive), 2000);
        const node = this.nodesByName.get(saved.node);
        if (node && saved.netns) await tearDownPodNetwork(node, saved.uid, saved.ip);
      } catch (err) {
        this.log.warn({ err: String(err), entry }, 'could not clean up leftover pod');
      }
      rmSync(join(this.podsRoot, entry), { recursive: true, force: true });
    }
  }

  ownsNode(name: string | undefined): boolean {
    return name !== undefined && this.nodesByName.has(name);
  }

  upsert(pod: V1Pod): void {
    if (!this.ownsNode(pod.spec?.nodeName)) return;
    const uid = pod.metadata!.uid!;
    let record = this.pods.get(uid);
    if (!record) {
      if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') {
        if (!pod.metadata?.deletionTimestamp) return;
      }
      record = {
        uid,
        namespace: pod.metadata!.namespace!,
        name: pod.metadata!.name!,
        node: this.nodesByName.get(pod.spec!.nodeName!)!,
        dir: join(this.podsRoot, `${pod.metadata!.namespace}_${pod.metadata!.name}_${uid}`),
        pod,
        volumes: new Map(),
        containers: new Map(),
        stopping: false,
        queue: Promise.resolve(),
      };
      this.pods.set(uid, record);
    }
    record.pod = pod;
    this.enqueue(record, () => this.sync(record));
  }

  remove(pod: V1Pod): void {
    const record = this.pods.get(pod.metadata?.uid ?? '');
    if (!record) return;
    this.enqueue(record, () => this.stop(record, false));
  }

  /** Where `lab exec` finds a pod's container processes. */
  private persist(record: PodRecord): void {
    const saved: PersistedPod = {
      uid: record.uid,
      namespace: record.namespace,
      name: record.name,
      node: record.node.name,
      netns: record.netns,
      ip: record.ip,
      pids: [...record.containers.values()].flatMap((c) => (c.pid && c.state.kind === 'running' ? [c.pid] : [])),
    };
    const containers = Object.fromEntries([...record.containers].map(([name, c]) => [name, { pid: c.state.kind === 'running' ? c.pid : undefined }]));
    writeFileAtomic(join(record.dir, 'pod.json'), JSON.stringify({ ...saved, containers }, null, 2));
  }

  private enqueue(record: PodRecord, task: () => Promise<void>): void {
    record.queue = record.queue.then(task).catch((err) => this.log.error({ pod: `${record.namespace}/${record.name}`, err: errorMessage(err) }, 'pod sync failed'));
  }

  private async sync(record: PodRecord): Promise<void> {
    if (record.stopping) return;
    if (record.pod.metadata?.deletionTimestamp) {
      await this.stop(record, true);
      return;
    }
    if (record.startedAt || record.initError?.reason === 'ErrImagePull') return;
    await this.start(record);
  }

  private allocateIp(node: NodePlan, preferred?: string): string {
    const used = this.usedIps.get(node.name)!;
    if (preferred && !used.has(preferred) && preferred.startsWith(podAddressRange(node.podCidr).prefix + '.')) {
      used.add(preferred);
      return preferred;
    }
    const { prefix, first, last } = podAddressRange(node.podCidr);
    for (let i = first; i <= last; i++) {
      const candidate = `${prefix}.${i}`;
      if (!used.has(candidate)) {
        used.add(candidate);
        return candidate;
      }
    }
    throw new Error(`node ${node.name} has no free pod address in ${node.podCidr}`);
  }

  private async start(record: PodRecord): Promise<void> {
    const pod = record.pod;
    const spec = pod.spec!;
    const where = `${record.namespace}/${record.name}`;
    record.initError = undefined;
    for (const container of spec.containers) {
      const image = container.image ?? '';
      if (!record.containers.has(container.name)) {
        record.containers.set(container.name, {
          spec: container,
          image,
          state: { kind: 'waiting', reason: 'ContainerCreating' },
          restartCount: 0,
          ready: false,
          probeSuccesses: 0,
          probeFailures: 0,
          livenessFailures: 0,
        });
      }
      try {
        resolveImage(image);
      } catch (err) {
        if (!(err instanceof UnknownImageError)) throw err;
        const c = record.containers.get(container.name)!;
        c.state = { kind: 'waiting', reason: 'ErrImagePull', message: err.message };
        record.initError = { reason: 'ErrImagePull', message: err.message };
        this.log.warn({ pod: where, container: container.name, image }, err.message);
      }
    }
    if (record.initError) {
      this.scheduleStatus(record);
      return;
    }
    mkdirSync(record.dir, { recursive: true });
    const hostNetwork = spec.hostNetwork ?? false;
    if (!record.netns) {
      if (hostNetwork) {
        record.netns = record.node.netns;
        record.ip = record.node.ip;
      } else {
        record.ip = this.allocateIp(record.node, pod.status?.podIP);
        record.netns = await setUpPodNetwork(record.node, record.uid, record.ip);
      }
      this.persist(record);
    }
    try {
      await this.prepareVolumes(record);
    } catch (err) {
      record.initError = { reason: 'ContainerCreating', message: `MountVolume.SetUp failed: ${errorMessage(err)}` };
      for (const c of record.containers.values()) c.state = { kind: 'waiting', reason: 'ContainerCreating', message: record.initError.message };
      this.scheduleStatus(record);
      this.log.warn({ pod: where, err: errorMessage(err) }, 'volume setup failed; retrying in 2s');
      setTimeout(() => this.enqueue(record, () => this.sync(record)), 2000);
      return;
    }
    record.startedAt = new Date();
    for (const initContainer of spec.initContainers ?? []) {
      const code = await this.runToCompletion(record, initContainer);
      if (code !== 0) {
        record.initError = { reason: 'Init:Error', message: `init container ${initContainer.name} exited with ${code}` };
        this.scheduleStatus(record);
        return;
      }
    }
    for (const c of record.containers.values()) await this.launch(record, c);
    this.scheduleStatus(record);
  }

  private async prepareVolumes(record: PodRecord): Promise<void> {
    const root = join(record.dir, 'volumes');
    let refresh: number | undefined;
    for (const volume of record.pod.spec?.volumes ?? []) {
      const prepared = await prepareVolume(this.kube, record.pod, volume, root);
      record.volumes.set(volume.name, prepared);
      if (prepared.refreshAfterSeconds !== undefined) refresh = Math.min(refresh ?? Infinity, prepared.refreshAfterSeconds);
    }
    if (refresh !== undefined) {
      clearTimeout(record.refreshTimer);
      record.refreshTimer = setTimeout(() => this.enqueue(record, () => this.refreshVolumes(record)), refresh * 1000);
      record.refreshTimer.unref();
    }
  }

  /** Re-issues projected service-account tokens before they expire, as the kubelet does. */
  private async refreshVolumes(record: PodRecord): Promise<void> {
    if (record.stopping) return;
    for (const volume of record.pod.spec?.volumes ?? []) {
      if (volume.projected?.sources?.some((s) => s.serviceAccountToken)) {
        try {
          await prepareVolume(this.kube, record.pod, volume, join(record.dir, 'volumes'));
        } catch (err) {
          this.log.warn({ pod: `${record.namespace}/${record.name}`, volume: volume.name, err: errorMessage(err) }, 'token refresh failed');
        }
      }
    }
    record.refreshTimer = setTimeout(() => this.enqueue(record, () => this.refreshVolumes(record)), 60_000);
    record.refreshTimer.unref();
  }

  private etcFiles(record: PodRecord): Record<string, string> {
    const spec = record.pod.spec!;
    const hostname = spec.hostname ?? record.name;
    const fqdn = spec.subdomain ? `${hostname}.${spec.subdomain}.${record.namespace}.svc.${CLUSTER_DOMAIN}` : undefined;
    const files: Record<string, string> = {
      hostname: `${hostname}\n`,
      hosts: `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${record.ip}\t${fqdn ? `${fqdn} ` : ''}${hostname}\n`,
    };
    const policy = spec.dnsPolicy ?? 'ClusterFirst';
    const clusterDns = policy === 'ClusterFirstWithHostNet' || (policy === 'ClusterFirst' && !spec.hostNetwork);
    if (clusterDns) {
      const ns = record.namespace;
      files['resolv.conf'] = `search ${ns}.svc.${CLUSTER_DOMAIN} svc.${CLUSTER_DOMAIN} ${CLUSTER_DOMAIN}\nnameserver ${this.cluster.dnsServiceIp}\noptions ndots:5\n`;
    } else if (policy === 'None' && spec.dnsConfig) {
      const c = spec.dnsConfig;
      files['resolv.conf'] =
        `${c.searches?.length ? `search ${c.searches.join(' ')}\n` : ''}${(c.nameservers ?? []).map((n) => `nameserver ${n}\n`).join('')}` +
        `${c.options?.length ? `options ${c.options.map((o) => (o.value ? `${o.name}:${o.value}` : o.name)).join(' ')}\n` : ''}`;
    }
    return files;
  }

  private mountsFor(record: PodRecord, container: V1Container): Mount[] {
    return (container.volumeMounts ?? []).map((m) => {
      const volume = record.volumes.get(m.name);
      if (!volume) throw new Error(`container ${container.name} mounts unknown volume "${m.name}"`);
      return { source: m.subPath ? join(volume.hostPath, m.subPath) : volume.hostPath, target: m.mountPath, readOnly: m.readOnly ?? false };
    });
  }

  private async processSpec(record: PodRecord, container: V1Container): Promise<{ argv: string[]; env: Record<string, string> }> {
    const image = resolveImage(container.image ?? '', container.command, container.args);
    const base: Record<string, string> = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOSTNAME: record.pod.spec?.hostname ?? record.name,
      KUBERNETES_SERVICE_HOST: this.cluster.kubernetesServiceIp,
      KUBERNETES_SERVICE_PORT: '443',
      KUBERNETES_SERVICE_PORT_HTTPS: '443',
      KUBERNETES_PORT: `tcp://${this.cluster.kubernetesServiceIp}:443`,
      ...image.env,
    };
    const env = await containerEnv(this.kube, record.pod, container, base);
    const argv = image.argv.map((a) => expandVariables(a, env));
    const launch = buildLaunchCommand(
      {
        netns: record.netns!,
        hostname: record.pod.spec?.hostname ?? record.name,
        podDir: record.dir,
        container: container.name,
        etcFiles: this.etcFiles(record),
        mounts: this.mountsFor(record, container),
        workingDir: container.workingDir,
        argv,
      },
      this.labDirectory,
    );
    return { argv: ['ip', 'netns', 'exec', record.netns!, ...launch], env };
  }

  private spawnContainer(record: PodRecord, container: V1Container, argv: string[], env: Record<string, string>): ChildProcess {
    const logFile = join(record.dir, 'logs', `${container.name}.log`);
    mkdirSync(join(record.dir, 'logs'), { recursive: true });
    const fd = openSync(logFile, 'a');
    try {
      writeFileAtomic(join(record.dir, 'env', `${container.name}.json`), JSON.stringify(env));
      return spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
  }

  private async runToCompletion(record: PodRecord, container: V1Container): Promise<number> {
    try {
      const { argv, env } = await this.processSpec(record, container);
      const child = this.spawnContainer(record, container, argv, env);
      return await new Promise<number>((resolve) => {
        child.on('error', () => resolve(127));
        child.on('exit', (code) => resolve(code ?? 137));
      });
    } catch (err) {
      this.log.warn({ pod: `${record.namespace}/${record.name}`, container: container.name, err: errorMessage(err) }, 'init container failed to start');
      return 128;
    }
  }

  private async launch(record: PodRecord, c: ContainerRecord): Promise<void> {
    if (record.stopping) return;
    const where = `${record.namespace}/${record.name}`;
    let child: ChildProcess;
    try {
      const { argv, env } = await this.processSpec(record, c.spec);
      child = this.spawnContainer(record, c.spec, argv, env);
    } catch (err) {
      c.state = { kind: 'waiting', reason: 'CreateContainerConfigError', message: errorMessage(err) };
      this.log.warn({ pod: where, container: c.spec.name, err: errorMessage(err) }, 'container could not start');
      this.scheduleStatus(record);
      this.scheduleRestart(record, c);
      return;
    }
    const startedAt = new Date();
    c.child = child;
    c.pid = child.pid;
    c.state = { kind: 'running', startedAt };
    c.ready = !c.spec.readinessProbe;
    c.probeFailures = 0;
    c.probeSuccesses = 0;
    c.livenessFailures = 0;
    this.persist(record);
    this.log.info({ pod: where, container: c.spec.name, pid: child.pid, node: record.node.name, ip: record.ip }, 'container started');
    child.on('error', (err) => this.log.warn({ pod: where, container: c.spec.name, err: err.message }, 'container process error'));
    child.on('exit', (code, signal) => this.onExit(record, c, startedAt, code, signal));
    this.startProbes(record, c);
  }

  private onExit(record: PodRecord, c: ContainerRecord, startedAt: Date, code: number | null, signal: NodeJS.Signals | null): void {
    clearTimeout(c.probeTimer);
    c.child = undefined;
    const exitCode = code ?? 128 + (signal === 'SIGKILL' ? 9 : 15);
    c.lastState = c.state;
    c.state = { kind: 'terminated', exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', startedAt, finishedAt: new Date(), signal: signal ?? undefined };
    c.ready = false;
    this.persist(record);
    if (record.stopping) return;
    this.log.info({ pod: `${record.namespace}/${record.name}`, container: c.spec.name, exitCode, signal }, 'container exited');
    const policy = record.pod.spec?.restartPolicy ?? 'Always';
    if (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0)) this.scheduleRestart(record, c, Date.now() - startedAt.getTime());
    this.scheduleStatus(record);
  }

  private scheduleRestart(record: PodRecord, c: ContainerRecord, ranForMs = 0): void {
    if (record.stopping) return;
    // As the kubelet: 10 s doubling per restart up to 5 min, back to 10 s after 10 min of running; no jitter (the message shows it).
    const backoff = ranForMs > 10 * 60_000 ? 10_000 : backoffDelay(c.restartCount + 1, { initialMs: 10_000, maxMs: MAX_BACKOFF_MS, jitter: 0 });
    const delay = c.restartCount === 0 ? 1000 : backoff;
    if (c.state.kind === 'terminated') c.lastState = c.state;
    c.state = { kind: 'waiting', reason: 'CrashLoopBackOff', message: `back-off ${Math.round(delay / 1000)}s restarting failed container=${c.spec.name} pod=${record.name}` };
    clearTimeout(c.restartTimer);
    c.restartTimer = setTimeout(() => {
      c.restartCount++;
      this.enqueue(record, async () => {
        await this.launch(record, c);
        this.scheduleStatus(record);
      });
    }, delay);
  }

  private startProbes(record: PodRecord, c: ContainerRecord): void {
    const readiness = c.spec.readinessProbe;
    const liveness = c.spec.livenessProbe;
    if (!readiness && !liveness) return;
    const period = Math.max(1, Math.min(readiness?.periodSeconds ?? 10, liveness?.periodSeconds ?? 10));
    const initialDelay = Math.min(readiness?.initialDelaySeconds ?? 0, liveness?.initialDelaySeconds ?? Infinity);
    const tick = async () => {
      if (record.stopping || c.state.kind !== 'running') return;
      if (readiness) {
        const ok = await this.probe(record, c, readiness);
        const wasReady = c.ready;
        if (ok) {
          c.probeFailures = 0;
          c.probeSuccesses++;
          if (c.probeSuccesses >= (readiness.successThreshold ?? 1)) c.ready = true;
        } else {
          c.probeSuccesses = 0;
          c.probeFailures++;
          if (c.probeFailures >= (readiness.failureThreshold ?? 3) || !c.ready) c.ready = false;
        }
        if (wasReady !== c.ready) this.scheduleStatus(record);
      }
      if (liveness && c.state.kind === 'running') {
        const started = c.state.startedAt.getTime();
        if (Date.now() - started >= (liveness.initialDelaySeconds ?? 0) * 1000) {
          const ok = await this.probe(record, c, liveness);
          c.livenessFailures = ok ? 0 : c.livenessFailures + 1;
          if (c.livenessFailures >= (liveness.failureThreshold ?? 3) && c.pid) {
            this.log.info({ pod: `${record.namespace}/${record.name}`, container: c.spec.name }, 'liveness probe failed; restarting container');
            void terminate([c.pid], 2000);
            return;
          }
        }
      }
      c.probeTimer = setTimeout(() => void tick(), period * 1000);
    };
    c.probeTimer = setTimeout(() => void tick(), Math.max(0, initialDelay) * 1000 + 200);
  }

  private resolvePort(c: ContainerRecord, port: number | string): number | undefined {
    if (typeof port === 'number') return port;
    if (/^\d+$/.test(port)) return Number(port);
    return c.spec.ports?.find((p) => p.name === port)?.containerPort;
  }

  private async probe(record: PodRecord, c: ContainerRecord, probe: V1Probe): Promise<boolean> {
    const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
    if (probe.httpGet) {
      const port = this.resolvePort(c, probe.httpGet.port as number | string);
      const host = probe.httpGet.host ?? record.ip;
      const scheme = (probe.httpGet.scheme ?? 'HTTP').toLowerCase();
      const url = `${scheme}://${host}:${port}${probe.httpGet.path ?? '/'}`;
      const headers = (probe.httpGet.httpHeaders ?? []).flatMap((h) => ['-H', `${h.name}: ${h.value}`]);
      const { ok, stdout } = await runInNetns(record.node.netns, ['curl', '-sk', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', String(timeoutMs / 1000), ...headers, url], timeoutMs + 1000);
      const status = Number(stdout.trim());
      return ok && status >= 200 && status < 400;
    }
    if (probe.tcpSocket) {
      const port = this.resolvePort(c, probe.tcpSocket.port as number | string);
      const host = probe.tcpSocket.host ?? record.ip;
      return (await runInNetns(record.node.netns, ['timeout', String(timeoutMs / 1000), 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port}`], timeoutMs + 1000)).ok;
    }
    if (probe.exec?.command?.length && c.pid) {
      return (await runInNetns(record.node.netns, ['timeout', String(timeoutMs / 1000), 'nsenter', '-t', String(c.pid), '-m', '-u', '-n', '--', ...probe.exec.command], timeoutMs + 1000)).ok;
    }
    return true;
  }

  /** Stops the containers, frees the network, and (if the API object still exists) finalizes its deletion. */
  private async stop(record: PodRecord, finalize: boolean): Promise<void> {
    if (record.stopping && !finalize) return;
    const first = !record.stopping;
    record.stopping = true;
    if (first) {
      clearTimeout(record.refreshTimer);
      clearTimeout(record.statusTimer);
      const pids: number[] = [];
      for (const c of record.containers.values()) {
        clearTimeout(c.restartTimer);
        clearTimeout(c.probeTimer);
        if (c.pid && c.state.kind === 'running') pids.push(c.pid);
      }
      const grace = Math.min(MAX_GRACE_SECONDS, record.pod.metadata?.deletionGracePeriodSeconds ?? record.pod.spec?.terminationGracePeriodSeconds ?? 30);
      await terminate(pids, grace * 1000);
      if (record.netns && !record.pod.spec?.hostNetwork) await tearDownPodNetwork(record.node, record.uid, record.ip);
      if (record.ip && !record.pod.spec?.hostNetwork) this.usedIps.get(record.node.name)?.delete(record.ip);
      rmSync(record.dir, { recursive: true, force: true });
      this.log.info({ pod: `${record.namespace}/${record.name}`, node: record.node.name }, 'pod stopped and cleaned up');
    }
    if (finalize) {
      try {
        await this.kube.core.deleteNamespacedPod({
          name: record.name,
          namespace: record.namespace,
          gracePeriodSeconds: 0,
          body: { gracePeriodSeconds: 0, preconditions: { uid: record.uid } },
        });
      } catch (err) {
        const code = statusCode(err);
        if (code !== 404 && code !== 409) throw err;
      }
    }
    this.pods.delete(record.uid);
  }

  private scheduleStatus(record: PodRecord): void {
    if (record.statusTimer || record.stopping) return;
    record.statusTimer = setTimeout(() => {
      record.statusTimer = undefined;
      this.enqueue(record, () => this.reportStatus(record));
    }, 30);
  }

  private containerStatus(name: string, c: ContainerRecord): V1ContainerStatus {
    const render = (s: ContainerState | undefined) => {
      if (!s) return {};
      if (s.kind === 'waiting') return { waiting: { reason: s.reason, message: s.message } };
      if (s.kind === 'running') return { running: { startedAt: s.startedAt } };
      return { terminated: { exitCode: s.exitCode, reason: s.reason, startedAt: s.startedAt, finishedAt: s.finishedAt, signal: undefined } };
    };
    return {
      name,
      image: c.image,
      imageID: `ambit-lab://${c.image}`,
      containerID: c.pid ? `ambit-lab://${c.pid}` : undefined,
      ready: c.ready && c.state.kind === 'running',
      started: c.state.kind === 'running',
      restartCount: c.restartCount,
      state: render(c.state),
      lastState: render(c.lastState?.kind === 'terminated' ? c.lastState : undefined),
    };
  }

  private async reportStatus(record: PodRecord): Promise<void> {
    if (record.stopping) return;
    const containers = [...record.containers.entries()];
    const allReady = containers.length > 0 && containers.every(([, c]) => c.ready && c.state.kind === 'running');
    const anyRunning = containers.some(([, c]) => c.state.kind === 'running' || c.state.kind === 'waiting' && c.restartCount > 0);
    const policy = record.pod.spec?.restartPolicy ?? 'Always';
    const allTerminated = containers.every(([, c]) => c.state.kind === 'terminated');
    let phase = 'Pending';
    if (record.startedAt && allTerminated && policy !== 'Always') {
      phase = containers.every(([, c]) => c.state.kind === 'terminated' && c.state.exitCode === 0) ? 'Succeeded' : policy === 'Never' ? 'Failed' : 'Running';
    } else if (record.startedAt && (anyRunning || containers.some(([, c]) => c.restartCount > 0))) phase = 'Running';
    const now = new Date();
    const condition = (type: string, status: boolean, reason?: string): V1PodCondition => {
      const previous = record.pod.status?.conditions?.find((x) => x.type === type);
      const value = status ? 'True' : 'False';
      return { type, status: value, reason, lastProbeTime: undefined, lastTransitionTime: previous?.status === value ? previous.lastTransitionTime : now };
    };
    const status = {
      phase,
      hostIP: record.node.ip,
      podIP: record.ip,
      podIPs: record.ip ? [{ ip: record.ip }] : undefined,
      startTime: record.startedAt ?? record.pod.status?.startTime ?? now,
      message: record.initError?.message,
      conditions: [
        condition('Initialized', !record.initError || record.initError.reason !== 'Init:Error'),
        condition('Ready', allReady, allReady ? undefined : 'ContainersNotReady'),
        condition('ContainersReady', allReady, allReady ? undefined : 'ContainersNotReady'),
        condition('PodScheduled', true),
      ],
      containerStatuses: containers.map(([name, c]) => this.containerStatus(name, c)),
    };
    try {
      const updated = await this.kube.core.patchNamespacedPodStatus({ name: record.name, namespace: record.namespace, body: { status } }, mergePatch);
      if (updated.metadata?.uid === record.uid) record.pod = { ...record.pod, status: updated.status };
    } catch (err) {
      if (statusCode(err) === 404) return;
      this.log.warn({ pod: `${record.namespace}/${record.name}`, err: errorMessage(err) }, 'status update failed; retrying');
      setTimeout(() => this.scheduleStatus(record), 1000);
    }
  }

  async shutdown(): Promise<void> {
    for (const record of this.pods.values()) {
      for (const c of record.containers.values()) {
        clearTimeout(c.restartTimer);
        clearTimeout(c.probeTimer);
      }
      clearTimeout(record.refreshTimer);
      clearTimeout(record.statusTimer);
    }
  }
}
