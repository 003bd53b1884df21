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
import type { ResourceCache, VersionedResource } from './resource-cache.js';
import type { XdsMetrics } from './metrics.js';

/** Who is on the other end of a stream, once authenticated. */
export interface XdsPeer {
  /** e.g. `istio-system/ztunnel-abcde` */
  name: string;
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

export interface DeltaXdsServerOptions {
  cache: ResourceCache;
  log: Logger;
  metrics: XdsMetrics;
  authenticate?: XdsAuthenticator;
}

type Call = ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

interface Subscription {
  wildcard: boolean;
  names: Set<string>;
  /** What the client has: resource name → version we sent (or it told us it had). */
  known: Map<string, string>;
}

let streamCounter = 0;

/**
 * envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources.
 * Each stream gets the full state of every type it subscribes to, then only what changed.
 */
export class DeltaXdsServer {
  constructor(private readonly options: DeltaXdsServerOptions) {}

  handlers(): { deltaAggregatedResources: (call: Call) => void } {
    return { deltaAggregatedResources: (call) => void this.accept(call) };
  }

  private async accept(call: Call): Promise<void> {
    const { log, authenticate, metrics } = this.options;
    let peer: XdsPeer = { name: call.getPeer() };
    if (authenticate) {
      try {
        peer = await authenticate(call.metadata);
      } catch (err) {
        const code = err instanceof XdsAuthError ? err.code : GrpcStatus.UNAUTHENTICATED;
        const message = err instanceof Error ? err.message : String(err);
        log.warn({ peer: call.getPeer(), reason: message }, 'xds stream refused');
        metrics.refused.inc({ reason: GrpcStatus[code] ?? String(code) });
        call.emit('error', { code, details: message });
        return;
      }
    }
    new XdsStream(call, peer, this.options).start();
  }
}

class XdsStream {
  private readonly id = ++streamCounter;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly inFlight = new Map<string, { typeUrl: string; names: string[] }>();
  private nonceCounter = 0;
  private unsubscribeCache?: () => void;
  private closed = false;
  private readonly log: Logger;

  constructor(
    private readonly call: Call,
    private readonly peer: XdsPeer,
    private readonly options: DeltaXdsServerOptions,
  ) {
    this.log = options.log.child({ stream: this.id, peer: peer.name });
  }

  start(): void {
    const { metrics } = this.options;
    metrics.connected.inc();
    this.log.info('xds stream opened');
    this.unsubscribeCache = this.options.cache.onChange((typeUrl, names) => this.pushChanges(typeUrl, names));
    this.call.on('data', (request: DeltaDiscoveryRequest) => {
      try {
        this.onRequest(request);
      } catch (err) {
        this.log.error({ err }, 'failed to handle xds request');
      }
    });
    this.call.on('error', (err) => {
      this.log.info({ reason: err.message }, 'xds stream error');
      this.close();
    });
    this.call.on('cancelled', () => this.close());
    this.call.on('end', () => {
      this.close();
      this.call.end();
    });
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribeCache?.();
    this.options.metrics.connected.dec();
    this.log.info('xds stream closed');
  }

  private onRequest(request: DeltaDiscoveryRequest): void {
    const { typeUrl } = request;
    if (!typeUrl) {
      this.log.warn('xds request without type_url ignored');
      return;
    }
    if (request.node?.id) this.log.debug({ node: request.node.id, typeUrl }, 'xds request');
    if (request.responseNonce) this.onAck(request);
    const existing = this.subscriptions.get(typeUrl);
    const subscription = existing ?? this.subscribe(typeUrl, request);
    const changedNames = new Set<string>();
    for (const name of request.resourceNamesSubscribe) {
      if (name === '*') subscription.wildcard = true;
      else if (!subscription.names.has(name)) {
        subscription.names.add(name);
        changedNames.add(name);
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

  private subscribe(typeUrl: string, request: DeltaDiscoveryRequest): Subscription {
    const explicit = request.resourceNamesSubscribe.filter((n) => n !== '*');
    const subscription: Subscription = {
      // Per the delta protocol, a first request that names nothing is a wildcard subscription.
      wildcard: explicit.length === 0 || request.resourceNamesSubscribe.includes('*'),
      names: new Set(explicit),
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
      { typeUrl: request.typeUrl, nonce: request.responseNonce, resources: sent?.names.slice(0, 20), error: request.errorDetail.message },
      'xds NACK from client',
    );
  }

  private sendFull(typeUrl: string, subscription: Subscription): void {
    const upserts: VersionedResource[] = [];
    const current = this.options.cache.all(typeUrl);
    for (const resource of current.values()) {
      if (!this.wants(subscription, resource.name)) continue;
      if (subscription.known.get(resource.name) === resource.version) continue;
      upserts.push(resource);
    }
    const removed = [...subscription.known.keys()].filter((name) => !current.has(name));
    // An initial response goes out even when empty, so the client knows it is in sync.
    this.send(typeUrl, subscription, upserts, removed, true);
  }

  private pushChanges(typeUrl: string, names: ReadonlySet<string>): void {
    const subscription = this.subscriptions.get(typeUrl);
    if (!subscription || this.closed) return;
    const upserts: VersionedResource[] = [];
    const removed: string[] = [];
    for (const name of names) {
      const resource = this.options.cache.get(typeUrl, name);
      if (resource && this.wants(subscription, name)) {
        if (subscription.known.get(name) !== resource.version) upserts.push(resource);
      } else if (subscription.known.has(name)) {
        removed.push(name);
      }
    }
    this.send(typeUrl, subscription, upserts, removed, false);
  }

  private wants(subscription: Subscription, name: string): boolean {
    return subscription.wildcard || subscription.names.has(name);
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
    this.call.write(response);
  }
}

function shortType(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('.') + 1) || 'unknown';
}
