// The waypoint's pick among a destination's endpoints under its DestinationRule policy: round robin, random, least request or consistent hash, skipping endpoints that outlier detection ejected.
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

import { LoadBalancer_Simple, type DestinationPolicy, type OutlierDetection } from '../gen/ambit/waypoint/waypoint_pb.js';

/** What the pick reads of an endpoint: its workload uid and weight. */
export interface Candidate {
  uid: string;
  capacity: number;
}

/** What consistent hashing reads of a request. */
export interface HashFacts {
  headers: IncomingHttpHeaders;
  /** Path and query. */
  target: string;
  sourceIp: string;
}

interface OutlierState {
  consecutive5xx: number;
  consecutiveGateway: number;
  ejections: number;
  ejectedUntil: number;
}

export interface Ejection {
  hostname: string;
  uid: string;
  /** How long it is out, in ms. */
  forMs: number;
}

/** Outlier entries kept at most (one per endpoint seen); beyond, the healthiest go first. */
const MAX_TRACKED = 10_000;

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function cookieValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  for (const part of (headerValue(headers, 'cookie') ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The value a consistent-hash policy hashes for a request; undefined (no value) means an ordinary pick. */
export function hashKey(policy: DestinationPolicy['loadBalancer'], request: HashFacts): string | undefined {
  if (!policy) return undefined;
  if (policy.hashHeader) return headerValue(request.headers, policy.hashHeader);
  if (policy.hashCookie) return cookieValue(request.headers, policy.hashCookie);
  if (policy.hashSourceIp) return request.sourceIp || undefined;
  if (policy.hashQueryParameter) {
    const q = request.target.indexOf('?');
    return q < 0 ? undefined : (new URLSearchParams(request.target.slice(q + 1)).get(policy.hashQueryParameter) ?? undefined);
  }
  return undefined;
}

/** Rendezvous hashing: the candidate with the highest hash of (key, uid), weighted by capacity; stable while the candidates stay. */
function rendezvous<T extends Candidate>(key: string, candidates: readonly T[]): T {
  let best: T | undefined;
  let bestScore = -Infinity;
  for (const candidate of candidates) {
    const digest = createHash('sha1').update(key).update('\0').update(candidate.uid).digest();
    // A uniform (0, 1) from 48 bits, turned into a weighted score (-w / ln u is larger for heavier candidates).
    const u = (digest.readUIntBE(0, 6) + 1) / 2 ** 48;
    const score = -Math.max(candidate.capacity, 1e-9) / Math.log(u);
    if (score > bestScore) {
      bestScore = score;
      best = candidate;
    }
  }
  return best!;
}

function weightedRandom<T extends Candidate>(candidates: readonly T[], random: () => number): T {
  const total = candidates.reduce((sum, c) => sum + c.capacity, 0);
  let point = random() * total;
  for (const candidate of candidates) {
    point -= candidate.capacity;
    if (point < 0) return candidate;
  }
  return candidates[candidates.length - 1]!;
}

/**
 * Keeps what the policies need across requests: round-robin positions per destination, requests in
 * flight per endpoint, and outlier detection's counts and ejections per endpoint.
 */
export class EndpointPicker {
  private readonly cursors = new Map<string, number>();
  private readonly inFlight = new Map<string, number>();
  private readonly outliers = new Map<string, OutlierState>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {}

  /** Whether an endpoint is ejected now. */
  isEjected(uid: string): boolean {
    const state = this.outliers.get(uid);
    return state !== undefined && state.ejectedUntil > this.now();
  }

  /**
   * One endpoint among `candidates` (all usable: healthy, reachable, best rank) for a request to
   * `destination`. Ejected endpoints are skipped unless every one is ejected (then the pick ignores
   * ejection, as Envoy's panic threshold does, rather than fail every request).
   */
  pick<T extends Candidate>(destination: string, candidates: readonly T[], policy: DestinationPolicy | undefined, request: HashFacts): T | undefined {
    const weighted = candidates.filter((c) => c.capacity > 0);
    if (weighted.length === 0) return undefined;
    const notEjected = policy?.outlierDetection ? weighted.filter((c) => !this.isEjected(c.uid)) : weighted;
    const pool = notEjected.length > 0 ? notEjected : weighted;
    const lb = policy?.loadBalancer;
    const key = hashKey(lb, request);
    if (key !== undefined) return rendezvous(key, pool);
    switch (lb?.simple) {
      case LoadBalancer_Simple.ROUND_ROBIN: {
        const position = this.cursors.get(destination) ?? 0;
        this.cursors.set(destination, position + 1);
        return pool[position % pool.length];
      }
      case LoadBalancer_Simple.LEAST_REQUEST: {
        // Two random choices, the one with fewer requests in flight (Envoy's default for least request).
        const a = weightedRandom(pool, this.random);
        const b = weightedRandom(pool, this.random);
        return (this.inFlight.get(b.uid) ?? 0) < (this.inFlight.get(a.uid) ?? 0) ? b : a;
      }
      default:
        return weightedRandom(pool, this.random);
    }
  }

  /** A request to `uid` starts; the returned function ends it (least request counts requests in flight). */
  begin(uid: string): () => void {
    this.inFlight.set(uid, (this.inFlight.get(uid) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const left = (this.inFlight.get(uid) ?? 1) - 1;
      if (left > 0) this.inFlight.set(uid, left);
      else this.inFlight.delete(uid);
    };
  }

  /**
   * How a request to `uid` of `hostname` ended (an HTTP status, or 0 for no response: a connection
   * failure or reset). Returns the ejection it caused, if any. `endpointCount` is how many endpoints
   * the destination has (max_ejection_percent of them may be out at once, at least one).
   */
  report(hostname: string, uid: string, status: number, detection: OutlierDetection | undefined, endpointCount: number, endpointUids: readonly string[]): Ejection | undefined {
    if (!detection) return undefined;
    const state = this.outliers.get(uid) ?? { consecutive5xx: 0, consecutiveGateway: 0, ejections: 0, ejectedUntil: 0 };
    const is5xx = status === 0 || status >= 500;
    const isGateway = status === 0 || status === 502 || status === 503 || status === 504;
    state.consecutive5xx = is5xx ? state.consecutive5xx + 1 : 0;
    state.consecutiveGateway = isGateway ? state.consecutiveGateway + 1 : 0;
    if (!this.outliers.has(uid)) {
      if (this.outliers.size >= MAX_TRACKED) this.forgetHealthy();
      this.outliers.set(uid, state);
    }
    if (state.ejectedUntil > this.now()) return undefined;
    const tripped = (detection.consecutive5xxErrors > 0 && state.consecutive5xx >= detection.consecutive5xxErrors) || (detection.consecutiveGatewayErrors > 0 && state.consecutiveGateway >= detection.consecutiveGatewayErrors);
    if (!tripped) return undefined;
    const ejectedNow = endpointUids.filter((other) => other !== uid && this.isEjected(other)).length;
    const allowed = Math.max(1, Math.floor((endpointCount * detection.maxEjectionPercent) / 100));
    if (detection.maxEjectionPercent === 0 || ejectedNow >= allowed) return undefined;
    state.ejections++;
    const forMs = detection.baseEjectionTimeMs * state.ejections;
    state.ejectedUntil = this.now() + forMs;
    state.consecutive5xx = 0;
    state.consecutiveGateway = 0;
    return { hostname, uid, forMs };
  }

  private forgetHealthy(): void {
    const now = this.now();
    for (const [uid, state] of this.outliers) if (state.ejectedUntil <= now && state.consecutive5xx === 0 && state.consecutiveGateway === 0) this.outliers.delete(uid);
    if (this.outliers.size >= MAX_TRACKED) this.outliers.clear();
  }
}
