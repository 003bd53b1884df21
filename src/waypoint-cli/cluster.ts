/**
 * The kubectl calls of the waypoint commands, against one context (chosen as the other commands
 * choose it: --context, else the current one), behind an injectable runner so tests need no cluster.
 * Every failure becomes one line naming the context and the object.
 */
import { GATEWAY_CRD } from '../api/names.js';
import type { KubectlRunner } from '../multicluster-cli/kube-access.js';
import { WaypointCliError } from './gateway.js';
import type { GatewayJson } from './tables.js';

export interface KubeTarget {
  context?: string;
  kubeconfig?: string;
}

const REQUEST_TIMEOUT = '--request-timeout=20s';
const CALL_TIMEOUT_MS = 40_000;
const FIELD_MANAGER = 'ambit-waypoint';

/** kubectl's message as one line: its last line that is not a client-go log line (E0101 12:00:00 …). */
export function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const meaningful = lines.filter((l) => !/^[EWI]\d{4} /.test(l));
  return (meaningful.at(-1) ?? lines.at(-1) ?? 'kubectl failed').replace(/^error: /, '');
}

const CRDS_MISSING = /no matches for kind "Gateway"|doesn't have a resource type "gateways"|the server could not find the requested resource/;

interface RawKubeconfig {
  'current-context'?: string;
  contexts?: Array<{ name?: string; context?: { cluster?: string; namespace?: string } }> | null;
  clusters?: Array<{ name?: string; cluster?: { server?: string } }> | null;
}

export class WaypointKube {
  private constructor(
    private readonly run: KubectlRunner,
    private readonly base: string[],
    readonly context: string,
    /** The context's namespace, else `default` (what -n defaults to, as in istioctl). */
    readonly defaultNamespace: string,
    private readonly server: string,
  ) {}

  /** Resolves the context and checks that its API server answers. */
  static async connect(target: KubeTarget, run: KubectlRunner): Promise<WaypointKube> {
    const base = target.kubeconfig ? ['--kubeconfig', target.kubeconfig] : [];
    let raw: RawKubeconfig;
    try {
      raw = JSON.parse((await run([...base, 'config', 'view', '-o', 'json'])).stdout) as RawKubeconfig;
    } catch (err) {
      throw new WaypointCliError(`cannot read the kubeconfig${target.kubeconfig ? ` ${target.kubeconfig}` : ''}: ${oneLine(err)}`);
    }
    const contexts = (raw.contexts ?? []).filter((c) => c.name);
    const known = contexts.length ? `known contexts: ${contexts.map((c) => c.name).join(', ')}` : 'the kubeconfig has no contexts (lab clusters appear as lab-<cluster> after `ambit lab up`)';
    const name = target.context ?? raw['current-context'];
    const entry = contexts.find((c) => c.name === name);
    if (!entry) {
      throw new WaypointCliError(target.context ? `context "${target.context}" is not in the kubeconfig; ${known}` : `no --context given and no current context is set; ${known}`);
    }
    const server = raw.clusters?.find((c) => c.name === entry.context?.cluster)?.cluster?.server ?? 'an unknown address';
    const kube = new WaypointKube(run, [...base, '--context', entry.name!], entry.name!, entry.context?.namespace || 'default', server);
    try {
      await run([...kube.base, 'get', '--raw', '/version', '--request-timeout=10s'], { timeoutMs: 20_000 });
    } catch (err) {
      throw new WaypointCliError(`cannot reach the API server of context "${kube.context}" at ${server}: ${oneLine(err)}`);
    }
    return kube;
  }

  private async kubectl(args: string[], what: string, input?: string): Promise<string> {
    try {
      return (await this.run([...this.base, ...args, REQUEST_TIMEOUT], { timeoutMs: CALL_TIMEOUT_MS, ...(input !== undefined ? { input } : {}) })).stdout;
    } catch (err) {
      const message = oneLine(err);
      if (CRDS_MISSING.test(message)) throw new WaypointCliError(`the Gateway API CRDs are not installed in context "${this.context}" (\`ambit install\` adds them): ${message}`);
      throw new WaypointCliError(`cannot ${what} in context "${this.context}": ${message}`);
    }
  }

  private parse<T>(stdout: string, what: string): T {
    try {
      return JSON.parse(stdout) as T;
    } catch {
      throw new WaypointCliError(`kubectl printed something other than JSON for ${what} in context "${this.context}"`);
    }
  }

  /** The namespace's labels; fails when the namespace does not exist. */
  async namespaceLabels(namespace: string): Promise<Record<string, string>> {
    const stdout = await this.kubectl(['get', 'namespace', namespace, '-o', 'json', '--ignore-not-found'], `read namespace ${namespace}`);
    if (!stdout.trim()) throw new WaypointCliError(`namespace "${namespace}" not found in context "${this.context}"`);
    return this.parse<{ metadata?: { labels?: Record<string, string> } }>(stdout, `namespace ${namespace}`).metadata?.labels ?? {};
  }

  async labelNamespace(namespace: string, key: string, value: string): Promise<void> {
    await this.kubectl(['label', 'namespace', namespace, `${key}=${value}`, '--overwrite'], `label namespace ${namespace}`);
  }

  /** Server-side apply, as istioctl applies its waypoint. */
  async applyGateway(gateway: { metadata: { name: string; namespace?: string } }): Promise<void> {
    const where = `${gateway.metadata.namespace}/${gateway.metadata.name}`;
    await this.kubectl(['apply', '--server-side', `--field-manager=${FIELD_MANAGER}`, '--force-conflicts', '-f', '-'], `apply Gateway ${where}`, JSON.stringify(gateway));
  }

  async getGateway(namespace: string, name: string): Promise<GatewayJson | undefined> {
    const stdout = await this.kubectl(['-n', namespace, 'get', GATEWAY_CRD, name, '-o', 'json', '--ignore-not-found'], `read Gateway ${namespace}/${name}`);
    return stdout.trim() ? this.parse<GatewayJson>(stdout, `Gateway ${namespace}/${name}`) : undefined;
  }

  /** Every Gateway (any class) of the namespace, or of all namespaces when undefined. */
  async listGateways(namespace: string | undefined): Promise<GatewayJson[]> {
    const scope = namespace === undefined ? ['-A'] : ['-n', namespace];
    const what = namespace === undefined ? 'Gateways' : `Gateways in namespace ${namespace}`;
    return this.parse<{ items?: GatewayJson[] }>(await this.kubectl(['get', GATEWAY_CRD, ...scope, '-o', 'json'], `list ${what}`), what).items ?? [];
  }

  async deleteGateway(namespace: string, name: string): Promise<void> {
    await this.kubectl(['-n', namespace, 'delete', GATEWAY_CRD, name, '--ignore-not-found'], `delete Gateway ${namespace}/${name}`);
  }
}
