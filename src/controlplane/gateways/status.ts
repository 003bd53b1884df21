/**
 * Gateway status from what the controller sees: the Gateway itself, its Service (the LoadBalancer
 * address) and its Deployment (a ready replica). Conditions follow the Gateway API: Accepted and
 * Programmed on the Gateway; Accepted, Programmed and ResolvedRefs on each listener.
 */
import { isDeepStrictEqual } from 'node:util';
import type { V1Deployment, V1Service } from '@kubernetes/client-node';
import { HBONE_PORT } from '../../api/resources.js';
import { EAST_WEST_CONTROLLER_NAME } from './constants.js';
import { EXPECTED_LISTENER, isAccepted, isRecord, type GatewayReading } from './gateway.js';

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration: number;
  lastTransitionTime: string;
}

export interface GatewayStatusAddress {
  type: 'IPAddress' | 'Hostname';
  value: string;
}

export interface ListenerStatus {
  name: string;
  supportedKinds: Array<{ group?: string; kind: string }>;
  attachedRoutes: number;
  conditions: Condition[];
}

export interface GatewayStatus {
  addresses: GatewayStatusAddress[];
  conditions: Condition[];
  listeners: ListenerStatus[];
}

/** What the controller found of the Gateway's objects. */
export interface ObservedResources {
  service?: V1Service;
  deployment?: V1Deployment;
  /** Why the objects could not be made (one of them exists and belongs to something else). */
  blocked?: string;
}

/** metav1.Time: RFC 3339 in seconds. */
export const kubeTime = (date: Date) => date.toISOString().replace(/\.\d+Z$/, 'Z');

export function loadBalancerAddresses(service: V1Service | undefined): GatewayStatusAddress[] {
  const addresses: GatewayStatusAddress[] = [];
  for (const ingress of service?.status?.loadBalancer?.ingress ?? []) {
    if (ingress.ip) addresses.push({ type: 'IPAddress', value: ingress.ip });
    else if (ingress.hostname) addresses.push({ type: 'Hostname', value: ingress.hostname });
  }
  return addresses;
}

export function hasReadyReplica(deployment: V1Deployment | undefined): boolean {
  return (deployment?.status?.readyReplicas ?? 0) > 0;
}

type Verdict = Omit<Condition, 'observedGeneration' | 'lastTransitionTime'>;

function programmedVerdict(reading: GatewayReading, observed: ObservedResources, addresses: GatewayStatusAddress[]): Verdict {
  const ref = `${reading.namespace}/${reading.name}`;
  const no = (reason: string, message: string): Verdict => ({ type: 'Programmed', status: 'False', reason, message });
  if (!isAccepted(reading)) return no('Invalid', 'the Gateway is not accepted (see its Accepted condition)');
  if (observed.blocked) return no('Invalid', observed.blocked);
  if (!addresses.length) return no('AddressNotAssigned', `waiting for a LoadBalancer address for Service ${ref}`);
  if (!hasReadyReplica(observed.deployment)) return no('Pending', `waiting for a ready replica of Deployment ${ref}`);
  return { type: 'Programmed', status: 'True', reason: 'Programmed', message: `serving HBONE on ${addresses.map((a) => a.value).join(', ')} port ${HBONE_PORT}` };
}

function acceptedVerdict(reading: GatewayReading): Verdict {
  if (reading.problems.length) return { type: 'Accepted', status: 'False', reason: 'InvalidParameters', message: reading.problems.join('; ') };
  const invalid = reading.listeners.filter((l) => l.problem);
  if (invalid.length === reading.listeners.length) {
    const details = invalid.map((l) => `listener "${l.name}": ${l.problem}`).join('; ');
    return { type: 'Accepted', status: 'False', reason: 'UnsupportedProtocol', message: `no listener can be served: ${details} (an east-west gateway listener is ${EXPECTED_LISTENER})` };
  }
  const ignored = invalid.length ? `; listeners not served: ${invalid.map((l) => `"${l.name}"`).join(', ')}` : '';
  return { type: 'Accepted', status: 'True', reason: 'Accepted', message: `accepted by ${EAST_WEST_CONTROLLER_NAME}${ignored}` };
}

function listenerVerdicts(problem: string | undefined, programmed: Verdict): Verdict[] {
  if (problem) {
    return [
      { type: 'Accepted', status: 'False', reason: 'UnsupportedProtocol', message: `${problem} (an east-west gateway listener is ${EXPECTED_LISTENER})` },
      { type: 'Programmed', status: 'False', reason: 'Invalid', message: 'the listener is not accepted' },
      { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'no references to resolve' },
    ];
  }
  return [
    { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'HBONE listener accepted' },
    programmed.status === 'True'
      ? { type: 'Programmed', status: 'True', reason: 'Programmed', message: programmed.message }
      : { type: 'Programmed', status: 'False', reason: programmed.reason === 'Invalid' ? 'Invalid' : 'Pending', message: programmed.message },
    { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'no references to resolve' },
  ];
}

function conditionsOf(value: unknown): Array<Record<string, unknown>> {
  return Array.isArray(value) ? value.filter(isRecord) : [];
}

/** Stamps generation and transition time; the time stays that of the previous condition of the type when its status did not change. */
function stamp(verdicts: Verdict[], previous: unknown, generation: number, now: string): Condition[] {
  const before = conditionsOf(previous);
  return verdicts.map((verdict) => {
    const old = before.find((c) => c.type === verdict.type);
    const kept = old?.status === verdict.status && typeof old.lastTransitionTime === 'string' ? old.lastTransitionTime : undefined;
    return { ...verdict, observedGeneration: generation, lastTransitionTime: kept ?? now };
  });
}

/** The status the Gateway should have; `previous` is its current status (transition times are kept from it). */
export function computeGatewayStatus(reading: GatewayReading, observed: ObservedResources, previous: unknown, now: Date): GatewayStatus {
  const time = kubeTime(now);
  const accepted = isAccepted(reading);
  const addresses = accepted && !observed.blocked ? loadBalancerAddresses(observed.service) : [];
  const programmed = programmedVerdict(reading, observed, addresses);
  const before = isRecord(previous) ? previous : {};
  const listenersBefore = Array.isArray(before.listeners) ? before.listeners.filter(isRecord) : [];
  return {
    addresses,
    conditions: stamp([acceptedVerdict(reading), programmed], before.conditions, reading.generation, time),
    listeners: reading.listeners.map((listener) => ({
      name: listener.name,
      supportedKinds: [],
      attachedRoutes: 0,
      conditions: stamp(listenerVerdicts(listener.problem, programmed), listenersBefore.find((l) => l.name === listener.name)?.conditions, reading.generation, time),
    })),
  };
}

function withoutTransitionTimes(conditions: unknown): unknown[] {
  return conditionsOf(conditions).map((condition) => {
    const copy = { ...condition };
    delete copy.lastTransitionTime;
    return copy;
  });
}

/** The parts of a status this controller writes, transition times left out. */
function comparable(status: unknown) {
  const s = isRecord(status) ? status : {};
  return {
    addresses: Array.isArray(s.addresses) ? s.addresses : [],
    conditions: withoutTransitionTimes(s.conditions),
    listeners: (Array.isArray(s.listeners) ? s.listeners.filter(isRecord) : []).map((l) => ({ ...l, conditions: withoutTransitionTimes(l.conditions) })),
  };
}

/** Whether writing `next` would change anything but transition times. */
export function sameStatus(current: unknown, next: GatewayStatus): boolean {
  return isDeepStrictEqual(comparable(current), comparable(next));
}
