// ambit:lab-test (makes network namespaces and nftables rules; needs root)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { NodeCapture } from '../src/ztunnel/capture/node-capture.js';
import { renderCaptureRuleset } from '../src/ztunnel/capture/ruleset.js';
import { run } from '../src/util/exec.js';

const NETNS = `ambittest-cap-${process.pid}`;
const inNetns = (cmd: string, args: string[], input?: string) => run('ip', ['netns', 'exec', NETNS, cmd, ...args], { input });

describe('node capture rules (real nftables in a scratch network namespace)', () => {
  before(async () => void (await run('ip', ['netns', 'add', NETNS])));
  after(async () => void (await run('ip', ['netns', 'del', NETNS]).catch(() => undefined)));

  const capture = () =>
    new NodeCapture({
      nodeIp: '198.18.16.10',
      log: pino({ level: 'silent' }),
      applyScript: async (script) => void (await inNetns('nft', ['-f', '-'], script)),
      ip: async (args) => void (await run('ip', ['-n', NETNS, ...args])),
    });

  it('renders DNAT for outbound and HBONE before service DNAT, tproxy for plaintext inbound after it', () => {
    const rules = renderCaptureRuleset('198.18.16.10', ['198.19.0.7', '198.19.0.5', '198.19.0.5', 'fd00::1']);
    assert.match(rules, /elements = \{ 198\.19\.0\.5, 198\.19\.0\.7 \}/, 'sorted, deduplicated, IPv4 only');
    assert.match(rules, /priority -150;[\s\S]*ip saddr @enrolled4 meta l4proto tcp dnat ip to 198\.18\.16\.10:15001/);
    assert.match(rules, /ip daddr @enrolled4 tcp dport 15008 dnat ip to 198\.18\.16\.10:15008/);
    assert.match(rules, /udp dport 53 dnat ip to 198\.18\.16\.10:15053\n.*tcp dport 53 dnat ip to 198\.18\.16\.10:15053\n.*meta l4proto tcp dnat ip to 198\.18\.16\.10:15001/, 'DNS before the TCP catch-all');
    assert.match(rules, /priority -90;[\s\S]*ct state new .*tproxy ip to :15006/);
    assert.throws(() => renderCaptureRuleset('not-an-ip', []), /node address must be IPv4/);
  });

  it('applies atomically, replaces on change, and removes everything it made', async () => {
    const node = capture();
    await node.update(['198.19.0.5']);
    let listing = (await inNetns('nft', ['list', 'table', 'inet', 'ambit'])).stdout;
    assert.match(listing, /elements = \{ 198\.19\.0\.5 \}/);
    await node.update(['198.19.0.6', '198.19.0.9']);
    listing = (await inNetns('nft', ['list', 'table', 'inet', 'ambit'])).stdout;
    assert.match(listing, /elements = \{ 198\.19\.0\.6, 198\.19\.0\.9 \}/);
    assert.doesNotMatch(listing, /198\.19\.0\.5/);
    await node.update([]);
    listing = (await inNetns('nft', ['list', 'table', 'inet', 'ambit'])).stdout;
    assert.doesNotMatch(listing, /elements/);
    const rules = (await run('ip', ['-n', NETNS, 'rule', 'show'])).stdout;
    assert.match(rules, /fwmark 0x400\/0x400 lookup 15006/);
    const routes = (await run('ip', ['-n', NETNS, 'route', 'show', 'table', '15006'])).stdout;
    assert.match(routes, /local default dev lo/);

    await node.remove();
    assert.equal((await inNetns('nft', ['list', 'tables'])).stdout.trim(), '');
    assert.doesNotMatch((await run('ip', ['-n', NETNS, 'rule', 'show'])).stdout, /15006/);
  });

  it('a restarted ztunnel takes over rules left by a killed one', async () => {
    await capture().update(['198.19.0.5']);
    const second = capture();
    await second.update(['198.19.0.8']);
    const rules = (await run('ip', ['-n', NETNS, 'rule', 'show'])).stdout.split('\n').filter((l) => l.includes('lookup 15006'));
    assert.equal(rules.length, 1, 'one policy rule, not one per start');
    await second.remove();
  });
});
