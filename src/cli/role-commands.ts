import type { Command } from 'commander';
import { X509Certificate } from 'node:crypto';
import { controlPlaneSettingsFromEnv } from '../controlplane/settings.js';
import { ztunnelSettingsFromEnv } from '../ztunnel/settings.js';
import { gatewaySettingsFromEnv } from '../gateway/settings.js';
import { waypointSettingsFromEnv } from '../waypoint/settings.js';
import { createLogger } from '../util/log.js';

/** The commands the deploy manifests run; `ambit <role>` loads only these (a proxy pod pays for no user command's modules). */
export const ROLE_COMMANDS: ReadonlySet<string> = new Set(['controlplane', 'gateway', 'waypoint-proxy', 'ingress', 'ztunnel']);

/** The processes the deploy manifests run: `ambit controlplane`, `ambit ztunnel`, the gateways and the waypoint. */
export function registerRoleCommands(program: Command): void {
  program
    .command('controlplane')
    .description('run the control plane (Deployment in the system namespace); settings from the environment the manifests set')
    .option('--kubeconfig <file>', 'kubeconfig to use instead of in-cluster credentials')
    .action(async (opts: { kubeconfig?: string }) => {
      const settings = controlPlaneSettingsFromEnv({ ...process.env, ...(opts.kubeconfig ? { KUBECONFIG: opts.kubeconfig } : {}) });
      const { runControlPlane } = await import('../controlplane/main.js');
      await runControlPlane(settings);
    });

  program
    .command('gateway')
    .description('run an east-west gateway (Deployment the control plane creates for a Gateway of class istio-east-west)')
    .action(async () => {
      const { runGateway } = await import('../gateway/main.js');
      await runGateway(gatewaySettingsFromEnv(process.env));
    });

  program
    .command('waypoint-proxy')
    .description('run a waypoint proxy (Deployment the control plane creates for a waypoint Gateway); settings from the environment')
    .action(async () => {
      const { runWaypoint } = await import('../waypoint/main.js');
      await runWaypoint(waypointSettingsFromEnv(process.env));
    });

  program
    .command('ingress')
    .description('run an ingress gateway (istio-ingressgateway, or the Deployment the control plane creates for a Gateway of class istio)')
    .action(async () => {
      const { runIngress } = await import('../ingress/main.js');
      await runIngress(gatewaySettingsFromEnv(process.env));
    });

  const ztunnel = program.command('ztunnel').description('the per-node proxy (DaemonSet, hostNetwork); settings from the environment the manifests set');
  ztunnel
    .command('run', { isDefault: true })
    .description('run ztunnel on this node')
    .action(async () => (await import('../ztunnel/main.js')).runZtunnel(ztunnelSettingsFromEnv(process.env)));
  ztunnel
    .command('request-certificate')
    .description('ask the CA for a workload identity with this ztunnel\'s credentials, and print the result (diagnostics)')
    .argument('<identity>', 'SPIFFE identity, e.g. spiffe://cluster.local/ns/default/sa/curl')
    .action(async (identity: string) => {
      const settings = ztunnelSettingsFromEnv(process.env);
      const { certificateManagerFor } = await import('../ztunnel/control-plane-client.js');
      const manager = certificateManagerFor(settings, createLogger('ztunnel', { node: settings.nodeName }).child({}, { level: 'silent' }));
      try {
        const cert = await manager.certificateFor(identity);
        const leaf = new X509Certificate(cert.certChainPem);
        process.stdout.write(`issued ${identity}\n  serial ${leaf.serialNumber}\n  not after ${cert.notAfter.toISOString()}\n  SAN ${leaf.subjectAltName}\n`);
      } finally {
        manager.stop();
      }
    });
}
