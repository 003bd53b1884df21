import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { runCommand } from '../exec.js';
import type { MachineFacts } from './types.js';

function osName(): string {
  try {
    return /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function cpuModel(): string {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  } catch {
    return cpus()[0]?.model ?? 'unknown';
  }
}

/** First line of a tool's version output, or "not installed". */
async function version(argv: string[], pattern: RegExp): Promise<string> {
  const r = await runCommand(argv, { timeoutMs: 5000 });
  const text = `${r.stdout}\n${r.stderr}`;
  return pattern.exec(text)?.[1] ?? (r.code === 0 ? 'unknown' : 'not installed');
}

export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
}

export async function machineFacts(): Promise<MachineFacts> {
  return {
    cpuModel: cpuModel(),
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    os: osName(),
    node: process.version,
    tools: {
      iperf3: await version(['iperf3', '--version'], /iperf (\S+)/),
      wrk: await version(['wrk', '-v'], /wrk (\S+)/),
      nginx: await version(['nginx', '-v'], /nginx\/(\S+)/),
      stunnel: await version(['stunnel4', '-version'], /stunnel (\S+)/),
      haproxy: await version(['haproxy', '-v'], /HAProxy version (\S+)/),
      openssl: await version(['openssl', 'version'], /OpenSSL (\S+)/),
    },
  };
}
