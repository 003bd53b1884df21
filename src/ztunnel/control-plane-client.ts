import { readFileSync } from 'node:fs';
import { serverNameOf } from '../api/addresses.js';
import type { ControlPlaneSettings } from '../api/workload-settings.js';
import type { Logger } from '../util/log.js';
import { CertificateManager } from './identity/manager.js';
import type { StateUpdates } from './state/types.js';
import { XdsClient, type XdsExtraType } from './xds/client.js';

/** The mounted roots that sign the control plane's serving certificate (read again on every reconnect). */
export function rootsReader(settings: Pick<ControlPlaneSettings, 'rootCertPath'>): () => string {
  return () => readFileSync(settings.rootCertPath, 'utf8');
}

/** Certificates from the control plane's CA, authenticated with this pod's service-account token. */
export function certificateManagerFor(settings: ControlPlaneSettings, log: Logger): CertificateManager {
  return new CertificateManager({
    caAddress: settings.caAddress,
    caRootsPem: rootsReader(settings)(),
    caServerName: serverNameOf(settings.caAddress),
    tokenPath: settings.tokenPath,
    clusterId: settings.clusterId,
    requestedTtlSeconds: settings.certTtlSeconds,
    log,
  });
}

/** Envoy-style node id: `<ztunnel|router>~<ip>~<pod>.<ns>~<ns>.svc.cluster.local` (Istio names gateways `router`). */
export function proxyNodeId(kind: 'ztunnel' | 'router' | 'waypoint', ip: string, podName: string, podNamespace: string): string {
  return `${kind}~${ip}~${podName}.${podNamespace}~${podNamespace}.svc.cluster.local`;
}

/** The delta xDS subscription that feeds `state`. */
export function xdsClientFor(
  settings: ControlPlaneSettings,
  state: StateUpdates,
  nodeId: string,
  log: Logger,
  extraTypes?: ReadonlyArray<XdsExtraType<never>>,
): XdsClient {
  return new XdsClient({
    address: settings.xdsAddress,
    rootsPem: rootsReader(settings),
    serverName: serverNameOf(settings.xdsAddress),
    tokenPath: settings.tokenPath,
    clusterId: settings.clusterId,
    nodeId,
    state,
    log,
    extraTypes,
  });
}
