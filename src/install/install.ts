/**
 * `ambit install` / `ambit uninstall`: applies the rendered manifests with the real kubectl
 * (server-side apply, so the API server validates every object), waits for the CRDs to be
 * Established and for the control plane and ztunnel to roll out. The Gateway API CRDs are applied
 * only where absent or already ambit's: clusters often carry the upstream ones.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import { checkReachable, kubectl, KubectlError, resolveContext, streamKubectl } from './kubectl.js';
import { renderManifests, toYaml } from './manifests.js';
import { CONTROL_PLANE_NAME, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PART_OF_LABEL, PART_OF_VALUE, ROOT_CERT_CONFIGMAP, ZTUNNEL_NAME } from '../api/names.js';
import { gatewayApiCrds, type CrdObject } from './objects/crds.js';
import { INGRESS_GATEWAY_NAME } from '../api/resources.js';
import type { InstallValues } from './values-schema.js';

export const DEFAULT_TIMEOUT_MS = 180_000;
const FIELD_MANAGER = 'ambit-install';

export interface InstallOptions {
  /** kubeconfig context; kubectl's current context when omitted. */
  context?: string;
  values: InstallValues;
  timeoutMs?: number;
  /** Progress lines (the CLI prints them on stderr). */
  progress?: (line: string) => void;
}

class Deadline {
  private readonly end: number;
  constructor(readonly totalMs: number) {
    this.end = Date.now() + totalMs;
  }
  /** Seconds left, at least 1, for kubectl's --timeout. */
  seconds(): number {
    return Math.max(1, Math.ceil((this.end - Date.now()) / 1000));
  }
}

const isClusterScoped = (object: KubernetesObject) => !object.metadata?.namespace;
const isFoundation = (object: KubernetesObject) => object.kind === 'Namespace' || object.kind === 'CustomResourceDefinition';

/** A CRD found in the cluster is ambit's to update or delete only when it carries ambit's managed-by label. */
export function isManagedByAmbit(object: KubernetesObject): boolean {
  return object.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;
}

/**
 * Which of the rendered shared CRDs to apply, given those already in the cluster: absent ones and
 * ambit's own. Another owner's CRD is kept as is (applying ours with --force-conflicts would
 * replace its schema); `notes` says so for each, and warns when it does not serve v1.
 */
export function selectSharedCrds(rendered: readonly CrdObject[], existing: readonly KubernetesObject[]): { apply: CrdObject[]; notes: string[] } {
  const found = new Map(existing.map((crd) => [crd.metadata?.name, crd]));
  const apply: CrdObject[] = [];
  const notes: string[] = [];
  for (const crd of rendered) {
    const name = crd.metadata?.name;
    const current = found.get(name);
    if (!current || isManagedByAmbit(current)) {
      apply.push(crd);
      continue;
    }
    notes.push(`customresourcedefinition ${name} exists and is not managed by ambit: left as is`);
    const served = (current as { spec?: { versions?: Array<{ name?: string; served?: boolean }> } }).spec?.versions ?? [];
    if (!served.some((v) => v.name === 'v1' && v.served)) notes.push(`warning: customresourcedefinition ${name} does not serve v1; ambit needs Gateway API v1.0 or later`);
  }
  return { apply, notes };
}

async function existingCrds(context: string, names: string[]): Promise<KubernetesObject[]> {
  const { stdout } = await kubectl(['--context', context, 'get', 'customresourcedefinitions', ...names, '--ignore-not-found', '-o', 'json']);
  if (!stdout.trim()) return [];
  const parsed = JSON.parse(stdout) as KubernetesObject & { items?: KubernetesObject[] };
  return parsed.kind === 'List' || Array.isArray(parsed.items) ? (parsed.items ?? []) : [parsed];
}

