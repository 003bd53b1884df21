// A containerd of the test's own (root, state, sockets, runc root under a temp dir) to import and run images; stopped by PID.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface Containerd {
  dir: string;
  ctr(args: string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

/** Why this host cannot run the test's containerd, or undefined if it can. */
export function containerdMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (containerd and runc need root)';
  for (const bin of ['containerd', 'ctr', 'runc', 'containerd-shim-runc-v2']) {
    if (!['/usr/bin', '/usr/sbin', '/usr/local/bin'].some((d) => existsSync(join(d, bin)))) return `${bin} is not installed (apt-get install containerd runc)`;
  }
  return undefined;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Processes whose command line names `dir` (the shims this containerd started), by PID. */
async function processesUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(dir)) pids.push(Number(name));
  }
  return pids;
}

export async function startContainerd(): Promise<Containerd> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-image-test-ctrd-'));
  const sock = join(dir, 'containerd.sock');
  await writeFile(
    join(dir, 'config.toml'),
    `version = 2
root = "${dir}/root"
state = "${dir}/state"
# No CRI (no kubelet here) and none of the snapshotters this host cannot use.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "${sock}"
[ttrpc]
  address = "${sock}.ttrpc"
[debug]
  address = "${dir}/debug.sock"
`,
  );
  const child: ChildProcess = spawn('containerd', ['--config', join(dir, 'config.toml'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const ctr = (args: string[], timeoutMs = 120_000) => execFileAsync('ctr', ['--address', sock, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await waitFor(async () => child.exitCode !== null || child.signalCode !== null, 10_000, 'containerd to stop').catch(() => child.kill('SIGKILL'));
    }
    for (const pid of await processesUsing(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((m): m is string => !!m && m.startsWith(dir))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await execFileAsync('umount', ['-l', m]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => existsSync(sock) && (await ctr(['version'], 5000).then(() => true, () => false)), 15_000, `containerd to answer on ${sock}`);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}; containerd said: ${log}`);
  }
  return { dir, ctr, stop };
}
