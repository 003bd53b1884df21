/**
 * `ambit waypoint generate|apply|list|delete|status|run`, as istioctl's `waypoint` subcommands.
 * Flags are checked before any cluster is contacted; actions throw, the program's top level prints
 * `ambit: <message>` and exits 1.
 */
import type { Command } from 'commander';
import { DEFAULT_WAYPOINT_NAME } from '../api/resources.js';
import { realClock, realKubectl } from '../multicluster-cli/kube-access.js';
import { applyWaypoint, checkDeleteTargets, DEFAULT_WAYPOINT_TIMEOUT_MS, deleteWaypoints, listWaypoints, waypointStatus, type WaypointIo } from '../waypoint-cli/actions.js';
import { WaypointKube } from '../waypoint-cli/cluster.js';
import { parseWaypointFor, renderGatewayYaml, validateNamespace, validateWaypointName, waypointGateway, WaypointCliError } from '../waypoint-cli/gateway.js';
import { parseTimeout } from './mesh-commands.js';

interface ClusterOptions {
  context?: string;
  kubeconfig?: string;
  namespace?: string;
}

const io: WaypointIo = {
  clock: realClock,
  out: (line) => process.stdout.write(`${line}\n`),
  warn: (line) => process.stderr.write(`ambit: warning: ${line}\n`),
};

function withClusterOptions(command: Command): Command {
  return command
    .option('--context <context>', 'kubeconfig context (default: the current context; lab clusters are lab-<cluster>)')
    .option('--kubeconfig <file>', 'kubeconfig file (default: $KUBECONFIG or ~/.kube/config)')
    .option('-n, --namespace <ns>', "namespace (default: the context's namespace, else default)");
}

function noteRevision(revision: string | undefined): void {
  if (revision !== undefined) process.stderr.write(`ambit: note: --revision "${revision}" is ignored: ambit has one control plane per cluster, without revisions\n`);
}

function waypointTimeout(text: string): number {
  try {
    return parseTimeout(text);
  } catch {
    throw new WaypointCliError(`--waypoint-timeout: expected a duration like 90s or 5m, got "${text}"`);
  }
}

/** The cluster, and the namespace the command works in (checked before connecting when given). */
async function connect(options: ClusterOptions): Promise<{ kube: WaypointKube; namespace: string }> {
  if (options.namespace !== undefined) validateNamespace(options.namespace);
  const kube = await WaypointKube.connect({ context: options.context, kubeconfig: options.kubeconfig }, realKubectl);
  return { kube, namespace: options.namespace ?? kube.defaultNamespace };
}

const EXAMPLES = `
Examples:
  ambit waypoint apply -n sample --enroll-namespace --wait
  ambit waypoint generate -n sample --for workload --name reviews-waypoint
  ambit waypoint list -A
  ambit waypoint status -n sample
  ambit waypoint delete waypoint -n sample`;

