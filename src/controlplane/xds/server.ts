import { create } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { status as GrpcStatus, type Metadata, type ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from '../../util/log.js';
import {
  DeltaDiscoveryResponseSchema,
  ResourceSchema,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
} from '../../gen/envoy/discovery/discovery_pb.js';
import { KNOWN_XDS_TYPES } from './access.js';
import type { ResourceCache, VersionedResource } from './resource-cache.js';
import type { XdsMetrics } from './metrics.js';

/** Who is on the other end of a stream, once authenticated. */
export interface XdsPeer {
  /** e.g. `istio-system/ztunnel-abcde`; streams are limited per name. */
  name: string;
  /** Type URLs this peer may subscribe to; default every type the server serves. */
  types?: ReadonlySet<string>;
  /** Which names it may read of the types read by name; without it, every name. */
  scope?: XdsNameScope;
}

/** The names a peer may read, re-evaluated while its streams are open. */
export interface XdsNameScope {
  /** The authenticated identity (SPIFFE URI), for logs. */
  identity: string;
  /** The names of `typeUrl` the peer may read now; undefined when it may read every name. */
  readable(typeUrl: string): ReadonlySet<string> | undefined;
  /** Calls `listener` when readable() may answer differently; returns what stops it. */
  onChange(listener: () => void): () => void;
}

/** Rejects a caller by throwing an error with a gRPC `code`. */
export type XdsAuthenticator = (metadata: Metadata) => Promise<XdsPeer>;

export class XdsAuthError extends Error {
  constructor(
    readonly code: GrpcStatus,
    message: string,
  ) {
    super(message);
  }
}

export interface XdsLimits {
  /** Names one subscription may list (explicit names and initial_resource_versions each). */
  maxNamesPerSubscription: number;
  /** Open streams per peer name. */
  maxStreamsPerPeer: number;
  /** Bytes written to a stream but not yet taken by the transport; above it, changes wait and coalesce. */
  maxQueuedBytes: number;
}

export const DEFAULT_XDS_LIMITS: XdsLimits = { maxNamesPerSubscription: 10_000, maxStreamsPerPeer: 8, maxQueuedBytes: 8 * 1024 * 1024 };

export interface DeltaXdsServerOptions {
  cache: ResourceCache;
  log: Logger;
  metrics: XdsMetrics;
  authenticate?: XdsAuthenticator;
  /** Type URLs served; requests for others are ignored (no state, no metric series). Default: the known mesh types. */
  types?: ReadonlySet<string>;
  limits?: Partial<XdsLimits>;
  /** Resolves once the cache holds the first full state; streams wait for it before anything is sent. */
  ready?: Promise<void>;
}

type Call = ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

interface Subscription {
  wildcard: boolean;
  names: Set<string>;
  /** What the client has: resource name → version we sent (or it told us it had). */
  known: Map<string, string>;
}

let streamCounter = 0;

/** At most one log line per key and interval; the lines in between are counted. */
class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  constructor(private readonly intervalMs = 10_000) {}
  warn(log: Logger, key: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    log.warn({ ...fields, ...(entry?.suppressed ? { suppressed: entry.suppressed } : {}) }, message);
    if (this.last.size > 100) this.last.clear();
    this.last.set(key, { at: now, suppressed: 0 });
  }
}

/**
 * envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources.
 * Each stream gets the full state of every type it subscribes to, then only what changed. A stream
 * whose transport is full gets nothing more until it drains; what changed meanwhile is sent then, at
 * its latest version (the state is derived, so nothing needs to be queued but names).
 */
export class DeltaXdsServer {
  private readonly streamsByPeer = new Map<string, number>();
  private readonly limits: XdsLimits;
  private readonly types: ReadonlySet<string>;
  private readonly rateLimited = new RateLimitedLog();

  constructor(private readonly options: DeltaXdsServerOptions) {
    this.limits = { ...DEFAULT_XDS_LIMITS, ...options.limits };
    this.types = options.types ?? KNOWN_XDS_TYPES;
  }

  handlers(): { deltaAggregatedResources: (call: Call) => void } {
    return { deltaAggregatedResources: (call) => void this.accept(call) };
  }

  /** Open streams per peer name (tests, debugging). */
  openStreams(): ReadonlyMap<string, number> {
    return this.streamsByPeer;
  }

