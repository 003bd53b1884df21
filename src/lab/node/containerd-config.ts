// The node's containerd configuration: own root, state, socket and runc root, CRI with the lab's pause image.
import type { NodeBinaries } from '../k8s-binaries.js';
import { LAB_PAUSE_IMAGE, type NodePaths, type RealNodeSpec } from './spec.js';

const q = (s: string) => JSON.stringify(s);

export function containerdConfig(spec: RealNodeSpec, paths: NodePaths, bins: NodeBinaries): string {
  return `version = 2
root = ${q(paths.containerdRoot)}
state = ${q(paths.containerdState)}
# Plugins that would write outside this node's directories (opt: /opt/containerd) or are unusable here.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = ${q(paths.containerdSocket)}

[ttrpc]
  address = ""

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${q(spec.sandboxImage ?? LAB_PAUSE_IMAGE)}
  # Lowering oom_score_adj is denied on this host: without this, runc fails ("can't get final child's PID").
  restrict_oom_score_adj = true
  # Pod network namespaces are mounted under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = ${q(bins.runc)}
        Root = ${q(paths.runcRoot)}
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${q(bins.cniBinDir)}
    conf_dir = ${q(paths.cniConfDir)}
    max_conf_num = 1
`;
}
