import { BOTH_ENDS } from '../cases/cost.js';
import { CONTROL_PLANE_ROW_PREFIX, crossNetworkVariant, READY_TO_REMOTE_ZTUNNEL } from '../cases/two-network-variants.js';
import { policyMeasureOf, type PolicyMeasure } from '../policy/rows.js';
import { GOAL_ADDED_P50_MS, GOAL_CPU_PER_1K, GOAL_RSS_MB, waypointVerdicts, type Verdict } from '../waypoint/compare.js';
import { gatewayCostSummary, SAME_NETWORK_P50_LIMIT, sameNetworkLatencyVerdict } from '../mixed/compare.js';
import type { CaseId, CaseResult, CaseRow, TargetCheck } from './types.js';

/**
 * The issue's targets. They are reported as met / not met, never asserted: a benchmark on a
 * shared 2-core machine informs, it does not gate.
 */
const find = (cases: CaseResult[], id: CaseId) => cases.find((c) => c.id === id && !c.skipped);
const ok = (r: CaseRow) => !r.error;

function notMeasured(id: string, title: string, target: string, note: string): TargetCheck {
  return { id, title, target, value: null, measured: null, met: null, note };
}

function whyMissing(result: CaseResult | undefined, caseId: CaseId, needs: string[]): string {
  if (!result) return `case "${caseId}" did not run`;
  const missing = needs.filter((p) => !result.rows.some((r) => r.path === p && ok(r)));
  return missing.length ? `no ${missing.join(' or ')} result in this run` : 'no comparable result';
}

function ratioTarget(cases: CaseResult[], id: string, caseId: CaseId, title: string, minimum: number, metric: string, unit: string, pick: (rows: CaseRow[]) => CaseRow | undefined): TargetCheck {
  const target = `≥ ${minimum.toFixed(1)}× stunnel`;
  const result = find(cases, caseId);
  const ambit = result && pick(result.rows.filter((r) => r.path === 'ambit' && ok(r)));
  const stunnel = result && pick(result.rows.filter((r) => r.path === 'stunnel' && ok(r)));
  const a = ambit?.values[metric];
  const s = stunnel?.values[metric];
  if (a == null || s == null || s === 0) return notMeasured(id, title, target, whyMissing(result, caseId, ['ambit', 'stunnel']));
  const value = a / s;
  const fmt = (v: number) => (v >= 100 ? Math.round(v).toLocaleString('en') : v.toFixed(2));
  const at = (r: CaseRow | undefined) => (r?.variant ? ` at ${r.variant}` : '');
  return { id, title, target, value, measured: `${value.toFixed(2)}× stunnel (ambit ${fmt(a)} ${unit}${at(ambit)}, stunnel ${fmt(s)} ${unit}${at(stunnel)})`, met: value >= minimum };
}

/** The row with the highest value of `metric`: "at saturation" is the best a path did over the connection counts. */
const peak = (metric: string) => (rows: CaseRow[]) => rows.reduce<CaseRow | undefined>((best, r) => ((r.values[metric] ?? -Infinity) > (best?.values[metric] ?? -Infinity) ? r : best), undefined);
const single = (rows: CaseRow[]) => rows[0];

function addedLatencyTarget(cases: CaseResult[], id: string, key: 'p50' | 'p99', maximumMs: number): TargetCheck {
  const label = key === 'p50' ? 'p50' : 'p99';
  const title = `added latency at 1,000 req/s, ${label}`;
  const target = `≤ ${maximumMs} ms over direct`;
  const result = find(cases, 'latency');
  const ambit = result?.rows.find((r) => r.path === 'ambit' && ok(r));
  const added = ambit?.added?.[key];
  if (added == null) return notMeasured(id, title, target, whyMissing(result, 'latency', ['ambit', 'direct']));
  return { id, title, target, value: added, measured: `${added.toFixed(3)} ms (ambit ${ambit!.values[key]!.toFixed(3)} ms)`, met: added <= maximumMs };
}

function ztunnelTargets(cases: CaseResult[]): TargetCheck[] {
  const result = find(cases, 'cost');
  const perZtunnel = result?.rows.filter((r) => r.path === 'ambit' && ok(r) && r.variant !== BOTH_ENDS) ?? [];
  const cpuTitle = 'ztunnel CPU per 1,000 requests (at 1,000 req/s, busiest ztunnel)';
  const rssTitle = 'ztunnel RSS idle (largest ztunnel)';
  if (!perZtunnel.length) {
    const why = whyMissing(result, 'cost', ['ambit']);
    return [notMeasured('ztunnel-cpu', cpuTitle, '≤ 0.12 CPU-s', why), notMeasured('ztunnel-rss', rssTitle, '≤ 80 MiB', why)];
  }
  const max = (key: string) => perZtunnel.reduce((m, r) => Math.max(m, r.values[key] ?? -Infinity), -Infinity);
  const cpu = max('cpuPer1kAtRate');
  const rss = max('rssIdleMiB');
  return [
    { id: 'ztunnel-cpu', title: cpuTitle, target: '≤ 0.12 CPU-s', value: cpu, measured: `${cpu.toFixed(4)} CPU-s`, met: cpu <= 0.12 },
    { id: 'ztunnel-rss', title: rssTitle, target: '≤ 80 MiB', value: rss, measured: `${rss.toFixed(1)} MiB`, met: rss <= 80 },
  ];
}

