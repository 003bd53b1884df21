/**
 * Reading a Gateway of class istio-east-west: what is wrong with it (named by field), which of its
 * listeners can be served, and the settings its gateway Deployment and Service take from it. The
 * CRD keeps spec as written, so every field is checked here and nothing is trusted.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { HBONE_PORT, NETWORK_LABEL } from '../../api/resources.js';
import { EAST_WEST_GATEWAY_CLASS, HBONE_PROTOCOL, ISTIO_MUTUAL, TLS_MODE_TERMINATE, TLS_TERMINATE_MODE_OPTION } from './constants.js';

/** A Gateway as the API server stores it; spec and status are unchecked. */
export interface GatewayObject extends KubernetesObject {
  spec?: unknown;
  status?: unknown;
}

export interface ListenerVerdict {
  name: string;
  /** What is wrong and what is expected; undefined when the listener can be served. */
  problem?: string;
}

export interface GatewayReading {
  namespace: string;
  name: string;
  uid: string;
  generation: number;
  /** Problems with the Gateway as a whole: it is not accepted (InvalidParameters). */
  problems: string[];
  /** The listeners that have a usable name, in spec order. */
  listeners: ListenerVerdict[];
  /** `topology.istio.io/network` of the Gateway, else the cluster's network. */
  network: string;
  /** The Gateway's own `topology.istio.io/network` label, copied onto its objects. */
  networkLabel?: string;
  /** `spec.infrastructure` labels and annotations, for the objects made for the Gateway. */
  infrastructure: { labels: Record<string, string>; annotations: Record<string, string> };
}

export const gatewayKey = (namespace: string, name: string) => `${namespace}/${name}`;

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const shown = (value: unknown) => (value === undefined ? 'not set' : `${JSON.stringify(value)}`);

export function isEastWestGateway(gateway: GatewayObject): boolean {
  return isRecord(gateway.spec) && gateway.spec.gatewayClassName === EAST_WEST_GATEWAY_CLASS;
}

export const EXPECTED_LISTENER = `protocol ${HBONE_PROTOCOL}, port ${HBONE_PORT}, tls.mode ${TLS_MODE_TERMINATE}, tls.options["${TLS_TERMINATE_MODE_OPTION}"] ${ISTIO_MUTUAL}`;

/** The fields of a listener that differ from the one shape an east-west gateway serves. */
export function listenerProblem(listener: Record<string, unknown>): string | undefined {
  const wrong: string[] = [];
  if (listener.protocol !== HBONE_PROTOCOL) wrong.push(`protocol is ${shown(listener.protocol)}, expected ${HBONE_PROTOCOL}`);
  if (listener.port !== HBONE_PORT) wrong.push(`port is ${shown(listener.port)}, expected ${HBONE_PORT}`);
  const tls = listener.tls;
  if (tls !== undefined && !isRecord(tls)) {
    wrong.push(`tls is ${shown(tls)}, expected an object with mode ${TLS_MODE_TERMINATE}`);
  } else {
    if (tls?.mode !== TLS_MODE_TERMINATE) wrong.push(`tls.mode is ${shown(tls?.mode)}, expected ${TLS_MODE_TERMINATE}`);
    const options = tls?.options;
    const mode = isRecord(options) ? options[TLS_TERMINATE_MODE_OPTION] : undefined;
    if (mode !== ISTIO_MUTUAL) wrong.push(`tls.options["${TLS_TERMINATE_MODE_OPTION}"] is ${shown(mode)}, expected ${ISTIO_MUTUAL}`);
  }
  return wrong.length ? wrong.join('; ') : undefined;
}

/** A Service is named after the Gateway, so the name must be a DNS-1035 label. */
function nameProblem(name: string): string | undefined {
  if (name.length <= 63 && /^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(name)) return undefined;
  return `metadata.name: ${shown(name)} cannot name the gateway Service (at most 63 lowercase letters, digits and '-', starting with a letter)`;
}

function stringMap(value: unknown, field: string, problems: string[]): Record<string, string> {
  if (value === undefined) return {};
  if (!isRecord(value) || Object.values(value).some((v) => typeof v !== 'string')) {
    problems.push(`${field}: expected a map of strings, got ${shown(value)}`);
    return {};
  }
  return { ...(value as Record<string, string>) };
}

function readListeners(spec: Record<string, unknown>, problems: string[]): ListenerVerdict[] {
  const listeners = spec.listeners;
  if (!Array.isArray(listeners) || listeners.length === 0) {
    problems.push(`spec.listeners: expected a list of at least one listener, got ${shown(listeners)}`);
    return [];
  }
  const verdicts: ListenerVerdict[] = [];
  const seen = new Set<string>();
  for (const [index, listener] of (listeners as unknown[]).entries()) {
    const field = `spec.listeners[${index}]`;
    const name = isRecord(listener) ? listener.name : undefined;
    if (!isRecord(listener)) problems.push(`${field}: expected an object, got ${shown(listener)}`);
    else if (typeof name !== 'string' || !name) problems.push(`${field}.name: expected a non-empty string, got ${shown(name)}`);
    else if (seen.has(name)) problems.push(`${field}.name: ${shown(name)} is the name of an earlier listener`);
    else {
      seen.add(name);
      verdicts.push({ name, problem: listenerProblem(listener) });
    }
  }
  return verdicts;
}

export function readGateway(gateway: GatewayObject, clusterNetwork: string): GatewayReading {
  const metadata = gateway.metadata ?? {};
  const name = metadata.name ?? '';
  const problems: string[] = [];
  const nameIssue = nameProblem(name);
  if (nameIssue) problems.push(nameIssue);
  let listeners: ListenerVerdict[] = [];
  let infrastructure = { labels: {}, annotations: {} };
  if (!isRecord(gateway.spec)) {
    problems.push(`spec: expected an object, got ${shown(gateway.spec)}`);
  } else {
    listeners = readListeners(gateway.spec, problems);
    const infra = gateway.spec.infrastructure;
    if (infra !== undefined && !isRecord(infra)) problems.push(`spec.infrastructure: expected an object, got ${shown(infra)}`);
    else if (infra) infrastructure = { labels: stringMap(infra.labels, 'spec.infrastructure.labels', problems), annotations: stringMap(infra.annotations, 'spec.infrastructure.annotations', problems) };
  }
  return {
    namespace: metadata.namespace ?? '',
    name,
    uid: metadata.uid ?? '',
    generation: typeof metadata.generation === 'number' ? metadata.generation : 0,
    problems,
    listeners,
    network: metadata.labels?.[NETWORK_LABEL] || clusterNetwork,
    ...(metadata.labels?.[NETWORK_LABEL] ? { networkLabel: metadata.labels[NETWORK_LABEL] } : {}),
    infrastructure,
  };
}

/** Accepted: no problem with the Gateway as a whole, and at least one listener it can serve. */
export function isAccepted(reading: GatewayReading): boolean {
  return reading.problems.length === 0 && reading.listeners.some((l) => !l.problem);
}
