// kubelet's configuration file and command line for a lab node (kubelet 1.20, remote runtime = the node's containerd).
import { stringify as toYaml } from 'yaml';
import type { NodeBinaries } from '../k8s-binaries.js';
import type { NodePaths, RealNodeSpec } from './spec.js';

export function kubeletConfig(spec: RealNodeSpec, paths: NodePaths): string {
  return toYaml({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    address: spec.ip,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: 10248,
    tlsCertFile: spec.servingCertFile,
    tlsPrivateKeyFile: spec.servingKeyFile,
    // kube-apiserver presents a client certificate of the cluster CA; what it may do is asked of it (SubjectAccessReview).
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: spec.caCertFile } },
    authorization: { mode: 'Webhook' },
    // cgroup v1 host, no systemd: cgroupfs, every node under its own root.
    cgroupDriver: 'cgroupfs',
    cgroupRoot: `/${spec.name}`,
    cgroupsPerQOS: true,
    enforceNodeAllocatable: ['pods'],
    failSwapOn: false,
    // Lowering oom_score_adj is denied here; kubelet would try -999 for itself.
    oomScoreAdj: 0,
    // Many nodes share one small host: reserve nothing, evict only when the host is really out, and never
    // garbage-collect images (they are imported, not pulled: a collected image could not come back).
    evictionHard: { 'memory.available': '50Mi', 'nodefs.available': '1%', 'imagefs.available': '1%', 'nodefs.inodesFree': '1%' },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    maxPods: 110,
    clusterDNS: spec.clusterDns,
    clusterDomain: spec.clusterDomain,
    resolvConf: paths.resolvConf,
    // The node's network namespace keeps the lab's own nftables rules; kubelet adds no iptables chains there.
    makeIPTablesUtilChains: false,
    // The sysctls kubelet wants are shown to it in its mount namespace (launch.ts): it must never write the host's.
    protectKernelDefaults: true,
    volumePluginDir: `${paths.kubeletRoot}/volume-plugins`,
    serializeImagePulls: false,
    // How often kubelet computes its status (it posts only changes, and all of it every nodeStatusReportFrequency):
    // at 10 s the Node turned Ready one full period after registering (20 s from start in all), at 2 s soon after.
    nodeStatusUpdateFrequency: '2s',
    nodeStatusReportFrequency: '1m',
    syncFrequency: '30s',
    fileCheckFrequency: '20s',
    runtimeRequestTimeout: '2m',
    containerLogMaxSize: '10Mi',
    containerLogMaxFiles: 2,
    staticPodPath: '',
  });
}

export function kubeletArgv(spec: RealNodeSpec, paths: NodePaths, bins: NodeBinaries): string[] {
  const labels = Object.entries(spec.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return [
    bins.kubelet,
    `--config=${paths.kubeletConfig}`,
    `--kubeconfig=${spec.kubeconfig}`,
    `--root-dir=${paths.kubeletRoot}`,
    `--cert-dir=${paths.kubeletRoot}/pki`,
    '--container-runtime=remote',
    `--container-runtime-endpoint=unix://${paths.containerdSocket}`,
    `--hostname-override=${spec.name}`,
    `--node-ip=${spec.ip}`,
    ...(labels ? [`--node-labels=${labels}`] : []),
    '--v=1',
  ];
}
