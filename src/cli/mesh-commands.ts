/**
 * Mesh commands: `manifest generate`, `install`, `uninstall`, `proxy-config`. Actions throw on
 * error; the program's top level prints `ambit: <message>` and exits 1.
 */
import type { Command } from 'commander';
import { parseDuration } from '../install/duration.js';
import { DEFAULT_TIMEOUT_MS, dryRunInstall, installMesh, uninstallMesh } from '../install/install.js';
import { resolveContext } from '../install/kubectl.js';
import { renderYaml } from '../install/manifests.js';
import { parseConfigDump } from '../install/proxy-config/config-dump.js';
import { fetchConfigDump, locatePod, locateZtunnel } from '../install/proxy-config/fetch.js';
import { routesTable, waypointRoutes } from '../install/proxy-config/routes.js';
import { adminFetcher } from './lab-commands.js';
import { parseView, renderView, viewJson, VIEWS } from '../install/proxy-config/tables.js';
import { loadValues, type ResolvedValues } from '../install/values.js';
import { DEFAULT_SYSTEM_NAMESPACE } from '../api/resources.js';

interface ValueOptions {
  values?: string[];
  set?: string[];
  clusterName?: string;
  network?: string;
  meshId?: string;
  trustDomain?: string;
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

const VALUES_HELP = `
Values, lowest to highest precedence: defaults < -f files (in order) < --cluster-name/--network/
--mesh-id/--trust-domain < --set (in order). A values file may use ambit's keys:
  clusterName, network, meshId, trustDomain, systemNamespace, image, imagePullPolicy,
  controlPlane.{replicas, logLevel, workloadCertTtl, maxWorkloadCertTtl, resources},
  ztunnel.{logLevel, resources}
or the Istio keys users already write (Helm values of the istiod/ztunnel charts, or an
IstioOperator): global.meshID, global.multiCluster.clusterName, global.network,
meshConfig.trustDomain, global.istioNamespace, multiCluster.clusterName. Istio settings without
meaning in ambit (env.*, platforms.*, profile, ...) are accepted with a note; unknown keys are errors.
Durations: 24h, 30m, 90d, 1h30m.`;

function withValueOptions(command: Command): Command {
  return command
    .option('-f, --values <file>', 'values file, YAML or JSON ("-" for stdin); repeatable, later files win', collect)
    .option('--set <key=value>', 'set a value by its dotted path, e.g. controlPlane.replicas=2 or global.meshID=mesh1; repeatable', collect)
    .option('--cluster-name <name>', 'cluster name in the mesh (Istio: global.multiCluster.clusterName; default Kubernetes)')
    .option('--network <name>', 'network of this cluster\'s pods (Istio: global.network; default none)')
    .option('--mesh-id <id>', 'mesh ID (Istio: global.meshID; default: the trust domain)')
    .option('--trust-domain <domain>', 'SPIFFE trust domain (Istio: meshConfig.trustDomain; default cluster.local)')
    .addHelpText('after', VALUES_HELP);
}

function valuesFrom(options: ValueOptions): ResolvedValues {
  const resolved = loadValues({
    files: options.values,
    set: options.set,
    flags: { clusterName: options.clusterName, network: options.network, meshId: options.meshId, trustDomain: options.trustDomain },
  });
  for (const note of resolved.notes) process.stderr.write(`ambit: note: ${note}\n`);
  return resolved;
}

/** `--timeout`: a duration (180s, 5m) or a plain number of seconds. */
export function parseTimeout(text: string): number {
  const ms = /^\d+$/.test(text.trim()) ? Number(text) * 1000 : parseDuration(text);
  if (!ms) throw new Error(`--timeout: expected a duration like 180s or 5m, got "${text}"`);
  return ms;
}

const progressFor = (command: string) => (line: string) => process.stderr.write(`[${command}] ${line}\n`);

function registerManifest(program: Command): void {
  const manifest = program.command('manifest').description('deploy manifests of the ambit control plane and ztunnel');
  withValueOptions(
    manifest
      .command('generate')
      .description('print the manifests `ambit install` applies, as multi-document YAML (apply with `kubectl apply --server-side -f -`)')
      .addHelpText('after', '\nExample:\n  ambit manifest generate --cluster-name cluster1 --network network1 --mesh-id mesh1 > ambit.yaml'),
  ).action((options: ValueOptions) => {
    process.stdout.write(renderYaml(valuesFrom(options).values));
  });
}

function registerInstall(program: Command): void {
  withValueOptions(
    program
      .command('install')
      .description('install the ambit control plane and ztunnel into a cluster with kubectl, and wait until they are ready')
      .option('--context <context>', 'kubeconfig context (default: the current context; lab clusters are lab-<cluster>)')
      .option('--dry-run', 'validate against the API server (kubectl apply --dry-run=server) and print what would be applied')
      .option('--timeout <duration>', 'how long to wait for the rollout', `${DEFAULT_TIMEOUT_MS / 1000}s`)
      .addHelpText(
        'after',
        '\nExamples:\n  ambit install --context lab-cluster1 --cluster-name cluster1 --network network1 --mesh-id mesh1\n  ambit install --context kind-cluster1 -f istiod-values.yaml --dry-run',
      ),
  ).action(async (options: ValueOptions & { context?: string; dryRun?: boolean; timeout: string }) => {
    const timeoutMs = parseTimeout(options.timeout);
    const { values } = valuesFrom(options);
    if (options.dryRun) {
      const lines = await dryRunInstall({ context: options.context, values, timeoutMs, progress: progressFor('install') });
      for (const line of lines) process.stdout.write(`${line}\n`);
      return;
    }
    await installMesh({ context: options.context, values, timeoutMs, progress: progressFor('install') });
  });

  withValueOptions(
    program
      .command('uninstall')
      .description('remove ambit from a cluster; keeps the system namespace and the AuthorizationPolicy CRD unless --purge')
      .option('--context <context>', 'kubeconfig context (default: the current context)')
      .option('--purge', 'also delete the system namespace (CA and remote secrets), the AuthorizationPolicy CRD with every policy, and the root-cert ConfigMaps')
      .option('--timeout <duration>', 'how long to wait for deletion', `${DEFAULT_TIMEOUT_MS / 1000}s`),
  ).action(async (options: ValueOptions & { context?: string; purge?: boolean; timeout: string }) => {
    const timeoutMs = parseTimeout(options.timeout);
    const { values } = valuesFrom(options);
    await uninstallMesh({ context: options.context, values, purge: options.purge ?? false, timeoutMs, progress: progressFor('uninstall') });
  });
}

function registerProxyConfig(program: Command): void {
  program
    .command('proxy-config')
    .description('show what a proxy knows, from its admin endpoint: a node\'s ztunnel (workloads, services, policies, certificates) or a waypoint (routes)')
    .argument('<view>', `one of ${VIEWS.join(', ')} (or istioctl's singular names: workload, service, policy, certificate) for a ztunnel; routes for a waypoint`)
    .argument('<target>', 'a node name or a ztunnel pod; for routes, a waypoint pod (<pod> or <pod>.<namespace>)')
    .option('--context <context>', 'kubeconfig context (default: the current context)')
    .option('-n, --namespace <ns>', `namespace of the pod (default: ${DEFAULT_SYSTEM_NAMESPACE} for ztunnel views, default for routes)`)
    .option('-o, --output <format>', 'table or json', 'table')
    .addHelpText('after', '\nExamples:\n  ambit proxy-config workloads --context lab-cluster1 cluster1-node1\n  ambit proxy-config certs ztunnel-7x2kq -o json\n  ambit proxy-config routes bookinfo-reviews-waypoint-proxy-5d9f8-x7k2p.default')
    .action(async (viewName: string, target: string, options: { context?: string; namespace?: string; output: string }) => {
      if (options.output !== 'table' && options.output !== 'json') throw new Error(`--output: expected table or json, got "${options.output}"`);
      const context = await resolveContext(options.context);
      if (viewName === 'routes' || viewName === 'route') {
        const dot = target.indexOf('.');
        const [name, namespace] = dot > 0 ? [target.slice(0, dot), target.slice(dot + 1)] : [target, options.namespace ?? 'default'];
        const pod = await locatePod(context, namespace, name);
        const routes = waypointRoutes(await fetchConfigDump(context, pod, adminFetcher), `pod ${namespace}/${name}`);
        process.stdout.write(`${options.output === 'json' ? JSON.stringify(routes, null, 2) : routesTable(routes)}\n`);
        return;
      }
      const view = parseView(viewName);
      if (!view) throw new Error(`proxy-config: unknown view "${viewName}"; expected one of ${VIEWS.join(', ')}, routes`);
      const pod = await locateZtunnel(context, options.namespace ?? DEFAULT_SYSTEM_NAMESPACE, target);
      const dump = parseConfigDump(await fetchConfigDump(context, pod, adminFetcher), `ztunnel ${pod.name} on node ${pod.node}`);
      const text = options.output === 'json' ? JSON.stringify(viewJson(dump, view), null, 2) : renderView(dump, view, pod.name);
      process.stdout.write(`${text}\n`);
    });
}

/** Adds `manifest generate`, `install`, `uninstall` and `proxy-config` to the ambit program. */
export function registerMeshCommands(program: Command): void {
  registerManifest(program);
  registerInstall(program);
  registerProxyConfig(program);
}
