import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';

export const MAX_CLUSTERS = 16;
export const MAX_NODES_PER_NETWORK = 120;

const dnsLabel = z
  .string()
  .min(1)
  .max(20, 'at most 20 characters (it becomes part of network namespace names)')
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label: lowercase letters, digits and "-", starting and ending with a letter or digit');

/** Who runs a cluster's pods: the lab's own agent (host processes) or a real kubelet + containerd per node. */
export const NODE_RUNTIMES = ['agent', 'kubelet'] as const;
export type NodeRuntime = (typeof NODE_RUNTIMES)[number];
const nodeRuntime = z.enum(NODE_RUNTIMES, { error: () => `must be one of: ${NODE_RUNTIMES.join(', ')}` });

const localityValue = z.string().regex(/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, 'must be a valid label value');

const nodeSchema = z
  .object({
    name: dnsLabel.optional(),
    region: localityValue.default('region1'),
    zone: localityValue.default('zone1'),
  })
  .strict();

const clusterSchema = z
  .object({
    name: dnsLabel,
    network: dnsLabel,
    nodeRuntime: nodeRuntime.optional(),
    nodes: z.array(nodeSchema).min(1, 'a cluster needs at least one node').default([{ region: 'region1', zone: 'zone1' }]),
  })
  .strict();

const topologySchema = z
  .object({
    meshID: z.string().min(1).default('mesh1'),
    trustDomain: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS name such as cluster.local')
      .default('cluster.local'),
    installMesh: z.boolean().default(false),
    nodeRuntime: nodeRuntime.default('agent'),
    clusters: z.array(clusterSchema).min(1, 'at least one cluster is required').max(MAX_CLUSTERS, `at most ${MAX_CLUSTERS} clusters`),
  })
  .strict();

export interface TopologyNode {
  name: string;
  region: string;
  zone: string;
}
export interface TopologyCluster {
  name: string;
  network: string;
  /** The cluster's own setting, else the topology's (default agent). */
  nodeRuntime: NodeRuntime;
  nodes: TopologyNode[];
}
export interface Topology {
  meshID: string;
  trustDomain: string;
  installMesh: boolean;
  nodeRuntime: NodeRuntime;
  clusters: TopologyCluster[];
}

export class TopologyError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid topology ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

function fieldPath(path: PropertyKey[]): string {
  return path.reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part)), '');
}

/** Validates a parsed topology document; errors name the offending field. */
export function validateTopology(doc: unknown, source = '<input>'): Topology {
  const parsed = topologySchema.safeParse(doc ?? {});
  if (!parsed.success) {
    throw new TopologyError(
      source,
      parsed.error.issues.map((issue) => `${fieldPath(issue.path) || '(document)'}: ${issue.message}`),
    );
  }
  const problems: string[] = [];
  const clusterNames = new Map<string, number>();
  const nodesPerNetwork = new Map<string, number>();
  const clusters: TopologyCluster[] = parsed.data.clusters.map((cluster, ci) => {
    const first = clusterNames.get(cluster.name);
    if (first !== undefined) problems.push(`clusters[${ci}].name: duplicate cluster name "${cluster.name}" (also clusters[${first}])`);
    else clusterNames.set(cluster.name, ci);
    const nodeNames = new Map<string, number>();
    const nodes = cluster.nodes.map((node, ni) => {
      const name = node.name ?? `${cluster.name}-node${ni + 1}`;
      const seen = nodeNames.get(name);
      if (seen !== undefined) problems.push(`clusters[${ci}].nodes[${ni}].name: duplicate node name "${name}" (also nodes[${seen}])`);
      else nodeNames.set(name, ni);
      return { name, region: node.region, zone: node.zone };
    });
    nodesPerNetwork.set(cluster.network, (nodesPerNetwork.get(cluster.network) ?? 0) + nodes.length);
    return { name: cluster.name, network: cluster.network, nodeRuntime: cluster.nodeRuntime ?? parsed.data.nodeRuntime, nodes };
  });
  for (const [network, count] of nodesPerNetwork) {
    if (count > MAX_NODES_PER_NETWORK) problems.push(`clusters: network "${network}" has ${count} nodes; at most ${MAX_NODES_PER_NETWORK} fit its pod address space`);
  }
  if (problems.length) throw new TopologyError(source, problems);
  return { meshID: parsed.data.meshID, trustDomain: parsed.data.trustDomain, installMesh: parsed.data.installMesh, nodeRuntime: parsed.data.nodeRuntime, clusters };
}

export function parseTopology(text: string, source = '<input>'): Topology {
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    const detail = err instanceof YAMLParseError ? err.message : String(err);
    throw new TopologyError(source, [`not valid YAML: ${detail}`]);
  }
  if (doc !== null && doc !== undefined && (typeof doc !== 'object' || Array.isArray(doc))) {
    throw new TopologyError(source, ['(document): must be a mapping with meshID, trustDomain and clusters']);
  }
  return validateTopology(doc, source);
}

/** Reads a topology file; "-" reads standard input. */
export function loadTopology(file: string): Topology {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new TopologyError(file, [`cannot read file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`]);
  }
  return parseTopology(text, file);
}
