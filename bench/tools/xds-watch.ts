/**
 * Subscribes to a control plane as a ztunnel does (delta ADS, wildcard subscription to workloads,
 * services and authorizations) and prints every resource it receives, with its arrival time, as
 * one JSON line (bench/scale/xds-events.ts). Runs until killed.
 *
 *   node --import tsx bench/tools/xds-watch.ts --address 198.19.128.10:15012 \
 *     --server-name ambit-controlplane.istio-system.svc --cluster-id cluster1 \
 *     --token-file token --roots-file root-cert.pem [--node-id ztunnel~…]
 *
 * Log lines (warnings of the xDS client) go to stderr.
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { WorkloadStatus, type Service, type Workload } from '../../src/gen/istio/workload/workload_pb.js';
import type { Authorization } from '../../src/gen/istio/security/authorization_pb.js';
import type { StateUpdates } from '../../src/ztunnel/state/types.js';
import { XdsClient } from '../../src/ztunnel/xds/client.js';
import { formatXdsEvent, type XdsEvent } from '../scale/xds-events.js';

export interface XdsWatchOptions {
  address: string;
  serverName: string;
  clusterId: string;
  tokenFile: string;
  rootsFile: string;
  nodeId: string;
}

/** Turns every applied update into events; keeps only the names (`<type>\n<name>`), to count the full state. */
export class EventEmittingState implements StateUpdates {
  private readonly names = new Set<string>();

  constructor(private readonly emit: (events: XdsEvent[]) => void) {}

  get size(): number {
    return this.names.size;
  }

  applyAddresses(upserted: Array<{ name: string; workload?: Workload; service?: Service }>, removed: string[]): void {
    const t = Date.now();
    const events: XdsEvent[] = [];
    for (const { name, workload } of upserted) {
      this.names.add(`address\n${name}`);
      events.push(
        workload
          ? { ev: 'upsert', t, type: 'address', name, kind: 'workload', status: workload.status === WorkloadStatus.HEALTHY ? 'HEALTHY' : 'UNHEALTHY', ...(workload.capacity !== undefined ? { capacity: workload.capacity } : {}) }
          : { ev: 'upsert', t, type: 'address', name, kind: 'service' },
      );
    }
    for (const name of removed) {
      this.names.delete(`address\n${name}`);
      events.push({ ev: 'remove', t, type: 'address', name });
    }
    this.emit(events);
  }

  applyAuthorizations(upserted: Array<{ name: string; authorization: Authorization }>, removed: string[]): void {
    const t = Date.now();
    const events: XdsEvent[] = [];
    for (const { name } of upserted) {
      this.names.add(`authorization\n${name}`);
      events.push({ ev: 'upsert', t, type: 'authorization', name });
    }
    for (const name of removed) {
      this.names.delete(`authorization\n${name}`);
      events.push({ ev: 'remove', t, type: 'authorization', name });
    }
    this.emit(events);
  }

  onChange(): void {}
}

/** Starts watching; events go to `emit` as they arrive. Returns the client, to stop it. */
export function watchControlPlane(options: XdsWatchOptions, emit: (events: XdsEvent[]) => void): XdsClient {
  const state = new EventEmittingState(emit);
  const client = new XdsClient({
    address: options.address,
    rootsPem: () => readFileSync(options.rootsFile, 'utf8'),
    serverName: options.serverName,
    tokenPath: options.tokenFile,
    clusterId: options.clusterId,
    nodeId: options.nodeId,
    state,
    log: pino({ level: 'warn', base: { component: 'xds-watch' } }, process.stderr),
    backoff: { initialMs: 200, maxMs: 2000 },
  });
  emit([{ ev: 'start', t: Date.now(), processStart: Math.round(performance.timeOrigin) }]);
  client.start();
  void client.synced.then(() => emit([{ ev: 'synced', t: Date.now(), resources: state.size }]));
  return client;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      address: { type: 'string' },
      'server-name': { type: 'string' },
      'cluster-id': { type: 'string' },
      'token-file': { type: 'string' },
      'roots-file': { type: 'string' },
      'node-id': { type: 'string', default: 'ztunnel~0.0.0.0~bench-xds-watch.istio-system~istio-system.svc.cluster.local' },
    },
    strict: true,
  });
  const required = ['address', 'server-name', 'cluster-id', 'token-file', 'roots-file'] as const;
  const missing = required.filter((k) => !values[k]);
  if (missing.length) throw new Error(`missing ${missing.map((m) => `--${m}`).join(', ')}`);
  const client = watchControlPlane(
    { address: values.address!, serverName: values['server-name']!, clusterId: values['cluster-id']!, tokenFile: values['token-file']!, rootsFile: values['roots-file']!, nodeId: values['node-id']! },
    (events) => {
      if (events.length) process.stdout.write(`${events.map(formatXdsEvent).join('\n')}\n`);
    },
  );
  const stop = () => {
    client.stop();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`xds-watch: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
}