/** The Gateway API CRDs this install may apply, reporting the ones left to another owner. */
async function sharedCrdsToApply(context: string, progress: (line: string) => void): Promise<CrdObject[]> {
  const rendered = gatewayApiCrds();
  let existing: KubernetesObject[];
  try {
    existing = await existingCrds(context, rendered.map((crd) => crd.metadata!.name!));
  } catch (err) {
    throw new KubectlError(`cannot check for existing Gateway API CRDs: ${err instanceof Error ? err.message : String(err)}`);
  }
  const { apply, notes } = selectSharedCrds(rendered, existing);
  for (const note of notes) progress(note);
  return apply;
}

async function connect(options: { context?: string; progress?: (line: string) => void }): Promise<string> {
  const context = await resolveContext(options.context);
  const { server, version } = await checkReachable(context);
  options.progress?.(`context ${context}: API server ${server} (Kubernetes ${version})`);
  return context;
}

async function applyObjects(context: string, objects: KubernetesObject[], extraArgs: string[], progress: (line: string) => void): Promise<string[]> {
  if (!objects.length) return [];
  const args = ['--context', context, 'apply', '--server-side', `--field-manager=${FIELD_MANAGER}`, '--force-conflicts', ...extraArgs, '-f', '-'];
  try {
    const { stdout } = await kubectl(args, { input: toYaml(objects), timeoutMs: 120_000 });
    const lines = stdout.split('\n').filter((l) => l.trim());
    for (const line of lines) progress(line);
    return lines;
  } catch (err) {
    if (err instanceof KubectlError) throw new KubectlError(`the API server rejected the manifests:\n${err.message}`);
    throw err;
  }
}

async function namespaceExists(context: string, namespace: string): Promise<boolean> {
  try {
    await kubectl(['--context', context, 'get', 'namespace', namespace, '-o', 'name']);
    return true;
  } catch {
    return false;
  }
}

/**
 * Server dry run of the whole install; returns kubectl's lines. A server dry run cannot create the
 * namespace, so while it does not exist the objects inside it are checked client-side only.
 */
export async function dryRunInstall(options: InstallOptions): Promise<string[]> {
  const progress = options.progress ?? (() => {});
  const context = await connect(options);
  const rendered = renderManifests(options.values);
  const sharedCrds = await sharedCrdsToApply(context, progress);
  const objects = [...rendered.filter(isFoundation), ...sharedCrds, ...rendered.filter((o) => !isFoundation(o))];
  const namespace = options.values.systemNamespace;
  if (await namespaceExists(context, namespace)) return applyObjects(context, objects, ['--dry-run=server'], () => {});
  const lines = await applyObjects(context, objects.filter(isClusterScoped), ['--dry-run=server'], () => {});
  progress(`namespace ${namespace} does not exist yet: the objects inside it are checked client-side only`);
  const clientArgs = ['--context', context, 'apply', '--dry-run=client', '-f', '-'];
  try {
    const { stdout } = await kubectl(clientArgs, { input: toYaml(objects.filter((o) => !isClusterScoped(o))) });
    return [...lines, ...stdout.split('\n').filter((l) => l.trim())];
  } catch (err) {
    if (err instanceof KubectlError) throw new KubectlError(`kubectl rejected the manifests:\n${err.message}`);
    throw err;
  }
}

interface PodSummary {
  metadata?: { name?: string };
  spec?: { nodeName?: string };
  status?: {
    phase?: string;
    conditions?: Array<{ type?: string; status?: string; reason?: string; message?: string }>;
    containerStatuses?: Array<{ name?: string; ready?: boolean; state?: Record<string, { reason?: string; message?: string; exitCode?: number } | undefined> }>;
  };
}

