import { run } from '../../util/exec.js';
import type { Logger } from '../../util/log.js';
import { DEFAULT_CAPTURE_PORTS, DIVERT_MARK, DIVERT_ROUTE_TABLE, renderCaptureRemoval, renderCaptureRuleset, type CapturePorts } from './ruleset.js';

export interface NodeCaptureOptions {
  nodeIp: string;
  log: Logger;
  ports?: CapturePorts;
  /** Applies an nft script; default runs `nft -f -`. */
  applyScript?: (script: string) => Promise<void>;
  /** Runs `ip` with arguments and returns its output; default runs the real command. */
  ip?: (args: string[]) => Promise<string | void>;
}

const MARK = `0x${DIVERT_MARK.toString(16)}/0x${DIVERT_MARK.toString(16)}`;

/** Owns `table inet ambit` in the node namespace: which local pods are captured. */
export class NodeCapture {
  private applied?: string;
  private queue: Promise<void> = Promise.resolve();
  private readonly applyScript: (script: string) => Promise<void>;
  private readonly ip: (args: string[]) => Promise<string | void>;
  private routingReady = false;

  constructor(private readonly options: NodeCaptureOptions) {
    this.applyScript = options.applyScript ?? (async (script) => void (await run('nft', ['-f', '-'], { input: script })));
    this.ip = options.ip ?? (async (args) => (await run('ip', args)).stdout);
  }

  /** Policy routing that delivers diverted (marked) packets to local sockets, as tproxy needs. */
  private async ensureDivertRouting(): Promise<void> {
    if (this.routingReady) return;
    // A previous ztunnel of this node may have left exactly this routing in place (a restart keeps
    // capture): it stays untouched, since removing it even briefly would let diverted packets go
    // straight to the pod, around the plaintext inbound listener.
    const existing = String((await this.ip(['rule', 'show', 'priority', String(DIVERT_ROUTE_TABLE)]).catch(() => '')) ?? '');
    const rules = existing.split('\n').filter((line) => line.includes(`lookup ${DIVERT_ROUTE_TABLE}`));
    if (rules.length !== 1) {
      await this.removeDivertRouting();
      await this.ip(['rule', 'add', 'fwmark', MARK, 'lookup', String(DIVERT_ROUTE_TABLE), 'priority', String(DIVERT_ROUTE_TABLE)]);
    }
    await this.ip(['route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(DIVERT_ROUTE_TABLE)]);
    this.routingReady = true;
  }

  private async removeDivertRouting(): Promise<void> {
    // Several rules may be left by a ztunnel that was killed; delete until none is left.
    for (let i = 0; i < 10; i++) {
      try {
        await this.ip(['rule', 'del', 'fwmark', MARK, 'lookup', String(DIVERT_ROUTE_TABLE)]);
      } catch {
        break;
      }
    }
    await this.ip(['route', 'flush', 'table', String(DIVERT_ROUTE_TABLE)]).catch(() => undefined);
    this.routingReady = false;
  }

  /** Sets the captured pod IPs; serialized, and a no-op when nothing changed. */
  update(enrolledPodIps: readonly string[]): Promise<void> {
    const key = [...new Set(enrolledPodIps)].sort().join(',');
    this.queue = this.queue.then(async () => {
      if (this.applied === key) return;
      try {
        await this.ensureDivertRouting();
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
      await this.removeDivertRouting();
      this.applied = undefined;
    } catch (err) {
      this.options.log.error({ err: (err as Error).message }, 'failed to remove capture rules');
    }
  }
}