  private async accept(call: Call): Promise<void> {
    const { log, authenticate, metrics } = this.options;
    // A call cancelled while we authenticate or wait for the first sync must leave nothing behind.
    let gone = false;
    const onGone = () => (gone = true);
    call.once('cancelled', onGone);
    call.once('close', onGone);
    let peer: XdsPeer = { name: call.getPeer() };
    try {
      if (authenticate) peer = await authenticate(call.metadata);
      await this.options.ready;
    } catch (err) {
      call.off('cancelled', onGone);
      call.off('close', onGone);
      const code = err instanceof XdsAuthError ? err.code : GrpcStatus.UNAUTHENTICATED;
      const message = err instanceof Error ? err.message : String(err);
      this.rateLimited.warn(log, `refused:${code}`, { peer: call.getPeer(), reason: message }, 'xds stream refused');
      metrics.refused.inc({ reason: GrpcStatus[code] ?? 'UNKNOWN' });
      if (!gone && !call.cancelled) call.emit('error', { code, details: message });
      return;
    }
    call.off('cancelled', onGone);
    call.off('close', onGone);
    if (gone || call.cancelled) return;
    const open = this.streamsByPeer.get(peer.name) ?? 0;
    if (open >= this.limits.maxStreamsPerPeer) {
      const message = `${peer.name} already has ${open} open xDS streams (at most ${this.limits.maxStreamsPerPeer})`;
      this.rateLimited.warn(log, 'refused:streams', { peer: peer.name }, message);
      metrics.refused.inc({ reason: GrpcStatus[GrpcStatus.RESOURCE_EXHAUSTED] });
      call.emit('error', { code: GrpcStatus.RESOURCE_EXHAUSTED, details: message });
      return;
    }
    this.streamsByPeer.set(peer.name, open + 1);
    const onClosed = () => {
      const left = (this.streamsByPeer.get(peer.name) ?? 1) - 1;
      if (left > 0) this.streamsByPeer.set(peer.name, left);
      else this.streamsByPeer.delete(peer.name);
    };
    new XdsStream(call, peer, this.options, { limits: this.limits, types: this.types, rateLimited: this.rateLimited, onClosed }).start();
  }
}

interface StreamContext {
  limits: XdsLimits;
  types: ReadonlySet<string>;
  rateLimited: RateLimitedLog;
  onClosed: () => void;
}

class XdsStream {
  private readonly id = ++streamCounter;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly inFlight = new Map<string, { typeUrl: string; names: string[] }>();
  private nonceCounter = 0;
  private unsubscribeCache?: () => void;
  private unsubscribeScope?: () => void;
  private closed = false;
  private readonly log: Logger;
  /** Bytes handed to the transport and not yet written out. */
  private queuedBytes = 0;
  private needsDrain = false;
  /** Changes held while the transport is full: per type, the changed names, or 'full' for an initial response. */
  private readonly held = new Map<string, Set<string> | 'full'>();

  constructor(
    private readonly call: Call,
    private readonly peer: XdsPeer,
    private readonly options: DeltaXdsServerOptions,
    private readonly context: StreamContext,
  ) {
    this.log = options.log.child({ stream: this.id, peer: peer.name });
  }

  start(): void {
    const { metrics } = this.options;
    metrics.connected.inc();
    this.log.info('xds stream opened');
    this.unsubscribeCache = this.options.cache.onChange((typeUrl, names) => this.pushChanges(typeUrl, names));
    this.unsubscribeScope = this.peer.scope?.onChange(() => this.accessChanged());
    this.call.on('data', (request: DeltaDiscoveryRequest) => {
      try {
        this.onRequest(request);
      } catch (err) {
        this.log.error({ err }, 'failed to handle xds request');
      }
    });
    this.call.on('drain', () => {
      this.needsDrain = false;
      this.resume();
    });
    this.call.on('error', (err) => {
      this.log.info({ reason: err.message }, 'xds stream error');
      this.close();
    });
    this.call.on('cancelled', () => this.close());
    this.call.on('close', () => this.close());
    this.call.on('end', () => {
      this.close();
      this.call.end();
    });
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribeCache?.();
    this.unsubscribeScope?.();
    this.held.clear();
    this.options.metrics.connected.dec();
    this.context.onClosed();
    this.log.info('xds stream closed');
  }

  /** Ends the stream with a status, for a client breaking a limit. */
  private abort(code: GrpcStatus, message: string): void {
    if (this.closed) return;
    this.context.rateLimited.warn(this.log, `abort:${code}`, { reason: message }, 'xds stream ended');
    this.close();
    this.call.emit('error', { code, details: message });
  }

