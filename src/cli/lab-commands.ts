/**
 * `ambit lab …`, and what the other commands need to know about the lab: the only part of the CLI
 * that imports src/lab/ (product code never does; see eslint.config.js).
 */
import type { Command } from 'commander';
import { portForwardFetcher, type AdminFetcher } from '../install/proxy-config/fetch.js';

// Commands load their modules on use, so long-running roles (ztunnel) do not carry the rest.
const progress = (message: string) => process.stderr.write(`[lab] ${message}\n`);

/** Admin endpoints of ztunnels: through `ambit lab exec` on lab clusters, `kubectl port-forward` elsewhere. */
export const adminFetcher: AdminFetcher = async (context, pod, path) => (await import('../lab/admin-access.js')).labAdminFetcher(portForwardFetcher)(context, pod, path);

export function registerLabCommands(program: Command): void {
  const lab = program.command('lab').description('real Kubernetes clusters on this host, in network namespaces');

  lab
    .command('up')
    .description('create the lab from a topology file (idempotent); returns when every cluster answers and all nodes are Ready')
    .requiredOption('-f, --file <topology.yaml>', 'topology file (see topologies/)')
    .option('--timeout <seconds>', 'give up after this long', '180')
    .action(async (opts: { file: string; timeout: string }) => {
      const timeout = Number(opts.timeout);
      if (!Number.isFinite(timeout) || timeout <= 0) throw new Error(`--timeout: "${opts.timeout}" is not a positive number of seconds`);
      const { labUp } = await import('../lab/up.js');
      await labUp(opts.file, progress, timeout * 1000);
    });

  lab
    .command('down')
    .description('remove everything the lab made: processes, network namespaces, nftables, contexts, state')
    .action(async () => (await import('../lab/down.js')).labDown(progress));

  lab
    .command('status')
    .description('show clusters, nodes and processes of the lab')
    .action(async () => console.log(await (await import('../lab/ops.js')).labStatus()));

  lab
    .command('exec')
    .description('run a command in a pod: ambit lab exec --cluster c -n ns <pod | deploy/name> -- <cmd…>')
    .requiredOption('--cluster <name>', 'cluster name from the topology')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('-c, --container <name>', 'container (default: the first)')
    .argument('<target>', 'pod name, pod/<name> or deploy/<name>')
    .argument('[command...]', 'command and arguments, after --')
    .action(async (target: string, command: string[], opts: { cluster: string; namespace: string; container?: string }) => {
      process.exitCode = await (await import('../lab/ops.js')).labExec(opts.cluster, opts.namespace, target, command, opts.container);
    });

  lab
    .command('logs')
    .description('print a pod container\'s output')
    .requiredOption('--cluster <name>', 'cluster name from the topology')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('-c, --container <name>', 'container (default: the first)')
    .option('-f, --follow', 'keep printing new output')
    .argument('<target>', 'pod name, pod/<name> or deploy/<name>')
    .action(async (target: string, opts: { cluster: string; namespace: string; container?: string; follow?: boolean }) => {
      process.exitCode = await (await import('../lab/ops.js')).labLogs(opts.cluster, opts.namespace, target, opts);
    });

  lab
    .command('agent', { hidden: true })
    .description('per-cluster node agent (started by `lab up`)')
    .requiredOption('--cluster <name>', 'cluster to serve')
    .action(async (opts: { cluster: string }) => (await import('../lab/agent/main.js')).runAgent(opts.cluster));
}
