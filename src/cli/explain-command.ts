/** `ambit explain`: the path a connection from a pod would take, from the ztunnel on its node. */
import type { Command } from 'commander';
import { DEFAULT_SYSTEM_NAMESPACE } from '../api/resources.js';

const EXAMPLES = `
Examples:
  ambit explain --context lab-cluster1 --from sample/curl-5d8f7 --to helloworld.sample:5000
  ambit explain --from default/client --to 10.96.0.10:80 -o json
  ambit explain --from default/sleep-7c9b4 --to reviews.default:9080 --http "GET /reviews/0" --header "end-user: jason"

--to takes an IP address, a service hostname (name.ns.svc.cluster.local, or the short forms
name.ns and name.ns.svc, expanded as the pod's resolver would), or any other name (not the mesh's).`;

export function registerExplainCommand(program: Command): void {
  program
    .command('explain')
    .description('explain hop by hop the path a connection from a pod would take, with ztunnel\'s own endpoint selection and authorization')
    .requiredOption('--from <ns/pod>', 'source pod, as <namespace>/<pod>')
    .requiredOption('--to <host:port>', 'destination: <ip>:<port>, [<ipv6>]:<port> or <hostname>:<port>')
    .option('--context <context>', 'kubeconfig context of the source pod\'s cluster (default: the current context)')
    .option('-o, --output <format>', 'text or json', 'text')
    .option('-n, --namespace <ns>', 'namespace of the ztunnel pods', DEFAULT_SYSTEM_NAMESPACE)
    .option('--cluster-domain <domain>', 'cluster DNS domain for short names', 'cluster.local')
    .option('--http <request>', 'also explain which mesh route an HTTP request takes at the waypoint on the path: "<METHOD> <path>"')
    .option('--header <name: value>', 'a request header for --http (repeatable)', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .addHelpText('after', EXAMPLES)
    .action(async (options: { from: string; to: string; context?: string; output: string; namespace: string; clusterDomain: string; http?: string; header: string[] }) => {
      const { runExplain } = await import('../explain/run.js');
      const { adminFetcher } = await import('./lab-commands.js');
      const report = await runExplain({ ...options, headers: options.header, ztunnelNamespace: options.namespace, fetchAdmin: adminFetcher });
      process.stdout.write(`${report}\n`);
    });
}
