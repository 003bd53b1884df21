// The waypoint's own configuration from xDS (ambit.waypoint.Waypoint): the services and workloads it serves and their L7 policies, compiled.
import { fromBinary } from '@bufbuild/protobuf';

import { WAYPOINT_TYPE_URL } from '../api/resources.js';
import { WaypointSchema, type L7Authorization, type StringMatch, type Waypoint } from '../gen/ambit/waypoint/waypoint_pb.js';
import type { Logger } from '../util/log.js';
import { compileL7Policy, type CompiledL7Policy } from '../l7/authorization.js';
import { routeProblems } from '../l7/route-match.js';
import type { HttpRoute } from '../gen/ambit/route/route_pb.js';
import type { DestinationPolicy } from '../gen/ambit/waypoint/waypoint_pb.js';
import { InvalidResourceError, StateUpdateError } from '../ztunnel/state/validation.js';
import { xdsExtraType, type XdsExtraType } from '../ztunnel/xds/client.js';

/** What the waypoint serves, derived from its one Waypoint resource. */
export interface ServedTraffic {
  readonly services: ReadonlySet<string>;
  readonly workloads: ReadonlySet<string>;
  readonly policies: readonly CompiledL7Policy[];
  /** Mesh routes by service (`<ns>/<hostname>`); a service without an entry goes where it was addressed. */
  readonly routes: ReadonlyMap<string, readonly HttpRoute[]>;
  /** DestinationRule traffic policies by destination hostname. */
  readonly destinationPolicies: ReadonlyMap<string, DestinationPolicy>;
}

const NOTHING: ServedTraffic = { services: new Set(), workloads: new Set(), policies: [], routes: new Map(), destinationPolicies: new Map() };

function stringMatchProblems(field: string, matches: readonly StringMatch[]): string[] {
  return matches.flatMap((m, i) => (m.match.case === undefined ? [`${field}[${i}] has no match`] : []));
}

/** Problems that make a policy unsafe to enforce (the control plane validates; this guards the wire). */
export function l7AuthorizationProblems(policy: L7Authorization): string[] {
  const where = `policy ${policy.namespace}/${policy.name}`;
  const problems: string[] = [];
  if (!policy.name || !policy.namespace) problems.push('a policy without name or namespace');
  policy.rules.forEach((rule, r) => {
    rule.from.forEach((source, i) => {
      for (const [field, list] of Object.entries({ principals: source.principals, notPrincipals: source.notPrincipals, namespaces: source.namespaces, notNamespaces: source.notNamespaces, requestPrincipals: source.requestPrincipals, notRequestPrincipals: source.notRequestPrincipals })) {
        problems.push(...stringMatchProblems(`rules[${r}].from[${i}].${field}`, list));
      }
      for (const cidr of [...source.ipBlocks, ...source.notIpBlocks, ...source.remoteIpBlocks, ...source.notRemoteIpBlocks]) {
        const bits = cidr.address.length * 8;
        if (bits !== 32 && bits !== 128) problems.push(`rules[${r}].from[${i}]: an address of ${cidr.address.length} bytes`);
        else if (cidr.length > bits) problems.push(`rules[${r}].from[${i}]: prefix length ${cidr.length} over ${bits}`);
      }
    });
    rule.to.forEach((operation, i) => {
      for (const [field, list] of Object.entries({ hosts: operation.hosts, notHosts: operation.notHosts, methods: operation.methods, notMethods: operation.notMethods, paths: operation.paths, notPaths: operation.notPaths })) {
        problems.push(...stringMatchProblems(`rules[${r}].to[${i}].${field}`, list));
      }
      for (const port of [...operation.ports, ...operation.notPorts]) if (port < 1 || port > 65535) problems.push(`rules[${r}].to[${i}]: port ${port}`);
    });
    rule.when.forEach((condition, i) => {
      if (!condition.key) problems.push(`rules[${r}].when[${i}] has no key`);
      problems.push(...stringMatchProblems(`rules[${r}].when[${i}].values`, condition.values), ...stringMatchProblems(`rules[${r}].when[${i}].notValues`, condition.notValues));
    });
  });
  return problems.map((problem) => `${where}: ${problem}`);
}

/**
 * Holds the waypoint's configuration. A resource with a bad policy is refused (NACK) and the
 * previous configuration stays in force, so a bad push never opens what was closed.
 */
export class WaypointConfig {
  private current: ServedTraffic = NOTHING;
  private received = false;
  private readonly listeners: Array<() => void> = [];

  constructor(
    private readonly name: string,
    private readonly log: Logger,
  ) {}

  get served(): ServedTraffic {
    return this.current;
  }

  /** Whether the control plane has sent this waypoint's resource (or said it has none). */
  get synced(): boolean {
    return this.received;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** The raw resource, for the config dump. */
  resource?: Waypoint;

  apply(upserted: Array<{ name: string; resource: Waypoint }>, removed: string[]): void {
    this.received = true;
    const mine = upserted.filter((u) => u.name === this.name);
    if (removed.includes(this.name) && mine.length === 0) {
      this.current = NOTHING;
      this.resource = undefined;
      this.log.warn({ waypoint: this.name }, 'the control plane removed this waypoint\'s configuration; serving nothing');
      this.changed();
      return;
    }
    const latest = mine.at(-1);
    if (!latest) return;
    const problems = [
      ...latest.resource.authorizations.flatMap(l7AuthorizationProblems),
      ...latest.resource.routes.flatMap((entry) => (entry.service ? entry.routes.flatMap((route, i) => routeProblems(route, `routes of ${entry.service}[${i}]`)) : ['routes without a service'])),
      ...latest.resource.destinationPolicies.flatMap((policy) => (!policy.hostname ? ['a destination policy without a hostname'] : (policy.outlierDetection?.maxEjectionPercent ?? 0) > 100 ? [`destination policy of ${policy.hostname}: maxEjectionPercent over 100`] : [])),
    ];
    if (problems.length) {
      this.log.error({ waypoint: this.name, problems: problems.slice(0, 10) }, 'refusing a waypoint configuration with invalid policies or routes; the previous one stays in force');
      throw new StateUpdateError([new InvalidResourceError('waypoint', latest.name, problems)]);
    }
    this.resource = latest.resource;
    this.current = {
      services: new Set(latest.resource.services),
      workloads: new Set(latest.resource.workloads),
      policies: latest.resource.authorizations.map(compileL7Policy),
      routes: new Map(latest.resource.routes.map((entry) => [entry.service, entry.routes])),
      destinationPolicies: new Map(latest.resource.destinationPolicies.map((policy) => [policy.hostname, policy])),
    };
    this.log.info({ waypoint: this.name, services: latest.resource.services.length, workloads: latest.resource.workloads.length, policies: latest.resource.authorizations.length, routedServices: latest.resource.routes.length }, 'waypoint configuration applied');
    this.changed();
  }

  /** The xDS subscription that feeds this store: the waypoint's own resource by name. */
  subscription(): XdsExtraType<never> {
    return xdsExtraType<Waypoint>({
      typeUrl: WAYPOINT_TYPE_URL,
      names: [this.name],
      decode: (bytes) => fromBinary(WaypointSchema, bytes),
      apply: (upserted, removed) => this.apply(upserted, removed),
    });
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}
