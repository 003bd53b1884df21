import { gatewayKey } from '../state/load-balancer.js';

/**
 * East-west gateways that failed recently (connection refused, timeout, TLS failure on the outer
 * tunnel). Endpoint selection avoids them while another gateway of the network is left, and tries
 * them again once their ejection time has passed.
 */
export class GatewayOutliers {
  private readonly ejectedUntil = new Map<string, number>();

  constructor(
    private readonly ejectionMs = 15_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Key of a gateway: `<address>:<port>`. */
  static key(gateway: { address: string; port: number }): string {
    return gatewayKey(gateway);
  }

  eject(gateway: { address: string; port: number }): void {
    this.ejectedUntil.set(GatewayOutliers.key(gateway), this.now() + this.ejectionMs);
  }

  /** The gateways ejected now; expired entries are dropped. */
  ejected(): ReadonlySet<string> {
    const now = this.now();
    const keys = new Set<string>();
    for (const [key, until] of this.ejectedUntil) {
      if (until <= now) this.ejectedUntil.delete(key);
      else keys.add(key);
    }
    return keys;
  }
}
