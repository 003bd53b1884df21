import { readFileSync } from 'node:fs';
import { create, fromBinary } from '@bufbuild/protobuf';
import { Metadata, credentials, makeGenericClientConstructor, type ClientDuplexStream } from '@grpc/grpc-js';
import { aggregatedDiscoveryService, AUTHORIZATION_HEADER, CLUSTER_ID_HEADER } from '../../api/grpc.js';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL } from '../../api/resources.js';
import {
  DeltaDiscoveryRequestSchema,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type Resource,
} from '../../gen/envoy/discovery/discovery_pb.js';
import { StatusSchema } from '../../gen/google/rpc/status_pb.js';
import { AuthorizationSchema, type Authorization } from '../../gen/istio/security/authorization_pb.js';
import { AddressSchema, type Service, type Workload } from '../../gen/istio/workload/workload_pb.js';
import { Backoff } from '../../util/backoff.js';
import type { Logger } from '../../util/log.js';
import type { StateUpdates } from '../state/types.js';
import { StateUpdateError } from '../state/validation.js';

export interface XdsClientOptions {
  /** `host:port` of the control plane. */
  address: string;
  /** Roots that sign the control plane's serving certificate (read on every connect). */
  rootsPem: () => string;
  /** Name to verify on the control plane's certificate when it differs from the dialled host. */
  serverName?: string;
  /** Service-account token file, read on every connect (it is rotated). */
  tokenPath: string;
  clusterId: string;
  nodeId: string;
  state: StateUpdates;
  log: Logger;
  backoff?: { initialMs: number; maxMs: number };
  /** Further resource types of this proxy's own (waypoint, ingress), on the same stream. */
  extraTypes?: ReadonlyArray<XdsExtraType<never>>;
}

/**
 * A resource type besides Address and Authorization: subscribed by name (or wildcard when `names`
 * is absent), decoded with `decode`, handed to `apply`. `apply` may throw StateUpdateError to
 * refuse some resources (NACKed, the previous ones stay).
 */
export interface XdsExtraType<T> {
  typeUrl: string;
  names?: readonly string[];
  decode(bytes: Uint8Array): T;
  apply(upserted: Array<{ name: string; resource: T }>, removed: string[]): void;
}

/** Declares an extra type with its resource type checked (stored type-erased in the options). */
export function xdsExtraType<T>(type: XdsExtraType<T>): XdsExtraType<never> {
  return type as unknown as XdsExtraType<never>;
}

export interface XdsStatus {
  connected: boolean;
  address: string;
  lastUpdate?: string;
  lastError?: string;
}

const BASE_TYPES = [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL] as const;
const INVALID_ARGUMENT = 3;

type Stream = ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;
const AdsClient = makeGenericClientConstructor(aggregatedDiscoveryService, 'AggregatedDiscoveryService');

/**
 * Delta ADS client: wildcard subscription to workloads and authorizations, ACK/NACK per
 * response, reconnect with backoff, resuming from the versions it already has.
 * The state it fed stays in place while disconnected, so the data path keeps working.
 */
export class XdsClient {
  private readonly types: readonly string[];
  private readonly extra: ReadonlyMap<string, XdsExtraType<unknown>>;
  private readonly known: Map<string, Map<string, string>>;
  private readonly syncedTypes = new Set<string>();
  private client?: InstanceType<typeof AdsClient>;
  private stream?: Stream;
  private stopped = false;
  private retryTimer?: NodeJS.Timeout;
  private readonly backoff: Backoff;
  private readonly current: XdsStatus;
  private resolveSynced!: () => void;
  /** Resolves once the first response for every type has been applied. */
  readonly synced = new Promise<void>((resolve) => (this.resolveSynced = resolve));

  constructor(private readonly options: XdsClientOptions) {
    this.backoff = new Backoff({ initialMs: options.backoff?.initialMs ?? 1000, maxMs: options.backoff?.maxMs ?? 30_000 });
    this.current = { connected: false, address: options.address };
    const extra = (options.extraTypes ?? []) as ReadonlyArray<XdsExtraType<unknown>>;
    this.extra = new Map(extra.map((type) => [type.typeUrl, type]));
    this.types = [...BASE_TYPES, ...this.extra.keys()];
    this.known = new Map(this.types.map((t) => [t, new Map()]));
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.stream?.cancel();
    this.client?.close();
  }

  status(): XdsStatus {
    return { ...this.current };
  }

