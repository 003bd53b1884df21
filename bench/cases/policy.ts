/**
 * How long an AuthorizationPolicy change takes to be enforced: a DENY for the client's identity on
 * the server pods is written through the API and removed again, N times, while a probe in the
 * client pod opens a connection every 10 ms and keeps one keep-alive connection busy.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitUntil, type Spawned } from '../exec.js';
import type { OpenPath } from '../paths/path.js';
import { keepAliveEstablishedAfter, newConnectionLatency, openConnectionCut, summarizeLatencies, type LatencySummary, type PolicyWrite } from '../policy/enforcement.js';
import type { ProbeEvent } from '../policy/events.js';
import { PolicyWriter, startSameNodeServer, type SameNodeServer } from '../policy/lab.js';
import { ProbeLogFile } from '../policy/probe-log.js';
import { policyVariant, type PolicyMeasure, type PolicyTarget } from '../policy/rows.js';
import type { CaseResult, CaseRow } from '../report/types.js';
import { HTTP_PORT } from '../servers.js';
import { summarize } from '../stats.js';
import { errorMessage, type BenchCase, type CaseContext } from './case.js';
import { notMeasured } from './not-measured.js';

const probeTool = fileURLToPath(new URL('../tools/policy-probe.ts', import.meta.url));
const tsxLoader = import.meta.resolve('tsx');

export const PROBE_INTERVAL_MS = 10;
/** A request unanswered this long counts as refused. */
export const ATTEMPT_TIMEOUT_MS = 1000;
/** The new outcome must hold this long (every connection opened meanwhile) to count as enforced. */
export const SETTLE_MS = 1000;
/** A change not enforced this long after its write is recorded as missed. */
export const PHASE_TIMEOUT_MS = 15_000;
const POLL_MS = 50;

const TITLE = 'Policy changes: AuthorizationPolicy written → enforced on new and open connections';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A random pause between writes, so they do not fall in step with any periodic work of the mesh. */
const pause = () => sleep(200 + Math.random() * 300);

export const probeArgv = (host: string, port: number) => [
  process.execPath, '--import', tsxLoader, probeTool,
  '--host', host, '--port', String(port), '--interval', String(PROBE_INTERVAL_MS), '--timeout', String(ATTEMPT_TIMEOUT_MS),
];

interface Probe {
  target: PolicyTarget;
  spawned: Spawned;
  log: ProbeLogFile;
}

function events(probe: Probe): ProbeEvent[] {
  if (!probe.spawned.alive()) throw new Error(`the policy probe for the ${probe.target} server exited; its log: ${probe.log.file}\n${probe.log.read().otherLines.slice(-5).join('\n')}`);
  return probe.log.read().events;
}

/** While waiting: attempts that started before this have all been logged. */
const loggedUntil = () => Date.now() - ATTEMPT_TIMEOUT_MS - 100;

interface PhaseOutcome {
  /** New connections have the new outcome at every probe. */
  newConnections: boolean;
  /** After a DENY the open connection was cut; after its removal a new one is up again (for the next round). */
  keepAlive: boolean;
}

/** Waits until the write is enforced at every probe, or gives up (the final analysis records what was missed). */
async function waitForPhase(probes: Probe[], write: PolicyWrite, context: CaseContext): Promise<PhaseOutcome> {
  const expectAnswered = write.change === 'removed';
  const check = (): PhaseOutcome => {
    const outcome = { newConnections: true, keepAlive: true };
    for (const p of probes) {
      const log = events(p);
      outcome.newConnections &&= newConnectionLatency(p.log.log.attempts(), write, { expectAnswered, settleMs: SETTLE_MS, until: loggedUntil() }) !== undefined;
      outcome.keepAlive &&= expectAnswered ? keepAliveEstablishedAfter(log, write.sent) : openConnectionCut(log, write, Infinity).state !== 'not cut';
    }
    return outcome;
  };
  const deadline = write.ack + PHASE_TIMEOUT_MS;
  let outcome = check();
  while (!(outcome.newConnections && outcome.keepAlive) && Date.now() < deadline && !context.stopped()) {
    await sleep(POLL_MS);
    outcome = check();
  }
  return outcome;
}

interface Samples {
  refused: Array<number | undefined>;
  answered: Array<number | undefined>;
  cut: Array<number | undefined>;
  cutReasons: Map<string, number>;
  noneOpen: number;
}

