import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** Whether the pid still exists (a zombie does: stopping waits for it to be reaped). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the process still runs: alive and not a zombie (killed, not yet reaped by its parent, it still answers signal 0). */
export function isRunning(pid: number): boolean {
  return isAlive(pid) && !isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return false;
  }
}

/**
 * Starts a long-running process inside a network namespace, detached from this process so it
 * outlives `ambit lab up`; stdout and stderr go to `logFile`. `ip netns exec` execs the program,
 * so the returned PID is the program's own.
 */
export function spawnInNetns(netns: string, argv: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): number {
  mkdirSync(dirname(logFile), { recursive: true });
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn('ip', ['netns', 'exec', netns, ...argv], { detached: true, stdio: ['ignore', fd, fd], env });
    if (child.pid === undefined) throw new Error(`could not start ${argv[0]} in ${netns}`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** SIGTERM, then SIGKILL after `graceMs` for whatever is still alive. */
export async function terminate(pids: number[], graceMs = 5000): Promise<void> {
  const alive = pids.filter(isAlive);
  for (const pid of alive) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && alive.some(isAlive)) await sleep(50);
  for (const pid of alive.filter(isAlive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  const killDeadline = Date.now() + 2000;
  while (Date.now() < killDeadline && alive.some(isAlive)) await sleep(20);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
