import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { parseProcStat, parseVmRssKiB, type ProcStat } from './parsers/proc.js';

/** Processes whose cost is measured together, e.g. "ztunnel on node 1" or "stunnel server". */
export interface ProcessGroup {
  label: string;
  /** Root PIDs; their descendants (nginx workers, forked helpers) are counted too. */
  pids: () => number[];
}

let clockTicks: number | undefined;
export function clockTicksPerSecond(): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return clockTicks;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

function readRssKiB(pid: number): number | undefined {
  try {
    return parseVmRssKiB(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The PIDs and every process below them, from one scan of /proc. */
export function withDescendants(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (!stat) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push(stat.pid);
    children.set(stat.ppid, list);
  }
  const out = new Set<number>();
  const visit = (pid: number) => {
    if (out.has(pid)) return;
    out.add(pid);
    for (const child of children.get(pid) ?? []) visit(child);
  };
  roots.forEach(visit);
  return [...out];
}

export interface GroupSnapshot {
  cpuSeconds: number;
  rssMiB: number;
}

export function snapshot(pids: number[]): GroupSnapshot {
  let ticks = 0;
  let rssKiB = 0;
  for (const pid of pids) {
    const stat = readStat(pid);
    if (stat) ticks += stat.utimeTicks + stat.stimeTicks;
    rssKiB += readRssKiB(pid) ?? 0;
  }
  return { cpuSeconds: ticks / clockTicksPerSecond(), rssMiB: rssKiB / 1024 };
}

export interface GroupCost {
  label: string;
  cpuSeconds: number;
  rssStartMiB: number;
  rssMaxMiB: number;
}

/**
 * Samples CPU time (utime + stime) and RSS of process groups over a window: CPU is the difference
 * between the ends, RSS the largest seen (sampled every `intervalMs`).
 */
export class CostSampler {
  private readonly pids: number[][];
  private readonly start: GroupSnapshot[];
  private readonly maxRss: number[];
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly groups: ProcessGroup[], intervalMs = 250) {
    // Resolved once: the processes measured live through the window, and a /proc scan per sample would cost CPU too.
    this.pids = groups.map((g) => withDescendants(g.pids()));
    this.start = this.pids.map(snapshot);
    this.maxRss = this.start.map((s) => s.rssMiB);
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    this.pids.forEach((pids, i) => {
      this.maxRss[i] = Math.max(this.maxRss[i]!, snapshot(pids).rssMiB);
    });
  }

  stop(): GroupCost[] {
    clearInterval(this.timer);
    return this.groups.map((g, i) => {
      const end = snapshot(this.pids[i]!);
      return {
        label: g.label,
        cpuSeconds: end.cpuSeconds - this.start[i]!.cpuSeconds,
        rssStartMiB: this.start[i]!.rssMiB,
        rssMaxMiB: Math.max(this.maxRss[i]!, end.rssMiB),
      };
    });
  }
}

/** CPU seconds spent per 1,000 requests. */
export const cpuSecondsPer1kRequests = (cpuSeconds: number, requests: number): number | null => (requests > 0 ? (cpuSeconds / requests) * 1000 : null);