/** One line per pod of `app`, saying why it is not ready: what a user needs when a rollout times out. */
async function podDiagnostics(context: string, namespace: string, app: string): Promise<string[]> {
  try {
    const { stdout } = await kubectl(['--context', context, '-n', namespace, 'get', 'pods', '-l', `app=${app}`, '-o', 'json']);
    const pods = (JSON.parse(stdout) as { items?: PodSummary[] }).items ?? [];
    if (!pods.length) return [`  no ${app} pods exist in ${namespace}`];
    return pods.map((pod) => {
      const unscheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
      const reasons = (pod.status?.containerStatuses ?? [])
        .filter((c) => !c.ready)
        .map((c) => {
          const [state, detail] = Object.entries(c.state ?? {}).find(([, v]) => v) ?? ['unknown', undefined];
          return `${c.name}: ${detail?.reason ?? state}${detail?.message ? ` (${detail.message})` : ''}`;
        });
      const why = unscheduled ? `not scheduled: ${unscheduled.message ?? unscheduled.reason}` : reasons.join('; ') || (pod.status?.phase ?? 'unknown');
      return `  ${pod.metadata?.name} on ${pod.spec?.nodeName ?? '(no node)'}: ${why}`;
    });
  } catch (err) {
    return [`  (could not list ${app} pods: ${err instanceof Error ? err.message : String(err)})`];
  }
}

/** The workload's own failure conditions (e.g. ReplicaFailure: pods forbidden by a quota) and its counts. */
async function workloadDiagnostics(context: string, namespace: string, kind: string, name: string): Promise<string[]> {
  try {
    const { stdout } = await kubectl(['--context', context, '-n', namespace, 'get', `${kind}/${name}`, '-o', 'json']);
    const status = (JSON.parse(stdout) as { status?: Record<string, unknown> & { conditions?: Array<{ type?: string; status?: string; message?: string }> } }).status ?? {};
    const counts =
      kind === 'daemonset'
        ? `nodes scheduled ${status.desiredNumberScheduled ?? 0}, ready ${status.numberReady ?? 0}`
        : `replicas ${status.replicas ?? 0}, ready ${status.readyReplicas ?? 0}`;
    const failing = (status.conditions ?? []).filter((c) => c.status === 'False' || c.type === 'ReplicaFailure').map((c) => `  ${c.type}: ${c.message ?? c.status}`);
    return [`  ${kind} ${name}: ${counts}`, ...failing];
  } catch {
    return [];
  }
}

async function waitForRollout(context: string, namespace: string, kind: 'deployment' | 'daemonset', name: string, deadline: Deadline, progress: (line: string) => void): Promise<void> {
  const { code, stderr } = await streamKubectl(
    ['--context', context, '-n', namespace, 'rollout', 'status', `${kind}/${name}`, `--timeout=${deadline.seconds()}s`],
    progress,
    { timeoutMs: deadline.seconds() * 1000 + 10_000 },
  );
  if (code === 0) return;
  const diagnostics = [...(await workloadDiagnostics(context, namespace, kind, name)), ...(await podDiagnostics(context, namespace, name))];
  throw new KubectlError(`${kind} ${namespace}/${name} did not become ready within ${Math.round(deadline.totalMs / 1000)}s${stderr ? `: ${stderr}` : ''}\n${diagnostics.join('\n')}`);
}