  private onRequest(request: DeltaDiscoveryRequest): void {
    if (this.closed) return;
    const { typeUrl } = request;
    if (!this.context.types.has(typeUrl)) {
      // As istiod does for a type it has no generator for: nothing is sent and nothing is kept.
      this.options.metrics.ignored.inc({ reason: 'unknown_type' });
      this.context.rateLimited.warn(this.log, 'unknown-type', { typeUrl: typeUrl.slice(0, 200) }, 'xds request for an unknown type ignored');
      return;
    }
    if (this.peer.types && !this.peer.types.has(typeUrl)) {
      this.abort(GrpcStatus.PERMISSION_DENIED, `${this.peer.name} may not subscribe to ${typeUrl}`);
      return;
    }
    if (request.node?.id) this.log.debug({ node: request.node.id, typeUrl }, 'xds request');
    if (request.responseNonce) this.onAck(request);
    const existing = this.subscriptions.get(typeUrl);
    const limit = this.context.limits.maxNamesPerSubscription;
    if (!existing && Object.keys(request.initialResourceVersions).length > limit) {
      this.abort(GrpcStatus.RESOURCE_EXHAUSTED, `initial_resource_versions of ${typeUrl} lists more than ${limit} resources`);
      return;
    }
    const subscription = existing ?? this.subscribe(typeUrl, request);
    const changedNames = new Set<string>();
    const readable = this.readable(typeUrl);
    for (const name of request.resourceNamesSubscribe) {
      if (name === '*') subscription.wildcard = true;
      else if (!subscription.names.has(name)) {
        if (subscription.names.size >= limit) {
          this.abort(GrpcStatus.RESOURCE_EXHAUSTED, `subscription to ${typeUrl} names more than ${limit} resources`);
          return;
        }
        // Kept: access granted later (a Gateway created after the proxy connected) delivers it then.
        subscription.names.add(name);
        changedNames.add(name);
        if (readable && !readable.has(name)) this.refuseName(typeUrl, name, 'not_permitted');
      }
    }
    for (const name of request.resourceNamesUnsubscribe) {
      if (name === '*') subscription.wildcard = false;
      else subscription.names.delete(name);
      subscription.known.delete(name);
    }
    if (!existing) this.sendFull(typeUrl, subscription);
    else if (changedNames.size) this.pushChanges(typeUrl, changedNames);
  }

  private readable(typeUrl: string): ReadonlySet<string> | undefined {
    return this.peer.scope?.readable(typeUrl);
  }

  private refuseName(typeUrl: string, name: string, reason: 'not_permitted' | 'revoked'): void {
    this.options.metrics.refusedNames.inc({ type: shortType(typeUrl), reason });
    this.context.rateLimited.warn(
      this.log,
      `name-${reason}:${this.peer.name}`,
      { identity: this.peer.scope?.identity, typeUrl, name: name.slice(0, 200), reason },
      reason === 'revoked' ? 'xds resource no longer readable by the caller: removed' : 'xds subscription to a resource the caller may not read: not sent',
    );
  }

  /** What the peer may read changed: send what became readable, remove what no longer is. */
  private accessChanged(): void {
    if (this.closed) return;
    for (const [typeUrl, subscription] of this.subscriptions) {
      const readable = this.readable(typeUrl);
      if (!readable) continue;
      const names = new Set(readable);
      for (const name of subscription.known.keys()) {
        names.add(name);
        if (!readable.has(name) && this.options.cache.get(typeUrl, name)) this.refuseName(typeUrl, name, 'revoked');
      }
      this.pushChanges(typeUrl, names);
    }
  }

  private subscribe(typeUrl: string, request: DeltaDiscoveryRequest): Subscription {
    const explicit = request.resourceNamesSubscribe.filter((n) => n !== '*');
    const subscription: Subscription = {
      // Per the delta protocol, a first request that names nothing is a wildcard subscription.
      wildcard: explicit.length === 0 || request.resourceNamesSubscribe.includes('*'),
      names: new Set(),
      known: new Map(Object.entries(request.initialResourceVersions)),
    };
    this.subscriptions.set(typeUrl, subscription);
    return subscription;
  }

  private onAck(request: DeltaDiscoveryRequest): void {
    const sent = this.inFlight.get(request.responseNonce);
    this.inFlight.delete(request.responseNonce);
    if (!request.errorDetail) {
      this.options.metrics.acks.inc({ type: shortType(request.typeUrl) });
      return;
    }
    this.options.metrics.nacks.inc({ type: shortType(request.typeUrl) });
    this.log.warn(
      { typeUrl: request.typeUrl, nonce: request.responseNonce.slice(0, 64), resources: sent?.names.slice(0, 20), error: request.errorDetail.message.slice(0, 1000) },
      'xds NACK from client',
    );
  }

  private get blocked(): boolean {
    return this.needsDrain || this.queuedBytes > this.context.limits.maxQueuedBytes;
  }

