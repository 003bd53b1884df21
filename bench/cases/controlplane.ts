import { podWorkloadUid, serviceHostname, serviceResourceName } from '../../src/api/resources.js';
import { syntheticWorkloadUid } from '../../src/controlplane/multicluster/mesh-resources.js';
import { CONTROL_PLANE_CONTAINER, CONTROL_PLANE_NAME } from '../../src/api/names.js';
import { podProcesses } from '../lab-processes.js';
import { SYSTEM_NAMESPACE, type LabCluster } from '../multicluster-lab.js';
import { CostSampler, snapshot, withDescendants, type GroupCost, type ProcessGroup } from '../process-cost.js';
import type { CaseRow } from '../report/types.js';
import { summarizeLatency, type LatencySample } from '../scale/latency-summary.js';
import { SCALE_NAMESPACE, SCALE_SERVICE, scalePodName, scaleSizes, type ScaleSizes } from '../scale/objects.js';
import { API_CONCURRENCY, ScaleCluster } from '../scale/population.js';
import { sampleReadyLatency } from '../scale/ready-latency.js';
import type { FirstFullConfig, XdsRecorder } from '../scale/xds-events.js';
import { watcherTarget, XdsWatcher, type WatcherTarget } from '../scale/xds-watcher.js';
import { errorMessage } from './case.js';
import type { TwoNetworkCase, TwoNetworkCaseContext } from './two-network-case.js';
import { controlPlaneVariant, READY_TO_LOCAL_ZTUNNEL, READY_TO_REMOTE_ZTUNNEL } from './two-network-variants.js';

const SAMPLE_TIMEOUT_MS = 10_000;
/** Between two readiness samples: longer than the control plane's push batching (20 ms quiet, 100 ms at most). */
const SAMPLE_PAUSE_MS = 150;
/** A full config is complete once nothing more arrived for this long after the first response. */
const QUIET_MS = 1000;

const scaleServiceKey = serviceResourceName(SCALE_NAMESPACE, serviceHostname(SCALE_SERVICE, SCALE_NAMESPACE));

/** The workload standing, in a cluster's xDS, for every scale pod of another network. */
export const scaleSyntheticUid = (network: string) => syntheticWorkloadUid(network, scaleServiceKey);

const podPrefix = (cluster: string) => podWorkloadUid(cluster, SCALE_NAMESPACE, '');

/**
 * A cluster's watcher has everything once it has every local scale pod with its health, and the
 * synthetic workload of the other network's scale pods with the capacity of their Ready ones.
 */
export function hasConverged(recorder: XdsRecorder, local: LabCluster, remote: LabCluster, sizes: ScaleSizes): boolean {
  const ready = sizes.podsPerCluster - sizes.latencySamples;
  const pods = recorder.countWorkloads(podPrefix(local.name));
  return pods.healthy === ready && pods.unhealthy === sizes.latencySamples && recorder.state.get(scaleSyntheticUid(remote.network))?.capacity === ready;
}

/** Resolves once the watcher's full config has arrived and nothing more came for QUIET_MS. */
async function firstFullConfig(target: WatcherTarget, context: TwoNetworkCaseContext, tag: string): Promise<FirstFullConfig> {
  const watcher = XdsWatcher.start(target, context.workDir, tag);
  try {
    await watcher.waitFor('the first full config, then a quiet second', (r) => {
      const synced = r.events.some((e) => e.ev === 'synced');
      const last = r.events[r.events.length - 1];
      return synced && last && Date.now() - last.t >= QUIET_MS ? true : undefined;
    }, 120_000);
    return watcher.recorder.firstFullConfig(QUIET_MS);
  } finally {
    await watcher.stop();
  }
}

const rssNow = (group: ProcessGroup) => snapshot(withDescendants(group.pids())).rssMiB;
const secondsSince = (start: number) => Math.round((Date.now() - start) / 100) / 10;

interface ControlPlaneFigures {
  rssBeforeMiB: number;
  create: GroupCost;
  after: GroupCost;
  rssAfterMiB: number;
  firstConfig: FirstFullConfig;
}

function controlPlaneRow(cluster: LabCluster, f: ControlPlaneFigures): CaseRow {
  return {
    path: 'ambit',
    variant: controlPlaneVariant(cluster.name),
    values: {
      rssBeforeMiB: f.rssBeforeMiB,
      rssMaxMiB: Math.max(f.create.rssMaxMiB, f.after.rssMaxMiB),
      rssAfterMiB: f.rssAfterMiB,
      cpuSeconds: f.create.cpuSeconds,
      firstConfigMs: f.firstConfig.syncedMs,
      firstConfigResources: f.firstConfig.resources,
    },
  };
}

