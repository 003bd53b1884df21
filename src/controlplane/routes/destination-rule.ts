/**
 * Istio `DestinationRule` (networking.istio.io v1/v1beta1/v1alpha3) read into what the waypoint
 * applies: the host's subsets (name → labels). Invalid fields throw InvalidObjectError naming them;
 * fields accepted but not applied are listed for a log line.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { LoadBalancer_Simple, type ConnectionPoolSchema, type LoadBalancerSchema, type OutlierDetectionSchema } from '../../gen/ambit/waypoint/waypoint_pb.js';
import { type Field, objectKey, specOf } from './fields.js';

export type LoadBalancerInit = MessageInitShape<typeof LoadBalancerSchema>;
export type OutlierDetectionInit = MessageInitShape<typeof OutlierDetectionSchema>;
export type ConnectionPoolInit = MessageInitShape<typeof ConnectionPoolSchema>;

export interface Subset {
  name: string;
  labels: Record<string, string>;
}

export interface DestinationRule {
  key: string;
  namespace: string;
  name: string;
  /** As written (short names are services of the rule's namespace). */
  host: string;
  subsets: Subset[];
  /** Creation time (ms): among rules for one host the oldest wins. */
  created: number;
  loadBalancer?: LoadBalancerInit;
  outlierDetection?: OutlierDetectionInit;
  connectionPool?: ConnectionPoolInit;
  ignored: string[];
}

const SIMPLE: Record<string, LoadBalancer_Simple> = {
  ROUND_ROBIN: LoadBalancer_Simple.ROUND_ROBIN,
  RANDOM: LoadBalancer_Simple.RANDOM,
  LEAST_REQUEST: LoadBalancer_Simple.LEAST_REQUEST,
  LEAST_CONN: LoadBalancer_Simple.LEAST_REQUEST,
  // PASSTHROUGH sends to the original address: a waypoint picks endpoints itself, so the default stands.
  UNSPECIFIED: LoadBalancer_Simple.UNSPECIFIED,
};

function readLoadBalancer(field: Field, ignored: string[]): LoadBalancerInit | undefined {
  if (!field.present) return undefined;
  const simple = field.child('simple');
  const hash = field.child('consistentHash');
  if (simple.present && hash.present) field.fail('expected simple or consistentHash, not both');
  if (simple.present) {
    const name = simple.string();
    if (name === 'PASSTHROUGH') {
      ignored.push(`${simple.path} PASSTHROUGH`);
      return undefined;
    }
    const value = SIMPLE[name];
    if (value === undefined) simple.fail(`expected one of ROUND_ROBIN, RANDOM, LEAST_REQUEST, LEAST_CONN, PASSTHROUGH, got "${name.slice(0, 40)}"`);
    return { simple: value };
  }
  if (hash.present) {
    const keys = ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'].filter((k) => hash.child(k).present);
    if (keys.length !== 1) hash.fail('expected exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName');
    if (hash.child('ringHash').present || hash.child('maglev').present || hash.child('minimumRingSize').present) ignored.push(`${hash.path} ring settings`);
    switch (keys[0]) {
      case 'httpHeaderName':
        return { hashHeader: hash.child('httpHeaderName').nonEmptyString().toLowerCase() };
      case 'httpCookie':
        if (hash.child('httpCookie').child('ttl').present) ignored.push(`${hash.path}.httpCookie.ttl (the cookie is read, never set)`);
        return { hashCookie: hash.child('httpCookie').child('name').nonEmptyString() };
      case 'useSourceIp':
        return { hashSourceIp: hash.child('useSourceIp').value === true };
      default:
        return { hashQueryParameter: hash.child('httpQueryParameterName').nonEmptyString() };
    }
  }
  return undefined;
}

