/**
 * Runs bench/tools/xds-watch.ts inside a node's network namespace of a lab cluster (the control
 * plane's ClusterIP is reachable only there) and follows its output into an XdsRecorder.
 */
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';
import { serverNameOf } from '../../src/api/addresses.js';
import { CONTROL_PLANE_NAME, TOKEN_AUDIENCE, XDS_PORT, ZTUNNEL_NAME } from '../../src/api/names.js';
import { BenchCommandError, GiveUpWaiting, netnsPlace, tail, waitUntil, type Place, type Spawned } from '../exec.js';
import { kubectl } from '../lab-kube.js';
import { SYSTEM_NAMESPACE, type LabCluster } from '../multicluster-lab.js';
import { parseXdsEvent, XdsRecorder } from './xds-events.js';

const watchTool = fileURLToPath(new URL('../tools/xds-watch.ts', import.meta.url));
const tsxLoader = import.meta.resolve('tsx');

/** Where and as whom a watcher connects: like the cluster's ztunnels, with a token of their service account. */
export interface WatcherTarget {
  clusterId: string;
  address: string;
  serverName: string;
  tokenFile: string;
  rootsFile: string;
  /** A node's network namespace of the cluster. */
  netns: string;
}

export async function watcherTarget(cluster: LabCluster, workDir: string): Promise<WatcherTarget> {
  const token = await kubectl(cluster.context, ['create', 'token', ZTUNNEL_NAME, '-n', SYSTEM_NAMESPACE, '--audience', TOKEN_AUDIENCE, '--duration', '2h']);
  const roots = await kubectl(cluster.context, ['get', 'configmap', 'istio-ca-root-cert', '-n', SYSTEM_NAMESPACE, '-o', 'jsonpath={.data.root-cert\\.pem}']);
  const clusterIp = (await kubectl(cluster.context, ['get', 'service', CONTROL_PLANE_NAME, '-n', SYSTEM_NAMESPACE, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  const node = cluster.nodes[0];
  if (!clusterIp || !node) throw new BenchCommandError(`${cluster.name}: no ${CONTROL_PLANE_NAME} ClusterIP or no node to run the watcher in`);
  const tokenFile = join(workDir, `xds-token-${cluster.name}`);
  const rootsFile = join(workDir, `xds-roots-${cluster.name}.pem`);
  writeFileSync(tokenFile, token.trim(), { mode: 0o600 });
  writeFileSync(rootsFile, roots);
  return {
    clusterId: cluster.name,
    address: `${clusterIp}:${XDS_PORT}`,
    serverName: serverNameOf(`${CONTROL_PLANE_NAME}.${SYSTEM_NAMESPACE}.svc:${XDS_PORT}`),
    tokenFile,
    rootsFile,
    netns: node.netns,
  };
}

export function watchArgv(target: WatcherTarget): string[] {
  return [
    process.execPath, '--import', tsxLoader, watchTool,
    '--address', target.address, '--server-name', target.serverName, '--cluster-id', target.clusterId,
    '--token-file', target.tokenFile, '--roots-file', target.rootsFile,
  ];
}

/** A running watcher; its events accumulate in `recorder` (read from its output every 20 ms). */
export class XdsWatcher {
  readonly recorder = new XdsRecorder();
  private readonly fd: number;
  private offset = 0;
  private partial = '';
  private readonly buffer = Buffer.alloc(1 << 20);
  private readonly decoder = new StringDecoder('utf8');
  private readonly timer: NodeJS.Timeout;

  private constructor(
    readonly label: string,
    private readonly process: Spawned,
  ) {
    this.fd = openSync(process.logFile, 'r');
    this.timer = setInterval(() => this.readNew(), 20);
  }

  /** Starts a watcher in the target's node namespace (or in `place`). */
  static start(target: WatcherTarget, workDir: string, tag: string, place: Place = netnsPlace(`node namespace ${target.netns}`, target.netns)): XdsWatcher {
    const logFile = join(workDir, `xds-watch-${tag}.log`);
    writeFileSync(logFile, '');
    return new XdsWatcher(`xDS watcher ${tag} (${target.clusterId})`, place.spawn(watchArgv(target), logFile));
  }

  private readNew(): void {
    for (;;) {
      const n = readSync(this.fd, this.buffer, 0, this.buffer.length, this.offset);
      if (n <= 0) break;
      this.offset += n;
      const lines = (this.partial + this.decoder.write(this.buffer.subarray(0, n))).split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) {
        const event = parseXdsEvent(line);
        if (event) this.recorder.add(event);
      }
    }
  }

  /** Waits until `probe` returns a value (checked after every event); throws if the watcher dies. */
  async waitFor<T>(what: string, probe: (recorder: XdsRecorder) => T | undefined, timeoutMs: number): Promise<T> {
    let found: T | undefined;
    await waitUntil(`${what} (${this.label})`, async () => {
      this.readNew();
      found = probe(this.recorder);
      if (found !== undefined) return true;
      if (!this.process.alive()) throw new GiveUpWaiting(`${this.label} exited; its log (${this.process.logFile}):\n${tail(this.process.logFile)}`);
      return false;
    }, timeoutMs, 20);
    return found!;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.process.stop();
    this.readNew();
    closeSync(this.fd);
  }
}
