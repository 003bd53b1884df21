// Runs a long build step (debootstrap, npm ci) with its output in a log file; a failure names the log and shows its tail.
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

export class BuildStepError extends Error {}

export async function runLogged(
  file: string,
  args: string[],
  opts: { cwd?: string; logFile: string; env?: NodeJS.ProcessEnv; timeoutMs: number; what: string },
): Promise<void> {
  const fd = openSync(opts.logFile, 'a');
  let result: { code: number | null; signal: NodeJS.Signals | null; error?: Error };
  try {
    result = await new Promise((resolve) => {
      const child = spawn(file, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', fd, fd] });
      const timer = setTimeout(() => child.kill('SIGTERM'), opts.timeoutMs);
      child.on('error', (error) => {
        clearTimeout(timer);
        resolve({ code: null, signal: null, error });
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal });
      });
    });
  } finally {
    closeSync(fd);
  }
  if (result.error) {
    const missing = (result.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new BuildStepError(missing ? `${opts.what}: ${file} is not installed` : `${opts.what}: ${result.error.message}`);
  }
  if (result.code === 0) return;
  const tail = (await readFile(opts.logFile, 'utf8').catch(() => '')).trimEnd().split('\n').slice(-15).join('\n');
  const how = result.signal ? `was killed by ${result.signal}` : `exited with ${result.code}`;
  throw new BuildStepError(`${opts.what} failed: ${file} ${how}; log: ${opts.logFile}\n${tail}`);
}
