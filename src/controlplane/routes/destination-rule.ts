/**
 * Istio `DestinationRule` (networking.istio.io v1/v1beta1/v1alpha3) read into what the waypoint
 * applies: the host's subsets (name → labels). Invalid fields throw InvalidObjectError naming them;
 * fields accepted but not applied are listed for a log line.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { objectKey, specOf } from './fields.js';

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
  ignored: string[];
}

const SUBSET_NAME = /^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$/;

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
  if (spec.child('trafficPolicy').present) ignored.push('spec.trafficPolicy');
  const created = Date.parse(object.metadata?.creationTimestamp ? String(object.metadata.creationTimestamp) : '') || 0;
  return { key: objectKey('DestinationRule', object), namespace, name: object.metadata?.name ?? '', host, subsets, created, ignored };
}