function readOutlierDetection(field: Field, ignored: string[]): OutlierDetectionInit | undefined {
  if (!field.present) return undefined;
  for (const key of ['interval', 'minHealthPercent', 'splitExternalLocalOriginErrors', 'consecutiveLocalOriginFailures']) if (field.child(key).present) ignored.push(`${field.path}.${key}`);
  const count = (key: string) => (field.child(key).present ? (typeof field.child(key).value === 'object' ? field.child(key).child('value').integer(0, 1_000_000) : field.child(key).integer(0, 1_000_000)) : 0);
  // Istio's default: 5 consecutive 5xx (0 turns it off); consecutiveErrors is the old name of gateway errors.
  const consecutive5xxErrors = field.child('consecutive5xxErrors').present ? count('consecutive5xxErrors') : 5;
  const consecutiveGatewayErrors = count('consecutiveGatewayErrors') || count('consecutiveErrors');
  return {
    consecutive5xxErrors,
    consecutiveGatewayErrors,
    baseEjectionTimeMs: field.child('baseEjectionTime').present ? field.child('baseEjectionTime').durationMs(1) : 30_000,
    maxEjectionPercent: field.child('maxEjectionPercent').present ? field.child('maxEjectionPercent').integer(0, 100) : 10,
  };
}

const SUBSET_NAME = /^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$/;

function readConnectionPool(field: Field, ignored: string[]): ConnectionPoolInit | undefined {
  if (!field.present) return undefined;
  const tcp = field.child('tcp');
  const http = field.child('http');
  for (const key of ['connectTimeout', 'tcpKeepalive', 'maxConnectionDuration', 'idleTimeout']) if (tcp.child(key).present) ignored.push(`${tcp.path}.${key}`);
  for (const key of ['maxRequestsPerConnection', 'maxRetries', 'idleTimeout', 'h2UpgradePolicy', 'useClientProtocol', 'maxConcurrentStreams']) if (http.child(key).present) ignored.push(`${http.path}.${key}`);
  const limit = (f: Field) => (f.present ? f.integer(0, 2 ** 31 - 1) : 0);
  return { maxConnections: limit(tcp.child('maxConnections')), maxPendingRequests: limit(http.child('http1MaxPendingRequests')), maxRequests: limit(http.child('http2MaxRequests')) };
}

export function readDestinationRule(object: KubernetesObject): DestinationRule {
  const spec = specOf('DestinationRule', object);
  const namespace = object.metadata?.namespace ?? 'default';
  const host = spec.child('host').nonEmptyString().toLowerCase();
  const seen = new Set<string>();
  const ignored: string[] = [];
  const subsets = spec.child('subsets').items().map((subset): Subset => {
    const name = subset.child('name').nonEmptyString();
    if (!SUBSET_NAME.test(name)) subset.child('name').fail(`"${name.slice(0, 60)}" is not a valid subset name`);
    if (seen.has(name)) subset.child('name').fail(`duplicate subset "${name}"`);
    seen.add(name);
    if (subset.child('trafficPolicy').present) ignored.push(`${subset.path}.trafficPolicy`);
    return { name, labels: subset.child('labels').stringMap() };
  });
  const policy = spec.child('trafficPolicy');
  const loadBalancer = readLoadBalancer(policy.child('loadBalancer'), ignored);
  const outlierDetection = readOutlierDetection(policy.child('outlierDetection'), ignored);
  const connectionPool = readConnectionPool(policy.child('connectionPool'), ignored);
  for (const key of ['tls', 'portLevelSettings', 'tunnel', 'proxyProtocol']) if (policy.child(key).present) ignored.push(`${policy.path}.${key}`);
  const created = Date.parse(object.metadata?.creationTimestamp ? String(object.metadata.creationTimestamp) : '') || 0;
  return {
    key: objectKey('DestinationRule', object),
    namespace,
    name: object.metadata?.name ?? '',
    host,
    subsets,
    created,
    ...(loadBalancer ? { loadBalancer } : {}),
    ...(outlierDetection ? { outlierDetection } : {}),
    ...(connectionPool ? { connectionPool } : {}),
    ignored,
  };
}
