/**
 * Pod Ready → ztunnel: pods that are Running but not Ready are made Ready one at a time, and each
 * is timed from just before its status PATCH to the arrival, at an xDS watcher, of the resource
 * that shows it (its own workload turning HEALTHY, or a synthetic workload's capacity growing).
 */
import { GiveUpWaiting } from '../exec.js';
import type { LatencySample } from './latency-summary.js';
import { scalePodName } from './objects.js';
import type { ScaleCluster } from './population.js';
import type { UpsertEvent } from './xds-events.js';
import type { XdsWatcher } from './xds-watcher.js';

/** What the watcher must receive once the `sample`-th pod (from 0) is Ready. */
export interface ExpectedArrival {
  name: string;
  accept: (event: UpsertEvent) => boolean;
}

export interface ReadyLatencyRun {
  population: ScaleCluster;
  watcher: XdsWatcher;
  podIndexes: readonly number[];
  expect: (podIndex: number, sample: number) => ExpectedArrival;
  timeoutMs: number;
  /** Pause between samples, so that one push is not batched with the next change. */
  pauseMs: number;
  stopped: () => boolean;
}

export async function sampleReadyLatency(run: ReadyLatencyRun): Promise<LatencySample[]> {
  const samples: LatencySample[] = [];
  for (const [sample, podIndex] of run.podIndexes.entries()) {
    if (run.stopped()) break;
    const expected = run.expect(podIndex, sample);
    const t0 = Date.now();
    await run.population.postPodStatus(podIndex, true);
    try {
      const arrived = await run.watcher.waitFor(`${expected.name} after pod ${podIndex} became Ready`, (r) => r.firstUpsert(expected.name, t0, expected.accept), run.timeoutMs);
      samples.push({ pod: scalePodName(podIndex), ms: arrived.t - t0 });
    } catch (err) {
      if (err instanceof GiveUpWaiting) throw err;
      samples.push({ pod: scalePodName(podIndex), ms: null });
    }
    await new Promise((r) => setTimeout(r, run.pauseMs));
  }
  return samples;
}
