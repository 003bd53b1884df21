/** Parsers for /proc/<pid>/stat and /proc/<pid>/status (see proc(5)). */
export interface ProcStat {
  pid: number;
  comm: string;
  ppid: number;
  /** User and system CPU time of the whole process (all threads), in clock ticks. */
  utimeTicks: number;
  stimeTicks: number;
}

export class ProcParseError extends Error {}

export function parseProcStat(text: string): ProcStat {
  // comm is in parentheses and may itself contain spaces and ')': split at the last ')'.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new ProcParseError(`not a /proc/<pid>/stat line: ${text.slice(0, 80)}`);
  const rest = text.slice(close + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15, ppid field 4.
  const field = (n: number) => {
    const v = Number(rest[n - 3]);
    if (!Number.isFinite(v)) throw new ProcParseError(`field ${n} missing in /proc/<pid>/stat`);
    return v;
  };
  return { pid: Number(text.slice(0, open).trim()), comm: text.slice(open + 1, close), ppid: field(4), utimeTicks: field(14), stimeTicks: field(15) };
}

/** VmRSS in KiB; undefined for kernel threads and zombies, which have none. */
export function parseVmRssKiB(statusText: string): number | undefined {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(statusText);
  return m ? Number(m[1]) : undefined;
}
