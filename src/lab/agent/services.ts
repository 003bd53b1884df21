import type { V1Endpoints, V1Service } from '@kubernetes/client-node';
import type { Logger } from '../../util/log.js';
import type { ClusterPlan, NetworkPlan } from '../plan.js';
import { errorMessage, mergePatch, statusCode } from '../../kube/index.js';
import type { Kube } from './kube.js';
import { applyRules, buildServiceViews, deleteTable, renderLoadBalancerRules, renderNodeServiceRules } from './service-rules.js';

const key = (o: { metadata?: { namespace?: string; name?: string } }) => `${o.metadata?.namespace}/${o.metadata?.name}`;
export const DNS_SERVICE = { namespace: 'kube-system', name: 'kube-dns' };

export function loadBalancerTable(cluster: string): string {
  return `ambit-lab-lb-${cluster}`.slice(0, 60);
}

/**
 * kube-proxy and cloud-provider-kind of the lab: programs ClusterIP/NodePort rules in every node
 * namespace of the cluster, assigns LoadBalancer addresses from the cluster's pool, publishes
 * them in Service status and programs them on the network's router.
 */
export class ServiceController {
  private readonly services = new Map<string, V1Service>();
  private readonly endpoints = new Map<string, V1Endpoints>();
  private readonly applied = new Map<string, string>();
  private readonly assigned = new Map<string, string>();
  private timer?: NodeJS.Timeout;
  private running = Promise.resolve();

  constructor(
    private readonly kube: Kube,
    private readonly cluster: ClusterPlan,
    private readonly network: NetworkPlan,
    private readonly log: Logger,
  ) {}

  upsertService(svc: V1Service): void {
    this.services.set(key(svc), svc);
    const ip = svc.status?.loadBalancer?.ingress?.[0]?.ip;
    if (ip && svc.spec?.type === 'LoadBalancer' && this.inPool(ip)) this.assigned.set(key(svc), ip);
    this.schedule();
  }
  deleteService(svc: V1Service): void {
    this.services.delete(key(svc));
    this.assigned.delete(key(svc));
    this.schedule();
  }
  upsertEndpoints(ep: V1Endpoints): void {
    this.endpoints.set(key(ep), ep);
    this.schedule();
  }
  deleteEndpoints(ep: V1Endpoints): void {
    this.endpoints.delete(key(ep));
    this.schedule();
  }

  private inPool(ip: string): boolean {
    const prefix = this.cluster.loadBalancerCidr.split('.').slice(0, 3).join('.');
    return ip.startsWith(`${prefix}.`);
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.running.then(() => this.sync()).catch((err) => this.log.error({ err: errorMessage(err) }, 'service sync failed'));
    }, 20);
  }

  private allocate(svc: V1Service): string | undefined {
    const used = new Set(this.assigned.values());
    const requested = svc.spec?.loadBalancerIP;
    if (requested && this.inPool(requested) && !used.has(requested)) return requested;
    const prefix = this.cluster.loadBalancerCidr.split('.').slice(0, 3).join('.');
    for (let i = 2; i < 255; i++) if (!used.has(`${prefix}.${i}`)) return `${prefix}.${i}`;
    return undefined;
  }

  private async assignLoadBalancers(): Promise<void> {
    for (const [k, svc] of this.services) {
      if (svc.spec?.type !== 'LoadBalancer') {
        this.assigned.delete(k);
        continue;
      }
      const current = svc.status?.loadBalancer?.ingress?.[0]?.ip;
      if (current && this.assigned.get(k) === current) continue;
      const ip = this.assigned.get(k) ?? this.allocate(svc);
      if (!ip) {
        this.log.warn({ service: k, pool: this.cluster.loadBalancerCidr }, 'LoadBalancer pool exhausted');
        continue;
      }
      this.assigned.set(k, ip);
      try {
        const updated = await this.kube.core.patchNamespacedServiceStatus(
          { name: svc.metadata!.name!, namespace: svc.metadata!.namespace!, body: { status: { loadBalancer: { ingress: [{ ip }] } } } },
          mergePatch,
        );
        this.services.set(k, updated);
        this.log.info({ service: k, ip }, 'LoadBalancer address assigned');
      } catch (err) {
        if (statusCode(err) !== 404) this.log.warn({ service: k, err: errorMessage(err) }, 'could not publish LoadBalancer address');
      }
    }
  }

  private async apply(netns: string, script: string): Promise<void> {
    if (this.applied.get(netns) === script) return;
    await applyRules(netns, script);
    this.applied.set(netns, script);
  }

  private async sync(): Promise<void> {
    await this.assignLoadBalancers();
    const views = buildServiceViews([...this.services.values()], [...this.endpoints.values()]);
    const nodeScript = renderNodeServiceRules(views, { podCIDRs: this.cluster.nodes.map((n) => n.podCidr) });
    for (const node of this.cluster.nodes) {
      try {
        await this.apply(node.netns, nodeScript);
      } catch (err) {
        this.log.error({ node: node.name, err: errorMessage(err) }, 'could not program service rules');
      }
    }
    const lbViews = views.filter((v) => v.type === 'LoadBalancer' && v.loadBalancerIPs.length > 0);
    try {
      await this.apply(this.network.netns, renderLoadBalancerRules(lbViews, { table: loadBalancerTable(this.cluster.name) }));
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'could not program LoadBalancer rules');
    }
  }

  /** The cluster DNS runs in the control-plane namespace; a selector-less kube-dns Service points at it. */
  async ensureDnsService(): Promise<void> {
    const { namespace, name } = DNS_SERVICE;
    const service: V1Service = {
      metadata: { name, namespace, labels: { 'k8s-app': 'kube-dns', 'kubernetes.io/name': 'ambit-lab-dns' } },
      spec: {
        clusterIP: this.cluster.dnsServiceIp,
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
          { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
        ],
      },
    };
    const endpoints: V1Endpoints = {
      metadata: { name, namespace, labels: { 'k8s-app': 'kube-dns' } },
      subsets: [{ addresses: [{ ip: this.cluster.cpIp }], ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] }],
    };
    try {
      await this.kube.core.createNamespacedService({ namespace, body: service });
    } catch (err) {
      if (statusCode(err) !== 409) throw err;
    }
    try {
      await this.kube.core.createNamespacedEndpoints({ namespace, body: endpoints });
    } catch (err) {
      if (statusCode(err) !== 409) throw err;
      await this.kube.core.replaceNamespacedEndpoints({ name, namespace, body: endpoints });
    }
  }

  async shutdown(removeRules: boolean): Promise<void> {
    clearTimeout(this.timer);
    await this.running;
    if (!removeRules) return;
    await deleteTable(this.network.netns, loadBalancerTable(this.cluster.name));
  }
}
