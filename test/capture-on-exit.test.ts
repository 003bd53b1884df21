// Capture across ztunnel restarts: kept unless the DaemonSet is gone, and taken over without a gap.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { NodeCapture } from '../src/ztunnel/capture/node-capture.js';
import { decideCaptureOnExit } from '../src/ztunnel/capture/on-exit.js';
import { captureLog } from './helpers/proxy-fakes.js';

const log = captureLog('capture').log;

describe('capture on exit', () => {
  test('kept while the DaemonSet remains (a restart), removed once it is gone (an uninstall)', async () => {
    assert.equal((await decideCaptureOnExit(async () => 'present', log)).keep, true);
    assert.equal((await decideCaptureOnExit(async () => 'gone', log)).keep, false);
  });

  test('kept when the API cannot tell: an error, no answer in time, or no cluster at all', async () => {
    const failing = await decideCaptureOnExit(async () => {
      throw new Error('connection refused');
    }, log);
    assert.equal(failing.keep, true);
    const started = Date.now();
    const hanging = await decideCaptureOnExit(() => new Promise(() => undefined), log, 100);
    assert.equal(hanging.keep, true);
    assert.ok(Date.now() - started < 2000, 'a hanging API server does not hold the shutdown');
    assert.equal((await decideCaptureOnExit(undefined, log)).keep, true);
  });
});

describe('capture takeover', () => {
  const DIVERT_RULE = '15006:\tfrom all fwmark 0x400/0x400 lookup 15006';

  test("a new ztunnel keeps the divert rule its predecessor left (removing it, even briefly, would let diverted packets reach the pod)", async () => {
    const calls: string[][] = [];
    const capture = new NodeCapture({
      nodeIp: '198.18.16.10',
      log,
      applyScript: async () => undefined,
      ip: async (args) => {
        calls.push(args);
        return args[0] === 'rule' && args[1] === 'show' ? `${DIVERT_RULE}\n` : '';
      },
    });
    await capture.update(['198.19.0.2']);
    assert.ok(!calls.some((args) => args[0] === 'rule' && (args[1] === 'del' || args[1] === 'add')), `no rule removed or added: ${JSON.stringify(calls)}`);
  });

  test('without a rule (first start), or with duplicates left by a crash, it is set up exactly once', async () => {
    for (const existing of ['', `${DIVERT_RULE}\n${DIVERT_RULE}\n`]) {
      const calls: string[][] = [];
      let rules = existing.split('\n').filter(Boolean).length;
      const capture = new NodeCapture({
        nodeIp: '198.18.16.10',
        log,
        applyScript: async () => undefined,
        ip: async (args) => {
          calls.push(args);
          if (args[1] === 'show') return Array.from({ length: rules }, () => DIVERT_RULE).join('\n');
          if (args[1] === 'del') {
            if (rules === 0) throw new Error('RTNETLINK answers: No such file or directory');
            rules--;
          }
          if (args[1] === 'add') rules++;
          return '';
        },
      });
      await capture.update(['198.19.0.2']);
      assert.equal(rules, 1, `one divert rule in the end (started with ${existing.split('\n').filter(Boolean).length})`);
    }
  });
});