/** Why a case's target has no value: the case was skipped (with its reason), did not run, or lacks the row. */
function whyCaseMissing(cases: CaseResult[], caseId: CaseId, row: string): string {
  const result = cases.find((c) => c.id === caseId);
  if (!result) return `case "${caseId}" did not run`;
  if (result.skipped) return `case "${caseId}" not measured: ${result.skipped}`;
  return `no ${row} result in this run`;
}

function crossNetworkTarget(cases: CaseResult[]): TargetCheck {
  const id = 'crossnet';
  const title = 'cross-network new connections/s (inner pooling on)';
  const target = '≥ 0.8× same-network';
  const rows = find(cases, 'crossnet')?.rows.filter(ok) ?? [];
  const cps = (variant: string) => rows.find((r) => r.variant === variant)?.values.cps ?? null;
  const cross = cps(crossNetworkVariant('cross network', true));
  const same = cps(crossNetworkVariant('same network', true));
  if (cross == null || same == null || same === 0) return notMeasured(id, title, target, whyCaseMissing(cases, 'crossnet', 'same- and cross-network'));
  const value = cross / same;
  const unpooledCross = cps(crossNetworkVariant('cross network', false));
  const unpooledSame = cps(crossNetworkVariant('same network', false));
  const unpooled = unpooledCross != null && unpooledSame ? `; inner pooling off: ${(unpooledCross / unpooledSame).toFixed(2)}×` : '';
  const n = (v: number) => Math.round(v).toLocaleString('en');
  return { id, title, target, value, measured: `${value.toFixed(2)}× (cross ${n(cross)} vs same ${n(same)} conn/s${unpooled})`, met: value >= 0.8 };
}

/** The targets are at 5,000 pods; a smaller run (--quick) reports its numbers without judging them. */
const CONTROL_PLANE_TARGET_PODS = 5000;

function controlPlaneTargets(cases: CaseResult[]): TargetCheck[] {
  const latencyTitle = 'control plane: pod Ready → remote ztunnel, p99 at 5,000 pods';
  const rssTitle = 'control plane RSS at 5,000 pods (largest of the two)';
  const result = find(cases, 'controlplane');
  const pods = Number(result?.params.totalPods ?? 0);
  const atScale = pods >= CONTROL_PLANE_TARGET_PODS;
  const scaleNote = atScale ? '' : ` (at ${pods.toLocaleString('en')} pods, not the target's ${CONTROL_PLANE_TARGET_PODS.toLocaleString('en')}: not judged)`;
  const rows = result?.rows.filter(ok) ?? [];

  const latencyRow = rows.find((r) => r.variant === READY_TO_REMOTE_ZTUNNEL);
  const p99 = latencyRow?.values.p99Ms;
  const latency: TargetCheck =
    p99 == null
      ? notMeasured('controlplane-latency', latencyTitle, '≤ 1 s', whyCaseMissing(cases, 'controlplane', 'pod Ready → remote ztunnel'))
      : {
          id: 'controlplane-latency',
          title: latencyTitle,
          target: '≤ 1 s',
          value: p99,
          measured: `p99 ${p99.toFixed(1)} ms (p50 ${latencyRow!.values.p50Ms?.toFixed(1) ?? '–'} ms, ${latencyRow!.values.missed ?? '–'} of ${latencyRow!.values.samples ?? '–'} missed)${scaleNote}`,
          met: atScale ? p99 <= 1000 : null,
          ...(atScale ? {} : { note: 'measured below the target\'s scale' }),
        };

  const rss = rows.filter((r) => r.variant?.startsWith(CONTROL_PLANE_ROW_PREFIX)).map((r) => ({ variant: r.variant!, rss: r.values.rssMaxMiB })).filter((r): r is { variant: string; rss: number } => r.rss != null);
  const largest = rss.reduce<{ variant: string; rss: number } | undefined>((a, b) => (a && a.rss >= b.rss ? a : b), undefined);
  const memory: TargetCheck = !largest
    ? notMeasured('controlplane-rss', rssTitle, '≤ 400 MiB', whyCaseMissing(cases, 'controlplane', 'control plane'))
    : {
        id: 'controlplane-rss',
        title: rssTitle,
        target: '≤ 400 MiB',
        value: largest.rss,
        measured: `${largest.rss.toFixed(1)} MiB (${largest.variant})${scaleNote}`,
        met: atScale ? largest.rss <= 400 : null,
        ...(atScale ? {} : { note: 'measured below the target\'s scale' }),
      };
  return [latency, memory];
}

