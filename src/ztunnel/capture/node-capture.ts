import { run } from '../../util/exec.js';
import type { Logger } from '../../util/log.js';
import { DEFAULT_CAPTURE_PORTS, renderCaptureRemoval, renderCaptureRuleset, type CapturePorts } from './ruleset.js';

export interface NodeCaptureOptions {
  nodeIp: string;
  log: Logger;
  ports?: CapturePorts;
  /** Applies an nft script; default runs `nft -f -`. */
  applyScript?: (script: string) => Promise<void>;
}

/** Owns `table inet ambit` in the node namespace: which local pods are captured. */
export class NodeCapture {
  private applied?: string;
  private queue: Promise<void> = Promise.resolve();
  private readonly applyScript: (script: string) => Promise<void>;

  constructor(private readonly options: NodeCaptureOptions) {
    this.applyScript = options.applyScript ?? (async (script) => void (await run('nft', ['-f', '-'], { input: script })));
  }

  /** Sets the captured pod IPs; serialized, and a no-op when nothing changed. */
  update(enrolledPodIps: readonly string[]): Promise<void> {
    const key = [...new Set(enrolledPodIps)].sort().join(',');
    this.queue = this.queue.then(async () => {
      if (this.applied === key) return;
      try {
        await this.applyScript(renderCaptureRuleset(this.options.nodeIp, enrolledPodIps, this.options.ports ?? DEFAULT_CAPTURE_PORTS));
        this.applied = key;
        this.options.log.info({ pods: enrolledPodIps.length }, 'capture rules updated');
      } catch (err) {
        this.options.log.error({ err: (err as Error).message }, 'failed to update capture rules');
      }
    });
    return this.queue;
  }

  async remove(): Promise<void> {
    await this.queue;
    try {
      await this.applyScript(renderCaptureRemoval());
      this.applied = undefined;
    } catch (err) {
      this.options.log.error({ err: (err as Error).message }, 'failed to remove capture rules');
    }
  }
}
