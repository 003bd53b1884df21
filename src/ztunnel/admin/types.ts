/** JSON served by ztunnel's admin endpoint `GET /config_dump` (localhost:15000), read by `ambit proxy-config`. */
export interface ConfigDump {
  node: string;
  clusterId: string;
  network: string;
  /** Whether the xDS stream to the control plane is up, and when config last changed. */
  controlPlane: { connected: boolean; address: string; lastUpdate?: string; lastError?: string };
  workloads: WorkloadView[];
  services: ServiceView[];
  certificates: CertificateView[];
  policies: PolicyView[];
}

export interface WorkloadView {
  uid: string;
  name: string;
  namespace: string;
  addresses: string[];
  node: string;
  network: string;
  clusterId: string;
  /** HBONE for enrolled workloads, TCP otherwise. */
  protocol: 'HBONE' | 'TCP';
  serviceAccount: string;
  identity: string;
  status: 'Healthy' | 'Unhealthy';
  canonicalName: string;
  canonicalRevision: string;
  workloadType: string;
  workloadName: string;
  /** Service keys `<ns>/<hostname>` this workload backs. */
  services: string[];
  locality: { region: string; zone: string; subzone: string };
  /** True when this ztunnel captures its traffic. */
  captured: boolean;
  /** Load-balancing weight (a synthetic workload counts the healthy endpoints it stands for). */
  capacity: number;
  /** The pod's own DNS name (StatefulSet pods), when it has one. */
  dnsName?: string;
  /** `<address>` or `<ns>/<hostname>` of the network gateway in front of it, for other networks' workloads. */
  networkGateway?: string;  /** `<ns>/<hostname>` (or address) of the waypoint that serves it (`Workload.waypoint`). */
  waypoint?: string;
}

export interface ServiceView {
  name: string;
  namespace: string;
  hostname: string;
  /** `<network>/<ip>` */
  vips: string[];
  ports: Array<{ port: number; targetPort: number; protocol: string }>;
  endpoints: number;
  healthyEndpoints: number;
  loadBalancing?: { mode: string; routingPreference: string[] };
  /** `<ns>/<hostname>` (or address) of the waypoint that serves it (`Service.waypoint`). */
  waypoint?: string;
}

export interface CertificateView {
  identity: string;
  state: 'valid' | 'pending' | 'error';
  serialNumber?: string;
  notBefore?: string;
  notAfter?: string;
  /** When renewal is scheduled. */
  renewAt?: string;
  chain: Array<{ subject: string; issuer: string; uriSans: string[]; notBefore: string; notAfter: string }>;
  error?: string;
}

export interface PolicyView {
  name: string;
  namespace: string;
  scope: string;
  action: string;
  rules: number;
  dryRun: boolean;
}