/** The mixed-network case: same-network latency against in-cluster (a goal), and the gateway path's extra cost (no goal). */
function mixedNetworkTargets(cases: CaseResult[]): TargetCheck[] {
  const rows = find(cases, 'mixed')?.rows ?? [];
  const latencyTitle = 'same-network p50 latency at 1,000 req/s (a service only in another cluster on the same network)';
  const latencyTarget = `≤ ${SAME_NETWORK_P50_LIMIT.toFixed(1)}× in-cluster`;
  const verdict = sameNetworkLatencyVerdict(rows);
  const latency: TargetCheck = verdict
    ? { id: 'mixed-same-network', title: latencyTitle, target: latencyTarget, value: verdict.value, measured: verdict.measured, met: verdict.met }
    : notMeasured('mixed-same-network', latencyTitle, latencyTarget, whyCaseMissing(cases, 'mixed', 'in-cluster and same-network'));
  const costTitle = 'gateway path\'s extra cost (a service only on another network, through its east-west gateway)';
  const cost = gatewayCostSummary(rows);
  const gateway: TargetCheck = cost
    ? { id: 'mixed-gateway-cost', title: costTitle, target: 'reported', value: cost.value, measured: cost.measured, met: null, reported: true }
    : { ...notMeasured('mixed-gateway-cost', costTitle, 'reported', whyCaseMissing(cases, 'mixed', 'same-network and gateway')), reported: true };
  return [latency, gateway];
}

/** p99 of each policy row of `measures`; a p99 that landed on a missed change (null) is worse than any number. */
function policyTarget(cases: CaseResult[], id: string, title: string, measures: PolicyMeasure[]): TargetCheck {
  const target = 'p99 < 1 s';
  const rows = find(cases, 'policy')?.rows.filter((r) => ok(r) && measures.includes(policyMeasureOf(r.variant)!) && (r.values.samples ?? 0) > 0) ?? [];
  if (!rows.length) return notMeasured(id, title, target, whyCaseMissing(cases, 'policy', measures.join(' and ')));
  const p99 = (r: CaseRow) => r.values.p99 ?? Infinity;
  const worst = rows.reduce((a, b) => (p99(b) > p99(a) ? b : a));
  const each = rows.map((r) => `${r.variant} ${r.values.p99 == null ? 'missed' : `${Math.round(r.values.p99)} ms`}${r.values.missed ? ` (${r.values.missed} of ${r.values.samples} missed)` : ''}`).join('; ');
  const value = p99(worst);
  return { id, title, target, value: Number.isFinite(value) ? value : null, measured: `worst p99 ${Number.isFinite(value) ? `${Math.round(value)} ms` : 'missed'} (${each})`, met: value < 1000 };
}

/** The waypoint's cost against the issue's goals (Istio's published waypoint: about 0.25 vCPU and 60 MB at 1,000 req/s). */
function waypointTargets(cases: CaseResult[]): TargetCheck[] {
  const verdicts = waypointVerdicts(find(cases, 'waypoint')?.rows ?? []);
  const check = (id: string, title: string, target: string, verdict: Verdict | undefined, row: string): TargetCheck =>
    verdict ? { id, title, target, value: verdict.value, measured: verdict.measured, met: verdict.met } : notMeasured(id, title, target, whyCaseMissing(cases, 'waypoint', row));
  return [
    check('waypoint-cpu', 'waypoint CPU per 1,000 requests (at 1,000 req/s)', `≤ ${GOAL_CPU_PER_1K} CPU-s`, verdicts.cpu, 'ambit waypoint'),
    check('waypoint-rss', 'waypoint RSS under load', `≤ ${GOAL_RSS_MB} MB`, verdicts.rss, 'ambit waypoint'),
    check('waypoint-latency-p50', 'waypoint added latency at 1,000 req/s, p50', `≤ ${GOAL_ADDED_P50_MS} ms over ambit L4`, verdicts.addedP50, 'ambit L4 and ambit waypoint'),
  ];
}

export function checkTargets(cases: CaseResult[]): TargetCheck[] {
  return [
    ratioTarget(cases, 'throughput', 'throughput', 'L4 throughput', 1.0, 'gbps', 'Gbit/s', single),
    ratioTarget(cases, 'keepalive', 'keepalive', 'keep-alive requests/s at saturation (best connection count of each)', 1.3, 'rps', 'req/s', peak('rps')),
    ratioTarget(cases, 'newconns', 'newconns', 'new connections/s', 1.0, 'cps', 'conn/s', single),
    addedLatencyTarget(cases, 'latency-p50', 'p50', 0.3),
    addedLatencyTarget(cases, 'latency-p99', 'p99', 2),
    crossNetworkTarget(cases),
    ...ztunnelTargets(cases),
    ...controlPlaneTargets(cases),
    ...mixedNetworkTargets(cases),
    policyTarget(cases, 'policy-enforced', 'policy change → enforced on new connections (DENY applied and removed, cross and same node)', ['refused', 'answered']),
    policyTarget(cases, 'policy-open-cut', 'DENY applied → open connection cut (cross and same node)', ['cut']),
    ...waypointTargets(cases),
  ];
}