export function registerWaypointCommands(program: Command): void {
  const waypoint = program.command('waypoint').description('manage waypoints (Gateways of class istio-waypoint), as `istioctl waypoint`').addHelpText('after', EXAMPLES);

  waypoint
    .command('generate')
    .description('print a waypoint Gateway as YAML')
    .option('-n, --namespace <ns>', 'namespace of the Gateway (default: none in the output)')
    .option('--name <name>', 'name of the waypoint', DEFAULT_WAYPOINT_NAME)
    .option('--for <type>', 'traffic type the waypoint serves: service, workload, all or none', 'service')
    .option('-r, --revision <rev>', 'accepted for istioctl compatibility; ignored')
    .action((options: { namespace?: string; name: string; for: string; revision?: string }) => {
      const gateway = waypointGateway({ name: options.name, namespace: options.namespace, for: parseWaypointFor(options.for) });
      noteRevision(options.revision);
      process.stdout.write(renderGatewayYaml(gateway));
    });

  withClusterOptions(waypoint.command('apply').description('apply a waypoint Gateway to the cluster; optionally wait until it is Programmed and enroll the namespace'))
    .option('--name <name>', 'name of the waypoint', DEFAULT_WAYPOINT_NAME)
    .option('--for <type>', 'traffic type the waypoint serves: service, workload, all or none', 'service')
    .option('--enroll-namespace', 'label the namespace istio.io/use-waypoint=<name> (after the waypoint is applied, and ready with --wait)')
    .option('--overwrite', 'with --enroll-namespace: replace the waypoint the namespace already uses')
    .option('-w, --wait', 'wait until the Gateway is Programmed')
    .option('--waypoint-timeout <duration>', 'how long --wait waits', `${DEFAULT_WAYPOINT_TIMEOUT_MS / 1000}s`)
    .option('-r, --revision <rev>', 'accepted for istioctl compatibility; ignored')
    .action(async (options: ClusterOptions & { name: string; for: string; enrollNamespace?: boolean; overwrite?: boolean; wait?: boolean; waypointTimeout: string; revision?: string }) => {
      const name = validateWaypointName(options.name);
      const waypointFor = parseWaypointFor(options.for);
      const timeoutMs = waypointTimeout(options.waypointTimeout);
      noteRevision(options.revision);
      const { kube, namespace } = await connect(options);
      await applyWaypoint(kube, { namespace, name, for: waypointFor, enrollNamespace: options.enrollNamespace, overwrite: options.overwrite, wait: options.wait, timeoutMs }, io);
    });

  withClusterOptions(waypoint.command('list').description('list the waypoints of a namespace (NAME, REVISION, TRAFFIC TYPE, PROGRAMMED)'))
    .option('-A, --all-namespaces', 'list the waypoints of all namespaces')
    .action(async (options: ClusterOptions & { allNamespaces?: boolean }) => {
      const { kube, namespace } = await connect(options);
      process.stdout.write(await listWaypoints(kube, { namespace, allNamespaces: options.allNamespaces }));
    });

  withClusterOptions(waypoint.command('delete').description('delete waypoints by name, or all of a namespace; other Gateways are never touched'))
    .argument('[names...]', 'names of the waypoints to delete')
    .option('--all', 'delete every waypoint of the namespace')
    .option('-r, --revision <rev>', 'accepted for istioctl compatibility; ignored')
    .action(async (names: string[], options: ClusterOptions & { all?: boolean; revision?: string }) => {
      checkDeleteTargets(names, options.all);
      noteRevision(options.revision);
      const { kube, namespace } = await connect(options);
      await deleteWaypoints(kube, { namespace, names, all: options.all }, io);
    });

  withClusterOptions(waypoint.command('status').description("show the Programmed condition of a namespace's waypoints"))
    .option('-A, --all-namespaces', 'the waypoints of all namespaces')
    .option('-w, --wait', 'wait until every waypoint is Programmed')
    .option('--waypoint-timeout <duration>', 'how long --wait waits', `${DEFAULT_WAYPOINT_TIMEOUT_MS / 1000}s`)
    .action(async (options: ClusterOptions & { allNamespaces?: boolean; wait?: boolean; waypointTimeout: string }) => {
      const timeoutMs = waypointTimeout(options.waypointTimeout);
      const { kube, namespace } = await connect(options);
      process.stdout.write(await waypointStatus(kube, { namespace, allNamespaces: options.allNamespaces, wait: options.wait, timeoutMs }, io));
    });

  waypoint
    .command('run')
    .description('run a waypoint proxy (what the waypoint Deployments run as `ambit waypoint-proxy`); settings from the environment')
    .action(async () => {
      const [{ runWaypoint }, { waypointSettingsFromEnv }] = await Promise.all([import('../waypoint/main.js'), import('../waypoint/settings.js')]);
      await runWaypoint(waypointSettingsFromEnv(process.env));
    });
}
