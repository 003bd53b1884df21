/**
 * Multicluster commands: `create-remote-secret` and `link`. Actions throw on error; the program's
 * top level prints `ambit: <message>` and exits 1.
 */
import type { Command } from 'commander';
import { DEFAULT_SYSTEM_NAMESPACE } from '../api/resources.js';
import { READER_SERVICE_ACCOUNT } from '../api/names.js';
import { DEFAULT_TOKEN_TIMEOUT_MS } from '../multicluster-cli/reader-token.js';
import { parseTimeout } from './mesh-commands.js';

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

interface CommonOptions {
  namespace: string;
  serviceAccount: string;
  timeout: string;
}

function withCommonOptions(command: Command): Command {
  return command
    .option('-n, --namespace <ns>', 'system namespace: where the reader service account lives and where remote secrets go', DEFAULT_SYSTEM_NAMESPACE)
    .option('--service-account <name>', 'service account whose token the remote secret carries (created by `ambit install`)', READER_SERVICE_ACCOUNT)
    .option('--timeout <duration>', 'how long to wait for the token controller to fill the token secret', `${DEFAULT_TOKEN_TIMEOUT_MS / 1000}s`);
}

function registerCreateRemoteSecret(program: Command): void {
  withCommonOptions(
    program
      .command('create-remote-secret')
      .description("print a Secret that lets another cluster's control plane read this cluster (as `istioctl create-remote-secret`); apply it to the other cluster")
      .option('--context <context>', 'kubeconfig context of the cluster to give access to (default: the current context)')
      .option('--name <cluster>', "this cluster's name in the mesh (default: the CLUSTER_ID of the installed control plane)")
      .option('--server <url>', "API server URL other clusters use (default: the context's server in the kubeconfig)")
      .addHelpText(
        'after',
        '\nThe output holds a credential: pipe it to kubectl, do not store it.\n\nExample:\n  ambit create-remote-secret --context lab-cluster2 --name cluster2 | kubectl apply --server-side --context lab-cluster1 -f -',
      ),
  ).action(async (options: CommonOptions & { context?: string; name?: string; server?: string }) => {
    const { createRemoteSecret } = await import('../multicluster-cli/create-remote-secret.js');
    const yaml = await createRemoteSecret({
      context: options.context,
      name: options.name,
      namespace: options.namespace,
      server: options.server,
      serviceAccount: options.serviceAccount,
      timeoutMs: parseTimeout(options.timeout),
    });
    process.stdout.write(yaml);
  });
}

function registerLink(program: Command): void {
  withCommonOptions(
    program
      .command('link')
      .description("give every cluster's control plane read access to every other cluster: creates each cluster's remote secret and applies it to all the others (idempotent)")
      .requiredOption('--context <context>', 'kubeconfig context of a cluster; repeat for every cluster (at least two)', collect)
      .option('--name-for <context=cluster>', "cluster name of a context (default: the CLUSTER_ID of its installed control plane); repeatable", collect)
      .option('--server-for <context=url>', "API server URL other clusters use for a context (default: the context's server in the kubeconfig); repeatable", collect)
      .option('--dry-run', 'print the Secrets that would be applied, tokens redacted, and change nothing')
      .addHelpText(
        'after',
        '\nExamples:\n  ambit link --context lab-cluster1 --context lab-cluster2\n  ambit link --context kind-cluster1 --context kind-cluster2 --server-for kind-cluster1=https://172.18.0.2:6443 --server-for kind-cluster2=https://172.18.0.3:6443',
      ),
  ).action(async (options: CommonOptions & { context: string[]; nameFor?: string[]; serverFor?: string[]; dryRun?: boolean }) => {
    const { linkClusters } = await import('../multicluster-cli/link.js');
    await linkClusters(
      {
        contexts: options.context,
        nameFor: options.nameFor,
        serverFor: options.serverFor,
        namespace: options.namespace,
        serviceAccount: options.serviceAccount,
        dryRun: options.dryRun ?? false,
        timeoutMs: parseTimeout(options.timeout),
      },
      (text) => process.stdout.write(text),
    );
  });
}

/** Adds `create-remote-secret` and `link` to the ambit program. */
export function registerMulticlusterCommands(program: Command): void {
  registerCreateRemoteSecret(program);
  registerLink(program);
}