export async function installMesh(options: InstallOptions): Promise<void> {
  const progress = options.progress ?? (() => {});
  const deadline = new Deadline(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const context = await connect(options);
  const { values } = options;
  const objects = renderManifests(values);
  const sharedCrds = await sharedCrdsToApply(context, progress);
  // The namespace and CRDs first: the control plane watches AuthorizationPolicies and Gateways from its first moment.
  await applyObjects(context, [...objects.filter(isFoundation), ...sharedCrds], [], progress);
  const crds = [...objects.filter((o) => o.kind === 'CustomResourceDefinition'), ...sharedCrds].map((crd) => crd.metadata!.name!);
  try {
    await kubectl(['--context', context, 'wait', '--for=condition=Established', ...crds.map((name) => `crd/${name}`), `--timeout=${deadline.seconds()}s`], {
      timeoutMs: deadline.seconds() * 1000 + 10_000,
    });
  } catch (err) {
    throw new KubectlError(`CRDs ${crds.join(', ')} did not become Established: ${err instanceof Error ? err.message : String(err)}`);
  }
  for (const name of crds) progress(`customresourcedefinition ${name} established`);
  await applyObjects(context, objects.filter((o) => !isFoundation(o)), [], progress);
  const namespace = values.systemNamespace;
  await waitForRollout(context, namespace, 'deployment', CONTROL_PLANE_NAME, deadline, progress);
  await waitForRollout(context, namespace, 'daemonset', ZTUNNEL_NAME, deadline, progress);
  if (values.ingressGateway.enabled) await waitForRollout(context, namespace, 'deployment', INGRESS_GATEWAY_NAME, deadline, progress);
  progress(`ambit is installed: cluster "${values.clusterName}", network "${values.network || '(none)'}", mesh "${values.meshId}" (context ${context})`);
}

export interface UninstallOptions {
  context?: string;
  values: InstallValues;
  /**
   * Also delete the system namespace, the AuthorizationPolicy CRD (and with it every policy), the
   * Gateway API CRDs ambit installed (and with them every Gateway) and the root-cert ConfigMaps.
   */
  purge?: boolean;
  timeoutMs?: number;
  progress?: (line: string) => void;
}

export async function uninstallMesh(options: UninstallOptions): Promise<void> {
  const progress = options.progress ?? (() => {});
  const deadline = new Deadline(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const context = await connect(options);
  // Without --purge, keep what holds user data: the namespace (CA secret, remote secrets) and the CRD (every AuthorizationPolicy).
  // The ingress gateway's objects too, whatever profile it was installed with.
  const objects = renderManifests({ ...options.values, ingressGateway: { ...options.values.ingressGateway, enabled: true } })
    .filter((o) => options.purge || !isFoundation(o))
    .reverse();
  // ztunnels first, and in the foreground: while their DaemonSet is marked for deletion (and their
  // service account and Role still exist) each ztunnel can tell this uninstall from a restart and
  // removes its capture rules; afterwards it would keep them and enrolled pods would stay cut off.
  const { stdout: ztunnels } = await kubectl(
    ['--context', context, 'delete', 'daemonset', ZTUNNEL_NAME, '-n', options.values.systemNamespace, '--ignore-not-found', '--cascade=foreground', '--wait=true', `--timeout=${deadline.seconds()}s`],
    { timeoutMs: deadline.seconds() * 1000 + 10_000 },
  );
  for (const line of ztunnels.split('\n')) if (line.trim()) progress(line);
  const { stdout } = await kubectl(['--context', context, 'delete', '--ignore-not-found', '--wait=true', `--timeout=${deadline.seconds()}s`, '-f', '-'], {
    input: toYaml(objects),
    timeoutMs: deadline.seconds() * 1000 + 10_000,
  });
  for (const line of stdout.split('\n')) if (line.trim()) progress(line);
  if (options.purge) {
    // Only CRDs ambit installed: Gateway API CRDs of another owner stay.
    const { stdout: crds } = await kubectl(
      ['--context', context, 'delete', 'customresourcedefinitions', '--ignore-not-found', '-l', `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE},${PART_OF_LABEL}=${PART_OF_VALUE}`, `--timeout=${deadline.seconds()}s`],
      { timeoutMs: deadline.seconds() * 1000 + 10_000 },
    );
    for (const line of crds.split('\n')) if (line.trim()) progress(line);
    const { stdout: removed } = await kubectl(
      ['--context', context, 'delete', 'configmaps', '--all-namespaces', '--ignore-not-found', `--field-selector=metadata.name=${ROOT_CERT_CONFIGMAP}`],
      { timeoutMs: deadline.seconds() * 1000 + 10_000 },
    );
    for (const line of removed.split('\n')) if (line.trim()) progress(line);
  }
  progress(options.purge ? `ambit is removed (context ${context})` : `ambit is removed (context ${context}); kept namespace ${options.values.systemNamespace}, the AuthorizationPolicy CRD and the Gateway API CRDs (use --purge to delete them)`);
}