function latencyRow(variant: string, samples: LatencySample[]): CaseRow {
  const s = summarizeLatency(samples, SAMPLE_TIMEOUT_MS);
  return { path: 'ambit', variant, values: { p50Ms: s.p50Ms, p99Ms: s.p99Ms, maxMs: s.maxMs, samples: s.samples, missed: s.missed } };
}

export const controlPlaneCase: TwoNetworkCase = {
  id: 'controlplane',
  title: 'Control plane at scale: pods over two clusters, pod Ready → ztunnel, first full config, RSS and CPU',
  async run(context) {
    const { log } = context;
    const sizes = scaleSizes(context.quick);
    const clusters = context.lab.clusters;
    const [c1, c2] = clusters;
    const other = (i: number) => clusters[1 - i]!;
    const scale = [new ScaleCluster(c1, 0, sizes, log), new ScaleCluster(c2, 1, sizes, log)] as const;
    const controlPlanes = await Promise.all(clusters.map((c) => podProcesses(c.name, SYSTEM_NAMESPACE, `app=${CONTROL_PLANE_NAME}`, CONTROL_PLANE_CONTAINER, `control plane of ${c.name}`)));
    const targets = await Promise.all(clusters.map((c) => watcherTarget(c, context.workDir)));
    const watchers: XdsWatcher[] = [];
    const rows: CaseRow[] = [];
    const params: Record<string, number> = { podsPerCluster: sizes.podsPerCluster, totalPods: 2 * sizes.podsPerCluster, fakeNodesPerCluster: sizes.fakeNodesPerCluster, latencySamples: sizes.latencySamples, apiConcurrency: API_CONCURRENCY };
    try {
      for (const s of scale) await s.removeLeftovers();
      // One watcher per cluster from before the first pod: it tells when each control plane has everything.
      const progress = targets.map((t, i) => XdsWatcher.start(t, context.workDir, `progress-${i + 1}`));
      watchers.push(...progress);
      await Promise.all(progress.map((w) => w.waitFor('the first full config', (r) => (r.events.some((e) => e.ev === 'synced') ? true : undefined), 60_000)));

      const rssBefore = controlPlanes.map(rssNow);
      const createWindow = new CostSampler(controlPlanes, 500);
      const started = Date.now();
      log(`  ${sizes.fakeNodesPerCluster} fake nodes and ${sizes.podsPerCluster} pods per cluster (${sizes.latencySamples} of them not Ready)`);
      await Promise.all(scale.map(async (s) => {
        await s.createNodes();
        await s.createNamespaceAndService();
        await s.createPods();
      }));
      params.createSeconds = secondsSince(started);
      await Promise.all(progress.map((w, i) => w.waitFor('every scale pod, and the other network\'s synthetic workload at full capacity', (r) => (hasConverged(r, clusters[i]!, other(i), sizes) ? true : undefined), 300_000)));
      params.convergedSeconds = secondsSince(started);
      const create = createWindow.stop();
      log(`  created in ${params.createSeconds} s, in both control planes' xDS after ${params.convergedSeconds} s; control plane CPU ${create.map((c) => c.cpuSeconds.toFixed(1)).join(' / ')} s, RSS max ${create.map((c) => c.rssMaxMiB.toFixed(0)).join(' / ')} MiB`);

      const afterWindow = new CostSampler(controlPlanes, 500);
      const firstConfigs: FirstFullConfig[] = [];
      for (const [i, target] of targets.entries()) {
        const config = await firstFullConfig(target, context, `fresh-${i + 1}`);
        log(`  a new watcher of ${clusters[i]!.name}: ${config.resources} resources in ${config.syncedMs} ms (${config.fromProcessStartMs} ms from process start)`);
        firstConfigs.push(config);
      }

      const watcher = progress[0]!;
      const notReady = Array.from({ length: sizes.latencySamples }, (_, k) => sizes.podsPerCluster - sizes.latencySamples + k);
      const readyBefore = sizes.podsPerCluster - sizes.latencySamples;
      const remote = await sampleReadyLatency({
        population: scale[1],
        watcher,
        podIndexes: notReady,
        expect: (_, sample) => ({ name: scaleSyntheticUid(c2.network), accept: (e) => (e.capacity ?? 0) >= readyBefore + sample + 1 }),
        timeoutMs: SAMPLE_TIMEOUT_MS,
        pauseMs: SAMPLE_PAUSE_MS,
        stopped: context.stopped,
      });
      const local = await sampleReadyLatency({
        population: scale[0],
        watcher,
        podIndexes: notReady,
        expect: (podIndex) => ({ name: podWorkloadUid(c1.name, SCALE_NAMESPACE, scalePodName(podIndex)), accept: (e) => e.status === 'HEALTHY' }),
        timeoutMs: SAMPLE_TIMEOUT_MS,
        pauseMs: SAMPLE_PAUSE_MS,
        stopped: context.stopped,
      });
      const after = afterWindow.stop();
      controlPlanes.forEach((group, i) => {
        rows.push(controlPlaneRow(clusters[i]!, { rssBeforeMiB: rssBefore[i]!, create: create[i]!, after: after[i]!, rssAfterMiB: rssNow(group), firstConfig: firstConfigs[i]! }));
      });
      rows.push(latencyRow(READY_TO_REMOTE_ZTUNNEL, remote), latencyRow(READY_TO_LOCAL_ZTUNNEL, local));
      for (const row of rows.slice(-2)) log(`  ${row.variant}: p50 ${row.values.p50Ms} ms, p99 ${row.values.p99Ms} ms, max ${row.values.maxMs} ms, ${row.values.missed} missed of ${row.values.samples}`);
    } catch (err) {
      log(`  FAILED: ${errorMessage(err)}`);
      rows.push({ path: 'ambit', values: {}, error: errorMessage(err) });
    } finally {
      for (const w of watchers) await w.stop().catch(() => undefined);
      for (const s of scale) await s.remove().catch((err: unknown) => log(`  removing the scale objects of ${s.cluster.name}: ${errorMessage(err)}`));
    }
    return {
      id: 'controlplane',
      title: this.title,
      method:
        `In each cluster, ${sizes.fakeNodesPerCluster} Nodes that no agent runs (Ready, heartbeat every 10 s) and ${sizes.podsPerCluster} pods bound to them in the ambient namespace \`${SCALE_NAMESPACE}\`, ` +
        `selected by the global headless Service \`${SCALE_SERVICE}\` of both clusters; created through the API (${API_CONCURRENCY} requests in flight per cluster), each followed by a status PATCH (Running, a unique address, Ready), as kwok does. ` +
        'An xDS watcher (bench/tools/xds-watch.ts: the ztunnel xDS client, authenticated with a token of the ztunnel service account) runs in a node namespace of each cluster and timestamps every resource it receives. ' +
        'Control plane CPU (utime + stime) covers creating the pods until both watchers had every pod and the other network\'s synthetic workload at full capacity; RSS (VmRSS) before, largest over the whole case, and at the end. ' +
        `First full config: a new watcher after that, from opening its stream to the first response of every type (the full state), with the number of resources. ` +
        `Pod Ready → ztunnel: ${sizes.latencySamples} pods of each cluster start Running but not Ready; one at a time (${SAMPLE_PAUSE_MS} ms apart), from just before the status PATCH to the arrival at ${c1.name}'s watcher of ` +
        `the synthetic workload ${scaleSyntheticUid(c2.network)} with one more capacity (a pod of ${c2.name}), or of the pod's own workload turning HEALTHY (a pod of ${c1.name}); a sample not there after ${SAMPLE_TIMEOUT_MS / 1000} s counts as ${SAMPLE_TIMEOUT_MS / 1000} s (missed). ` +
        'Clean-up: the namespace and the fake nodes are deleted',
      params,
      metrics: [
        { key: 'rssBeforeMiB', label: 'RSS before', unit: 'MiB', digits: 1 },
        { key: 'rssMaxMiB', label: 'RSS max', unit: 'MiB', digits: 1 },
        { key: 'rssAfterMiB', label: 'RSS at the end', unit: 'MiB', digits: 1 },
        { key: 'cpuSeconds', label: 'CPU while creating', unit: 's', digits: 1 },
        { key: 'firstConfigMs', label: 'first full config', unit: 'ms', digits: 0 },
        { key: 'firstConfigResources', label: 'resources', unit: '', digits: 0 },
        { key: 'p50Ms', label: 'p50', unit: 'ms', digits: 1 },
        { key: 'p99Ms', label: 'p99', unit: 'ms', digits: 1 },
        { key: 'maxMs', label: 'max', unit: 'ms', digits: 1 },
        { key: 'samples', label: 'samples', unit: '', digits: 0 },
        { key: 'missed', label: 'missed', unit: '', digits: 0 },
      ],
      rows,
    };
  },
};
