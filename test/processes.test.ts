// isRunning: a process killed but not yet reaped by its parent (a zombie) is not running (lab up restarts a real node whose kubelet or containerd is one); isAlive still sees it (stopping waits for it).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

import { isAlive, isRunning } from '../src/lab/processes.js';

describe('isRunning and isAlive', () => {
  it('is true for a running process, false for a zombie (signal 0 still succeeds on it) and for a process that is gone', async () => {
    // The shell starts a short sleep, prints its pid, then becomes a long sleep that never reaps it.
    const parent = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const childPid = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()))));
      assert.equal(isRunning(childPid), true, 'running');
      await new Promise((resolve) => setTimeout(resolve, 400));
      assert.doesNotThrow(() => process.kill(childPid, 0), 'a zombie still answers signal 0');
      assert.equal(isRunning(childPid), false, 'a zombie is not running');
      assert.equal(isAlive(childPid), true, 'but it still exists');
    } finally {
      parent.kill('SIGKILL');
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(isRunning(parent.pid!), false, 'gone');
    assert.equal(isAlive(parent.pid!), false);
  });
});
