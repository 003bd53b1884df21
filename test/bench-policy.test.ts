// The policy bench case's pieces that need no lab: its probe (on real sockets), log parsing, the enforcement analysis and the targets.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { keepAliveEstablishedAfter, newConnectionLatency, openConnectionCut, summarizeLatencies, type PolicyWrite } from '../bench/policy/enforcement.js';
import { parseProbeEvent, ProbeLogError, ProbeLogReader, type AttemptEvent, type ProbeEvent } from '../bench/policy/events.js';
import { policyMeasureOf, policyVariant } from '../bench/policy/rows.js';
import { checkTargets } from '../bench/report/targets.js';
import type { CaseResult } from '../bench/report/types.js';
import { startPolicyProbe } from '../bench/tools/policy-probe.js';

/** Attempts every 10 ms from `from`, each known 2 ms after it opened, answered as `answered(start)` says. */
function attempts(from: number, to: number, answered: (start: number) => boolean): AttemptEvent[] {
  const out: AttemptEvent[] = [];
  for (let start = from; start < to; start += 10) out.push({ kind: 'attempt', start, end: start + 2, answered: answered(start) });
  return out;
}

const applied: PolicyWrite = { change: 'applied', sent: 1000, ack: 1020 };
const removed: PolicyWrite = { change: 'removed', sent: 5000, ack: 5030 };
const deny = { expectAnswered: false, settleMs: 1000 };

