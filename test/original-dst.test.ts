// ambit:lab-test (makes network namespaces and nftables rules; needs root)
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { getOriginalDestination } from '../src/ztunnel/proxy/original-dst.js';
import { run } from '../src/util/exec.js';

const NETNS = `ambittest-odst-${process.pid}`;
const IS_ROOT = process.getuid?.() === 0;
const NEEDS_ROOT = IS_ROOT ? false : 'needs root (network namespaces, nftables)';
const LISTEN_PORT = 15001;
const CAPTURED_IP = '198.18.250.1';
const CAPTURED_PORT = 9999;
const CAPTURED_IP6 = 'fd00:ab::1';

/**
 * Runs inside the namespace: listens, connects to the target given on the command line,
 * prints what getsockopt(SO_ORIGINAL_DST) reported for the accepted socket.
 */
function probeScript(modulePath: string): string {
  return `
import { createServer, connect } from 'node:net';
import { getOriginalDestination } from ${JSON.stringify(pathToFileURL(modulePath).href)};

const [listenPort, targetIp, targetPort] = process.argv.slice(2);
const server = createServer((socket) => {
  const original = getOriginalDestination(socket);
  process.stdout.write(JSON.stringify({ original: original ?? null }) + '\\n', () => process.exit(0));
});
server.listen(Number(listenPort), '::', () => {
  const client = connect(Number(targetPort), targetIp);
  client.on('error', (error) => {
    process.stderr.write('connect failed: ' + error.message + '\\n');
    process.exit(2);
  });
});
setTimeout(() => { process.stderr.write('timed out\\n'); process.exit(3); }, 10_000).unref();
`;
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

describe('getOriginalDestination', { skip: NEEDS_ROOT }, () => {
  let workDir = '';
  let scriptPath = '';

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'ambittest-odst-'));
    scriptPath = join(workDir, 'probe.ts');
    await writeFile(scriptPath, probeScript(join(import.meta.dirname, '../src/ztunnel/proxy/original-dst.ts')));
    await ip('netns', 'add', NETNS);
    await ip('-n', NETNS, 'link', 'set', 'lo', 'up');
    // A route to the captured address, so connect() gets as far as the nat output hook.
    await ip('-n', NETNS, 'addr', 'add', '198.18.250.2/24', 'dev', 'lo');
    await ip('-n', NETNS, 'addr', 'add', 'fd00:ab::2/64', 'dev', 'lo', 'nodad');
  });

  after(async () => {
    const pids = await run('ip', ['netns', 'pids', NETNS]).catch(() => ({ stdout: '' }));
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await run('ip', ['netns', 'del', NETNS]).catch(() => undefined);
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  async function probe(targetIp: string, targetPort: number): Promise<unknown> {
    const { stdout } = await run('ip', [
      'netns', 'exec', NETNS, process.execPath, '--import', import.meta.resolve('tsx'), scriptPath,
      String(LISTEN_PORT), targetIp, String(targetPort),
    ]);
    return (JSON.parse(stdout.trim()) as { original: unknown }).original;
  }

  test('a connection that was not redirected has no original destination', async () => {
    assert.equal(await probe('127.0.0.1', LISTEN_PORT), null);
  });

  test('reports the address a REDIRECTed connection was sent to', async () => {
    const rules = [
      'table ip ambittest {',
      '  chain output {',
      '    type nat hook output priority -100; policy accept;',
      `    ip daddr ${CAPTURED_IP} tcp dport ${CAPTURED_PORT} redirect to :${LISTEN_PORT}`,
      '  }',
      '}',
      'table ip6 ambittest {',
      '  chain output {',
      '    type nat hook output priority -100; policy accept;',
      `    ip6 daddr ${CAPTURED_IP6} tcp dport ${CAPTURED_PORT} redirect to :${LISTEN_PORT}`,
      '  }',
      '}',
    ].join('\n');
    const rulesPath = join(workDir, 'rules.nft');
    await writeFile(rulesPath, rules);
    await ip('netns', 'exec', NETNS, 'nft', '-f', rulesPath);
    // The probe listens on '::', so this also covers IPv4-mapped addresses on a dual-stack socket.
    assert.deepEqual(await probe(CAPTURED_IP, CAPTURED_PORT), { ip: CAPTURED_IP, port: CAPTURED_PORT });
  });

  test('reports the address of a REDIRECTed IPv6 connection', async () => {
    assert.deepEqual(await probe(CAPTURED_IP6, CAPTURED_PORT), { ip: CAPTURED_IP6, port: CAPTURED_PORT });
  });
});

describe('getOriginalDestination on sockets without a usable fd', () => {
  test('returns undefined for a destroyed socket instead of throwing', async () => {
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { connect } = await import('node:net');
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    const client: Socket = connect(address.port, '127.0.0.1');
    client.on('error', () => undefined);
    await new Promise((resolve) => client.once('connect', resolve));
    client.destroy();
    assert.equal(getOriginalDestination(client), undefined);
    server.close();
  });
});
