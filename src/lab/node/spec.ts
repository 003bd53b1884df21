// What a real lab node is given (RealNodeSpec) and where it keeps its files (nodePaths).
import { join } from 'node:path';

/** The sandbox (pause) image every lab node's containerd uses: kubelet 1.20's default name, built here from pause.c. */
export const LAB_PAUSE_IMAGE = 'k8s.gcr.io/pause:3.2';

export interface RealNodeSpec {
  /** Node name, also its cgroup root (`/<name>` in every cgroup hierarchy). */
  name: string;
  /** Network namespace (under /run/netns) the lab made for this node. */
  netns: string;
  /** The node's address in its network namespace (InternalIP). */
  ip: string;
  /** Pod CIDR (a /24 of the lab plan); pods get .2 … .254. */
  podCidr: string;
  /** Node labels kubelet registers (kubernetes.io ones only from NodeRestriction's allowed set). */
  labels: Record<string, string>;
  apiServerUrl: string;
  /** PEM of the cluster CA: trusted for the API server and for the client certificates kubelet accepts. */
  caCertFile: string;
  /** kubelet's kubeconfig (a system:node:<name> client certificate). */
  kubeconfig: string;
  /** kubelet's serving certificate and key (SAN: the node IP), signed by the cluster CA. */
  servingCertFile: string;
  servingKeyFile: string;
  clusterDns: string[];
  clusterDomain: string;
  /** Everything of this node lives here and is removed by stopRealNode. */
  stateDir: string;
  sandboxImage?: string;
}

export interface NodePaths {
  containerdConfig: string;
  containerdRoot: string;
  containerdState: string;
  containerdSocket: string;
  runcRoot: string;
  cniConfDir: string;
  cniDataDir: string;
  kubeletConfig: string;
  kubeletRoot: string;
  /** Bind-mounted over /var/log, /var/lib/cni and /etc/resolv.conf inside the node's mount namespace. */
  varLog: string;
  cniCache: string;
  resolvConf: string;
  /** Files bind-mounted over the /proc/sys entries kubelet insists on (see launch.ts). */
  sysctlDir: string;
  tmp: string;
  logs: string;
  record: string;
}

export function nodePaths(stateDir: string): NodePaths {
  const p = (...parts: string[]) => join(stateDir, ...parts);
  return {
    containerdConfig: p('containerd.toml'),
    containerdRoot: p('containerd', 'root'),
    containerdState: p('containerd', 'state'),
    containerdSocket: p('containerd.sock'),
    runcRoot: p('runc'),
    cniConfDir: p('cni', 'net.d'),
    cniDataDir: p('cni', 'ipam'),
    kubeletConfig: p('kubelet.yaml'),
    kubeletRoot: p('kubelet'),
    varLog: p('var-log'),
    cniCache: p('cni', 'cache'),
    resolvConf: p('resolv.conf'),
    sysctlDir: p('sysctl'),
    tmp: p('tmp'),
    logs: p('logs'),
    record: p('node.json'),
  };
}