/** Every write's latencies at one probe, each change judged on the attempts up to the next write. */
function samplesOf(probe: Probe, writes: PolicyWrite[], end: number): Samples {
  const log = probe.log.read();
  const attempts = log.attempts();
  const s: Samples = { refused: [], answered: [], cut: [], cutReasons: new Map(), noneOpen: 0 };
  writes.forEach((write, i) => {
    const until = writes[i + 1]?.sent ?? end;
    const expectAnswered = write.change === 'removed';
    const latency = newConnectionLatency(attempts, write, { expectAnswered, settleMs: SETTLE_MS, until });
    (expectAnswered ? s.answered : s.refused).push(latency);
    if (expectAnswered) return;
    const cut = openConnectionCut(log.events, write, until);
    if (cut.state === 'none open') s.noneOpen++;
    else if (cut.state === 'not cut') s.cut.push(undefined);
    else {
      s.cut.push(cut.ms);
      s.cutReasons.set(cut.reason, (s.cutReasons.get(cut.reason) ?? 0) + 1);
    }
  });
  return s;
}

const rowValues = (l: LatencySummary): Record<string, number | null> => ({ ...l });
const fmt = (v: number | null) => (v == null ? 'missed' : `${Math.round(v)} ms`);
const line = (l: LatencySummary) => `p50 ${fmt(l.p50)}, p99 ${fmt(l.p99)}, max ${fmt(l.max)}${l.missed ? `, ${l.missed} of ${l.samples} missed` : ''}`;

/** The two servers (cross node: the ambit path's; same node: one made here) and a probe for each in the client pod. */
async function startProbes(context: CaseContext, path: OpenPath, sameNode: SameNodeServer | undefined): Promise<Probe[]> {
  const targets: Array<[PolicyTarget, string]> = [['cross node', path.endpoints.serverPodIp], ...(sameNode ? [['same node', sameNode.ip] as [PolicyTarget, string]] : [])];
  const probes: Probe[] = [];
  for (const [target, ip] of targets) {
    const file = join(context.workDir, `policy-probe-${target.replace(' ', '-')}.jsonl`);
    probes.push({ target, spawned: path.endpoints.clientPod.spawn(probeArgv(ip, HTTP_PORT), file), log: new ProbeLogFile(file) });
  }
  const since = Date.now();
  for (const p of probes) {
    await waitUntil(`the ${p.target} server to answer the policy probe`, async () => {
      const log = events(p);
      return keepAliveEstablishedAfter(log, since) && p.log.log.attempts().some((a) => a.answered && a.start >= since);
    }, 30_000, 100);
  }
  return probes;
}