describe('bench policy: probe log', () => {
  it('reads the three kinds of events and rejects anything else with the line in the message', () => {
    assert.deepEqual(parseProbeEvent('{"kind":"attempt","start":1,"end":2,"answered":false,"error":"ECONNRESET"}'), { kind: 'attempt', start: 1, end: 2, answered: false, error: 'ECONNRESET' });
    assert.equal(parseProbeEvent('{"kind":"established","conn":3,"t":5}').kind, 'established');
    assert.equal(parseProbeEvent('{"kind":"closed","conn":3,"t":9,"answered":4,"lastAnswer":8,"reason":"closed"}').kind, 'closed');
    assert.throws(() => parseProbeEvent('policy-probe: --host and --port are required'), (err: Error) => err instanceof ProbeLogError && /not JSON: "policy-probe/.test(err.message));
    assert.throws(() => parseProbeEvent('{"kind":"attempt","start":"1","end":2,"answered":true}'), ProbeLogError);
  });

  it('keeps a line that is still being written for the next chunk, and other lines apart', () => {
    const reader = new ProbeLogReader();
    assert.deepEqual(reader.push('{"kind":"established","conn":1,"t":5}\n{"kind":"att'), [{ kind: 'established', conn: 1, t: 5 }]);
    assert.equal(reader.push('empt","start":1,"end":2,"answered":true}\nnode: warning\n').length, 1);
    assert.equal(reader.attempts().length, 1);
    assert.deepEqual(reader.otherLines, ['node: warning']);
  });
});

describe('bench policy: enforcement latency of new connections', () => {
  it('runs from the acknowledgement to the first refusal of the final run', () => {
    const log = attempts(0, 4000, (s) => s < 1300);
    assert.equal(newConnectionLatency(log, applied, { ...deny, until: 4000 }), 1302 - 1020);
  });

  it('a connection answered after the first refusal moves the enforcement to after it', () => {
    const log = attempts(0, 4000, (s) => s < 1300 || s === 1500);
    assert.equal(newConnectionLatency(log, applied, { ...deny, until: 4000 }), 1512 - 1020);
  });

  it('is not reached while the new outcome has held for less than the settle time, or never came', () => {
    const log = attempts(0, 4000, (s) => s < 1300);
    assert.equal(newConnectionLatency(log, applied, { ...deny, until: 2200 }), undefined);
    assert.equal(newConnectionLatency(log, applied, { ...deny, until: 2400 }), 1302 - 1020);
    assert.equal(newConnectionLatency(attempts(0, 4000, () => true), applied, { ...deny, until: 4000 }), undefined);
    // The probe stopped logging: a settle window without connections proves nothing.
    assert.equal(newConnectionLatency(attempts(0, 1400, (s) => s < 1300), applied, { ...deny, until: 4000 }), undefined);
  });

  it('looks only at connections opened between the write and `until`', () => {
    // Refused before the write (an earlier DENY) and answered again after `until` (the next write) do not count.
    const log = attempts(0, 6000, (s) => !((s > 500 && s < 900) || (s >= 1300 && s < 5000)));
    assert.equal(newConnectionLatency(log, applied, { ...deny, until: 5000 }), 1302 - 1020);
  });

  it('takes the earliest outcome of the run, even when a connection opened earlier took longer', () => {
    const log = attempts(0, 4000, (s) => s < 1300).map((a) => (a.start === 1300 ? { ...a, end: a.start + 900 } : a));
    assert.equal(newConnectionLatency(log, applied, { ...deny, until: 4000 }), 1312 - 1020);
  });

  it('can be negative: enforced before the API answer reached the bench', () => {
    const slowAck: PolicyWrite = { change: 'applied', sent: 1000, ack: 1400 };
    assert.equal(newConnectionLatency(attempts(0, 4000, (s) => s < 1300), slowAck, { ...deny, until: 4000 }), 1302 - 1400);
  });

  it('measures a removal the same way, towards answered', () => {
    const log = attempts(4000, 8000, (s) => s >= 5250);
    assert.equal(newConnectionLatency(log, removed, { expectAnswered: true, settleMs: 1000, until: 8000 }), 5252 - 5030);
  });
});

describe('bench policy: open connection cut', () => {
  const events = (closedAt: number | undefined, establishedAt = 200): ProbeEvent[] => [
    { kind: 'established', conn: 1, t: 100 },
    { kind: 'closed', conn: 1, t: 150, answered: 5, lastAnswer: 140, reason: 'closed' },
    { kind: 'established', conn: 2, t: establishedAt },
    ...(closedAt === undefined ? [] : [{ kind: 'closed' as const, conn: 2, t: closedAt, answered: 80, lastAnswer: closedAt - 9, reason: 'ECONNRESET' }]),
  ];

  it('runs from the acknowledgement to the end of the connection open at the write', () => {
    assert.deepEqual(openConnectionCut(events(1400), applied, 5000), { state: 'cut', ms: 380, reason: 'ECONNRESET' });
  });

  it('not cut: still open, or ended only after `until`', () => {
    assert.deepEqual(openConnectionCut(events(undefined), applied, 5000), { state: 'not cut' });
    assert.deepEqual(openConnectionCut(events(5600), applied, 5000), { state: 'not cut' });
  });

  it('none open: nothing established before the write, or it ended before', () => {
    assert.deepEqual(openConnectionCut(events(900), applied, 5000), { state: 'none open' });
    assert.deepEqual(openConnectionCut(events(undefined, 1010).slice(2), applied, 5000), { state: 'none open' });
  });

  it('knows when a keep-alive connection is up again', () => {
    assert.equal(keepAliveEstablishedAfter(events(1400), 150), true);
    assert.equal(keepAliveEstablishedAfter(events(1400), 200), false);
  });
});

describe('bench policy: summaries and targets', () => {
  it('missed changes rank above every sample', () => {
    assert.deepEqual(summarizeLatencies([300, 100, 200, 400]), { samples: 4, missed: 0, p50: 200, p90: 400, p99: 400, max: 400 });
    assert.deepEqual(summarizeLatencies([300, undefined, 200, 100]), { samples: 4, missed: 1, p50: 200, p90: null, p99: null, max: null });
    assert.deepEqual(summarizeLatencies([]), { samples: 0, missed: 0, p50: null, p90: null, p99: null, max: null });
  });

  it('names rows so the targets find them', () => {
    assert.equal(policyMeasureOf(policyVariant('same node', 'cut')), 'cut');
    assert.equal(policyMeasureOf(policyVariant('cross node', 'answered')), 'answered');
    assert.equal(policyMeasureOf('64 connections'), undefined);
  });

  const policyCase = (p99: Record<string, number | null>): CaseResult => ({
    id: 'policy',
    title: 'policy',
    method: '',
    params: {},
    metrics: [],
    rows: Object.entries(p99).map(([variant, v]) => ({ path: 'ambit', variant, values: { samples: 30, missed: v == null ? 1 : 0, p50: 100, p90: 200, p99: v, max: v } })),
  });
  const policyTargets = (c: CaseResult | undefined) => checkTargets(c ? [c] : []).filter((t) => t.id.startsWith('policy-'));

  it('p99 < 1 s on every new-connection row is met; one row above, or a missed p99, is not', () => {
    const rows = { [policyVariant('cross node', 'refused')]: 250, [policyVariant('cross node', 'answered')]: 400, [policyVariant('same node', 'refused')]: 120, [policyVariant('same node', 'answered')]: 300, [policyVariant('cross node', 'cut')]: 1200 };
    const [enforced, cut] = policyTargets(policyCase(rows));
    assert.equal(enforced!.met, true);
    assert.equal(enforced!.value, 400);
    assert.match(enforced!.measured!, /worst p99 400 ms/);
    assert.equal(cut!.met, false);
    const [slow] = policyTargets(policyCase({ ...rows, [policyVariant('same node', 'answered')]: 1000 }));
    assert.equal(slow!.met, false);
    const [missed] = policyTargets(policyCase({ ...rows, [policyVariant('cross node', 'refused')]: null }));
    assert.equal(missed!.met, false);
    assert.match(missed!.measured!, /worst p99 missed.*1 of 30 missed/);
  });

  it('not measured when the case did not run', () => {
    for (const t of policyTargets(undefined)) {
      assert.equal(t.met, null);
      assert.match(t.note!, /case "policy" did not run/);
    }
  });
});

/** A server that answers HTTP keep-alive requests while allowed, and resets every connection (open ones too) once denied. */
async function switchableServer(): Promise<{ port: number; deny(): void; close(): Promise<void> }> {
  let denied = false;
  const open = new Set<Socket>();
  const server: Server = createServer((socket) => {
    if (denied) return void socket.resetAndDestroy();
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      for (let n = chunk.toString('latin1').split('\r\n\r\n').length - 1; n > 0; n--) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    deny() {
      denied = true;
      for (const s of open) s.resetAndDestroy();
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('bench policy: the probe on real sockets', () => {
  it('logs answered connections, then refused ones and the reset of the keep-alive connection once the server denies', async () => {
    const server = await switchableServer();
    const events: ProbeEvent[] = [];
    const probe = startPolicyProbe({ host: '127.0.0.1', port: server.port, intervalMs: 10, timeoutMs: 1000, emit: (e) => events.push(e) });
    await new Promise((r) => setTimeout(r, 300));
    const write: PolicyWrite = { change: 'applied', sent: Date.now(), ack: Date.now() };
    server.deny();
    await new Promise((r) => setTimeout(r, 1300));
    await probe.stop();
    await server.close();

    const attemptsLogged = events.filter((e): e is AttemptEvent => e.kind === 'attempt');
    assert.ok(attemptsLogged.some((a) => a.answered && a.start < write.sent), 'answered before the switch');
    assert.ok(attemptsLogged.filter((a) => a.start > write.sent).every((a) => !a.answered), 'refused after it');
    assert.ok(attemptsLogged.some((a) => a.error === 'ECONNRESET'), 'the refusals are resets');
    assert.notEqual(newConnectionLatency(attemptsLogged, write, { expectAnswered: false, settleMs: 1000, until: Date.now() }), undefined);
    const cut = openConnectionCut(events, write, Infinity);
    assert.equal(cut.state, 'cut');
    assert.equal(cut.state === 'cut' && cut.reason, 'ECONNRESET');
    const established = events.find((e) => e.kind === 'established');
    const closed = events.find((e) => e.kind === 'closed');
    assert.ok(established && closed?.kind === 'closed' && closed.answered > 1, 'the keep-alive connection carried several requests before it was cut');
  });
});
