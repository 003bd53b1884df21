// Shell launchers that put containerd and kubelet into the node's cgroup, network namespace and one private mount namespace.
import { join } from 'node:path';
import { cgroupMounts } from './cgroups.js';
import type { NodePaths, RealNodeSpec } from './spec.js';

const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * kubelet sets these host-wide sysctls unless they already have its values (protectKernelDefaults
 * turns the write into an error). Inside the node's mount namespace each /proc/sys entry is covered
 * by a file holding kubelet's value, so kubelet is content and the host's settings stay untouched.
 */
export const KUBELET_SYSCTLS: Record<string, string> = {
  'vm/overcommit_memory': '1',
  'vm/panic_on_oom': '0',
  'kernel/panic': '10',
  'kernel/panic_on_oops': '1',
  'kernel/keys/root_maxkeys': '1000000',
  'kernel/keys/root_maxbytes': '25000000',
};

export const RUNTIME_CGROUP = 'runtime';

function joinCgroups(spec: RealNodeSpec): string {
  return cgroupMounts()
    .map((m) => `echo $$ > ${sq(join(m, spec.name, RUNTIME_CGROUP, 'cgroup.procs'))}`)
    .join('\n');
}

/**
 * containerd's launcher. The PID stays the same through every exec (sh → nsenter → unshare → sh →
 * containerd), so the PID spawned is containerd's. `nsenter --net` (not `ip netns exec`, which
 * remounts /sys and hides the cgroup mounts); `unshare --mount` makes the node's mount namespace,
 * private, so nothing mounted in it reaches the host and all of it vanishes with its last process:
 *   /run             a tmpfs (shim sockets, runc's and containerd's runtime files);
 *   /var/log         the node's own (kubelet writes /var/log/pods, /var/log/containers);
 *   /var/lib/cni     the node's own (libcni's result cache);
 *   /etc/resolv.conf nameserver 127.0.0.1: an image that is not here fails at once, nothing leaves the lab.
 */
export function containerdLauncher(spec: RealNodeSpec, paths: NodePaths, containerd: string): string {
  const sysctlBinds = Object.keys(KUBELET_SYSCTLS)
    .map((key) => `mount --bind ${sq(join(paths.sysctlDir, key.replace(/\//g, '.')))} ${sq(`/proc/sys/${key}`)}`)
    .join('\n');
  const inside = `set -eu
mount -t tmpfs -o mode=0755,size=64m ambit-node-run /run
mount --bind ${sq(paths.varLog)} /var/log
mount --bind ${sq(paths.cniCache)} /var/lib/cni
mount --bind ${sq(paths.resolvConf)} /etc/resolv.conf
${sysctlBinds}
export TMPDIR=${sq(paths.tmp)}
exec ${sq(containerd)} --config ${sq(paths.containerdConfig)}`;
  return `set -eu
${joinCgroups(spec)}
exec nsenter --net=${sq(`/run/netns/${spec.netns}`)} -- unshare --mount --propagation private -- /bin/sh -c ${sq(inside)}
`;
}

/** kubelet's launcher: the same cgroup, and containerd's network and mount namespaces. */
export function kubeletLauncher(spec: RealNodeSpec, containerdPid: number, argv: string[]): string {
  return `set -eu
${joinCgroups(spec)}
export TMPDIR=${sq(join(spec.stateDir, 'tmp'))}
exec nsenter --net=/proc/${containerdPid}/ns/net --mount=/proc/${containerdPid}/ns/mnt -- ${argv.map(sq).join(' ')}
`;
}