export const policyCase: BenchCase = {
  id: 'policy',
  title: TITLE,
  async run(context): Promise<CaseResult> {
    const path = context.paths.find((p) => p.name === 'ambit');
    if (!path) return notMeasured('policy', TITLE, 'needs the ambit path (the lab, and --paths including ambit)');
    const iterations = context.quick ? 5 : 30;
    const writer = new PolicyWriter();
    let sameNode: SameNodeServer | undefined;
    let probes: Probe[] = [];
    const writes: PolicyWrite[] = [];
    const notes: string[] = [];
    try {
      await writer.prepare();
      try {
        sameNode = await startSameNodeServer(context.workDir, HTTP_PORT);
      } catch (err) {
        context.log(`  same-node server: ${errorMessage(err)} (measuring cross node only)`);
        notes.push(`same node not measured: ${errorMessage(err)}`);
      }
      probes = await startProbes(context, path, sameNode);

      // The first DENY of the run proves that every server is enforced at all (a pod not yet
      // captured would be answered throughout); it is reported apart, not in the samples.
      const first = await writer.apply();
      if (!(await waitForPhase(probes, first, context)).newConnections) throw new Error(`the first DENY was not enforced on new connections within ${PHASE_TIMEOUT_MS / 1000} s at every server: is the mesh carrying the traffic?`);
      const firstRemoved = await writer.remove();
      if (!(await waitForPhase(probes, firstRemoved, context)).newConnections) throw new Error(`the servers did not answer again within ${PHASE_TIMEOUT_MS / 1000} s of the first DENY's removal`);
      const warmUp = [first, firstRemoved];

      for (let i = 0; i < iterations && !context.stopped(); i++) {
        for (const change of ['applied', 'removed'] as const) {
          await pause();
          const write = change === 'applied' ? await writer.apply() : await writer.remove();
          writes.push(write);
          const outcome = await waitForPhase(probes, write, context);
          if (!outcome.newConnections || !outcome.keepAlive) context.log(`  round ${i + 1}: DENY ${change}: ${outcome.newConnections ? 'the keep-alive connection' : 'new connections'} not as expected within ${PHASE_TIMEOUT_MS / 1000} s`);
        }
      }
      await pause();
      const end = Date.now();
      await Promise.all(probes.map((p) => p.spawned.stop()));

      const rows: CaseRow[] = [];
      for (const probe of probes) {
        const s = samplesOf(probe, writes, end);
        const warm = samplesOf(probe, warmUp, writes[0]?.sent ?? end);
        const summaries: Record<PolicyMeasure, LatencySummary> = { refused: summarizeLatencies(s.refused), answered: summarizeLatencies(s.answered), cut: summarizeLatencies(s.cut) };
        for (const measure of ['refused', 'answered', 'cut'] as const) rows.push({ path: 'ambit', variant: policyVariant(probe.target, measure), values: rowValues(summaries[measure]) });
        context.log(`  ${probe.target}: refused after ${line(summaries.refused)}; answered after ${line(summaries.answered)}; open connection cut after ${line(summaries.cut)}`);
        const reasons = [...s.cutReasons].map(([reason, n]) => `${reason} ×${n}`).join(', ');
        const attempts = probe.log.log.attempts().length;
        notes.push(
          `${probe.target}: the open connection ended by ${reasons || '–'}${s.noneOpen ? `; ${s.noneOpen} DENY writes found no keep-alive connection open` : ''}; ` +
            `first DENY of the run (not in the samples): refused after ${fmt(warm.refused[0] ?? null)}, open connection cut after ${fmt(warm.cut[0] ?? null)}; ` +
            `${attempts.toLocaleString('en')} connections opened by the probe`,
        );
      }
      const apiMs = summarize(writes.map((w) => w.ack - w.sent));
      notes.push(`API write round trip (sent → acknowledged): p50 ${apiMs.p50.toFixed(1)} ms, max ${apiMs.max.toFixed(1)} ms over ${writes.length} writes; latencies run from the acknowledgement`);
      return {
        id: 'policy',
        title: TITLE,
        method:
          `In namespace bench-mesh (ambient) the client pod (cluster1-node1) reaches nginx in the server pod on cluster1-node2 (cross node) and in a second server pod on cluster1-node1 (same node). ` +
          `\`${probeArgv('<server>', HTTP_PORT).slice(3).join(' ').replace(probeTool, 'bench/tools/policy-probe.ts')}\` runs in the client pod for each server: every ${PROBE_INTERVAL_MS} ms it opens a new TCP connection and sends one GET ` +
          `(answered: an HTTP 2xx/3xx came back; refused: reset, closed or ${ATTEMPT_TIMEOUT_MS} ms without an answer), and it keeps one keep-alive connection with a GET every ${PROBE_INTERVAL_MS} ms, logging every outcome with its wall-clock time. ` +
          `The bench creates an AuthorizationPolicy DENY for the client's principal with selector app=bench-server (both servers) through the Kubernetes API (@kubernetes/client-node, one keep-alive connection) and deletes it again, ${iterations} times, after a first round that is not counted; ` +
          `each write waits for the change to be enforced everywhere (up to ${PHASE_TIMEOUT_MS / 1000} s, else missed) and a random 0.2–0.5 s pause. ` +
          `Enforced = from the write's acknowledgement to the first connection of the run of new-outcome connections (by opening time) after which, up to the next write, no connection had the old outcome; the run must last ≥ ${SETTLE_MS} ms. ` +
          `Open connection cut = from the DENY's acknowledgement to the end (reset or close) of the keep-alive connection that was answered before it. Resolution: the ${PROBE_INTERVAL_MS} ms probe interval. A missed change counts as slower than every sample, so a percentile that lands on one shows –`,
        params: { iterations, probeIntervalMs: PROBE_INTERVAL_MS, attemptTimeoutMs: ATTEMPT_TIMEOUT_MS, settleMs: SETTLE_MS, phaseTimeoutMs: PHASE_TIMEOUT_MS },
        metrics: [
          { key: 'samples', label: 'changes', unit: '', digits: 0 },
          { key: 'missed', label: 'missed', unit: '', digits: 0 },
          { key: 'p50', label: 'p50', unit: 'ms', digits: 0 },
          { key: 'p90', label: 'p90', unit: 'ms', digits: 0 },
          { key: 'p99', label: 'p99', unit: 'ms', digits: 0 },
          { key: 'max', label: 'max', unit: 'ms', digits: 0 },
        ],
        rows,
        notes,
      };
    } finally {
      await Promise.all(probes.map((p) => p.spawned.stop()));
      await writer.removeIfPresent().catch((err: unknown) => context.log(`  removing the DENY policy: ${errorMessage(err)}`));
      if (sameNode) {
        await sameNode.nginx.stop();
        await sameNode.remove().catch((err: unknown) => context.log(`  removing the same-node server pod: ${errorMessage(err)}`));
      }
    }
  },
};