  /** Sends what was held back while the transport was full, at the resources' current versions. */
  private resume(): void {
    while (!this.closed && !this.blocked && this.held.size > 0) {
      const [typeUrl, names] = this.held.entries().next().value!;
      this.held.delete(typeUrl);
      const subscription = this.subscriptions.get(typeUrl);
      if (!subscription) continue;
      if (names === 'full') this.sendFull(typeUrl, subscription);
      else this.pushChanges(typeUrl, names);
    }
  }

  private hold(typeUrl: string, names: ReadonlySet<string> | 'full'): void {
    const current = this.held.get(typeUrl);
    if (current === 'full') return;
    if (names === 'full') {
      this.held.set(typeUrl, 'full');
      return;
    }
    const merged = current ?? new Set<string>();
    for (const name of names) merged.add(name);
    this.held.set(typeUrl, merged);
  }

  private sendFull(typeUrl: string, subscription: Subscription): void {
    if (this.blocked) return this.hold(typeUrl, 'full');
    const upserts: VersionedResource[] = [];
    const current = this.options.cache.all(typeUrl);
    const readable = this.readable(typeUrl);
    for (const resource of current.values()) {
      if (!this.wants(subscription, resource.name, readable)) continue;
      if (subscription.known.get(resource.name) === resource.version) continue;
      upserts.push(resource);
    }
    // initial_resource_versions may claim names the peer may not read: it is told they are gone.
    const removed = [...subscription.known.keys()].filter((name) => !current.has(name) || (readable !== undefined && !readable.has(name)));
    // An initial response goes out even when empty, so the client knows it is in sync.
    this.send(typeUrl, subscription, upserts, removed, true);
  }

  private pushChanges(typeUrl: string, names: ReadonlySet<string>): void {
    const subscription = this.subscriptions.get(typeUrl);
    if (!subscription || this.closed) return;
    if (this.blocked) return this.hold(typeUrl, names);
    const upserts: VersionedResource[] = [];
    const removed: string[] = [];
    const readable = this.readable(typeUrl);
    for (const name of names) {
      const resource = this.options.cache.get(typeUrl, name);
      if (resource && this.wants(subscription, name, readable)) {
        if (subscription.known.get(name) !== resource.version) upserts.push(resource);
      } else if (subscription.known.has(name)) {
        removed.push(name);
      }
    }
    this.send(typeUrl, subscription, upserts, removed, false);
  }

  /** Subscribed (by name or wildcard) and readable by the peer. */
  private wants(subscription: Subscription, name: string, readable: ReadonlySet<string> | undefined): boolean {
    return (subscription.wildcard || subscription.names.has(name)) && (readable === undefined || readable.has(name));
  }

  private send(typeUrl: string, subscription: Subscription, upserts: VersionedResource[], removed: string[], evenIfEmpty: boolean): void {
    if (!upserts.length && !removed.length && !evenIfEmpty) return;
    const nonce = `${this.id}-${++this.nonceCounter}`;
    const response: DeltaDiscoveryResponse = create(DeltaDiscoveryResponseSchema, {
      typeUrl,
      nonce,
      systemVersionInfo: String(this.nonceCounter),
      resources: upserts.map((r) =>
        create(ResourceSchema, { name: r.name, version: r.version, resource: create(AnySchema, { typeUrl: r.typeUrl, value: r.value }) }),
      ),
      removedResources: removed,
    });
    for (const r of upserts) subscription.known.set(r.name, r.version);
    for (const name of removed) subscription.known.delete(name);
    this.inFlight.set(nonce, { typeUrl, names: [...upserts.map((r) => r.name), ...removed] });
    if (this.inFlight.size > 1000) this.inFlight.delete(this.inFlight.keys().next().value!);
    this.options.metrics.pushes.inc({ type: shortType(typeUrl) });
    this.options.metrics.pushedResources.inc({ type: shortType(typeUrl) }, upserts.length + removed.length);
    const bytes = estimatedSize(upserts, removed);
    this.queuedBytes += bytes;
    const accepted = this.call.write(response, () => {
      this.queuedBytes -= bytes;
      this.resume();
    });
    if (!accepted) this.needsDrain = true;
  }
}

function estimatedSize(upserts: VersionedResource[], removed: string[]): number {
  let bytes = 64;
  for (const r of upserts) bytes += r.value.length + r.name.length + r.version.length + r.typeUrl.length + 16;
  for (const name of removed) bytes += name.length + 4;
  return bytes;
}

/** The metric label of a type URL; only called for types the server serves. */
function shortType(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('.') + 1) || 'unknown';
}