  private connect(): void {
    const { log, address } = this.options;
    let token: string;
    let roots: string;
    try {
      token = readFileSync(this.options.tokenPath, 'utf8').trim();
      roots = this.options.rootsPem();
    } catch (err) {
      this.fail(`cannot read credentials: ${(err as Error).message}`);
      return;
    }
    this.client?.close();
    const channelOptions: Record<string, string | number> = {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    };
    if (this.options.serverName) channelOptions['grpc.ssl_target_name_override'] = this.options.serverName;
    this.client = new AdsClient(address, credentials.createSsl(Buffer.from(roots)), channelOptions);
    const metadata = new Metadata();
    metadata.set(AUTHORIZATION_HEADER, `Bearer ${token}`);
    metadata.set(CLUSTER_ID_HEADER, this.options.clusterId);
    const stream = (this.client as unknown as { deltaAggregatedResources: (m: Metadata) => Stream }).deltaAggregatedResources(metadata);
    this.stream = stream;
    let gotResponse = false;
    stream.on('data', (response: DeltaDiscoveryResponse) => {
      if (!gotResponse) {
        gotResponse = true;
        this.backoff.reset();
        this.current.connected = true;
        this.current.lastError = undefined;
        log.info({ address }, 'connected to control plane');
      }
      this.onResponse(stream, response);
    });
    stream.on('error', (err: Error & { details?: string }) => {
      if (stream !== this.stream) return;
      this.fail(err.details || err.message);
    });
    stream.on('end', () => {
      if (stream === this.stream) this.fail('stream closed by the control plane');
    });
    for (const typeUrl of this.types) {
      const names = this.extra.get(typeUrl)?.names;
      stream.write(
        create(DeltaDiscoveryRequestSchema, {
          typeUrl,
          node: { id: this.options.nodeId, cluster: this.options.clusterId },
          resourceNamesSubscribe: names ? [...names] : [],
          initialResourceVersions: Object.fromEntries(this.known.get(typeUrl)!),
        }),
      );
    }
  }

  private fail(reason: string): void {
    this.stream = undefined;
    this.current.connected = false;
    this.current.lastError = reason;
    if (this.stopped) return;
    const delay = this.backoff.next();
    this.options.log.warn({ address: this.options.address, reason, retryInMs: delay }, 'control plane unreachable; keeping last config');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private onResponse(stream: Stream, response: DeltaDiscoveryResponse): void {
    const { typeUrl } = response;
    const known = this.known.get(typeUrl);
    const errors: string[] = [];
    if (!known) {
      errors.push(`unsupported type_url ${JSON.stringify(typeUrl)}`);
    } else {
      try {
        this.apply(typeUrl, known, response, errors);
      } catch (err) {
        if (err instanceof StateUpdateError) {
          // Refused resources are not held: forget their versions so a resync sends them again.
          for (const rejected of err.rejected) {
            known.delete(rejected.resource);
            errors.push(rejected.message);
          }
        } else {
          errors.push(`applying the response failed: ${(err as Error).message}`);
        }
      }
    }
    if (errors.length) this.options.log.warn({ typeUrl, nonce: response.nonce, errors: errors.slice(0, 10) }, 'rejecting (NACK) part of an xds response');
    stream.write(
      create(DeltaDiscoveryRequestSchema, {
        typeUrl,
        responseNonce: response.nonce,
        errorDetail: errors.length ? create(StatusSchema, { code: INVALID_ARGUMENT, message: errors.join('; ') }) : undefined,
      }),
    );
    this.current.lastUpdate = new Date().toISOString();
    if (known && !this.syncedTypes.has(typeUrl)) {
      this.syncedTypes.add(typeUrl);
      if (this.syncedTypes.size === this.types.length) this.resolveSynced();
    }
  }

  private apply(typeUrl: string, known: Map<string, string>, response: DeltaDiscoveryResponse, errors: string[]): void {
    const { state } = this.options;
    const removed = response.removedResources;
    for (const name of removed) known.delete(name);
    if (typeUrl === ADDRESS_TYPE_URL) {
      const upserted: Array<{ name: string; workload?: Workload; service?: Service }> = [];
      for (const resource of response.resources) {
        const decoded = decode(resource, typeUrl, (bytes) => fromBinary(AddressSchema, bytes), errors);
        if (!decoded) continue;
        const { type } = decoded;
        if (type.case === 'workload') upserted.push({ name: resource.name, workload: type.value });
        else if (type.case === 'service') upserted.push({ name: resource.name, service: type.value });
        else {
          errors.push(`resource ${resource.name}: Address has neither workload nor service`);
          continue;
        }
        known.set(resource.name, resource.version);
      }
      state.applyAddresses(upserted, removed);
    } else if (typeUrl === AUTHORIZATION_TYPE_URL) {
      const upserted: Array<{ name: string; authorization: Authorization }> = [];
      for (const resource of response.resources) {
        const decoded = decode(resource, typeUrl, (bytes) => fromBinary(AuthorizationSchema, bytes), errors);
        if (!decoded) continue;
        upserted.push({ name: resource.name, authorization: decoded });
        known.set(resource.name, resource.version);
      }
      state.applyAuthorizations(upserted, removed);
    } else {
      const type = this.extra.get(typeUrl)!;
      const upserted: Array<{ name: string; resource: unknown }> = [];
      for (const resource of response.resources) {
        const decoded = decode(resource, typeUrl, (bytes) => type.decode(bytes), errors);
        if (decoded === undefined) continue;
        upserted.push({ name: resource.name, resource: decoded });
        known.set(resource.name, resource.version);
      }
      type.apply(upserted, removed);
    }
  }
}

function decode<T>(resource: Resource, typeUrl: string, parse: (bytes: Uint8Array) => T, errors: string[]): T | undefined {
  if (!resource.name) {
    errors.push('a resource has no name');
    return undefined;
  }
  if (!resource.resource) {
    errors.push(`resource ${resource.name}: no body`);
    return undefined;
  }
  if (resource.resource.typeUrl !== typeUrl) {
    errors.push(`resource ${resource.name}: type ${resource.resource.typeUrl} in a ${typeUrl} response`);
    return undefined;
  }
  try {
    return parse(resource.resource.value);
  } catch (err) {
    errors.push(`resource ${resource.name}: cannot decode: ${(err as Error).message}`);
    return undefined;
  }
}
