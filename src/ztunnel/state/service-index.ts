import type { Service } from '../../gen/istio/workload/workload_pb.js';
import { bytesToIp } from '../../api/ip.js';
import { networkAddressKey } from './addresses.js';

function addTo(index: Map<string, string[]>, key: string, name: string): void {
  const names = index.get(key);
  if (!names) index.set(key, [name]);
  else if (!names.includes(name)) names.push(name);
}

function removeFrom(index: Map<string, string[]>, key: string, name: string): void {
  const remaining = (index.get(key) ?? []).filter((other) => other !== name);
  if (remaining.length > 0) index.set(key, remaining);
  else index.delete(key);
}

/** Services by resource name (`<ns>/<hostname>`), by `<network>/<vip>` and by hostname. */
export class ServiceIndex {
  private readonly byName = new Map<string, Service>();
  private readonly byVip = new Map<string, string[]>();
  private readonly byHost = new Map<string, string[]>();

  constructor(private readonly localNetwork: string) {}

  get(name: string): Service | undefined {
    return this.byName.get(name);
  }

  all(): Service[] {
    return [...this.byName.values()];
  }

  /** `<network>/<vip>` keys of a service; an address with an empty network is on the local network. */
  vipKeys(service: Service): string[] {
    return service.addresses.map((address) => networkAddressKey(address.network || this.localNetwork, bytesToIp(address.address)));
  }

  /**
   * The service with a canonical VIP on a network. Several services may share a VIP (ServiceEntries);
   * like ztunnel, prefer one in the client's namespace.
   */
  findByVip(ip: string, network: string, clientNamespace: string): { name: string; service: Service } | undefined {
    const names = this.byVip.get(networkAddressKey(network, ip));
    if (!names) return undefined;
    let fallback: { name: string; service: Service } | undefined;
    for (const name of names) {
      const service = this.byName.get(name);
      if (!service) continue;
      if (service.namespace === clientNamespace) return { name, service };
      fallback ??= { name, service };
    }
    return fallback;
  }

  findByHostname(hostname: string): Service[] {
    return (this.byHost.get(hostname) ?? []).flatMap((name) => this.byName.get(name) ?? []);
  }

  upsert(name: string, service: Service): void {
    this.remove(name);
    this.byName.set(name, service);
    for (const key of this.vipKeys(service)) addTo(this.byVip, key, name);
    addTo(this.byHost, service.hostname, name);
  }

  remove(name: string): Service | undefined {
    const previous = this.byName.get(name);
    if (!previous) return undefined;
    this.byName.delete(name);
    for (const key of this.vipKeys(previous)) removeFrom(this.byVip, key, name);
    removeFrom(this.byHost, previous.hostname, name);
    return previous;
  }
}
