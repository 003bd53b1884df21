// What every HBONE proxy pod (east-west gateway, waypoint, ingress) starts with: its mesh state, identity, certificates, xDS client and process metrics.
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Logger } from '../util/log.js';
import { certificateManagerFor, proxyNodeId, xdsClientFor } from '../ztunnel/control-plane-client.js';
import type { CertificateManager } from '../ztunnel/identity/manager.js';
import { ZtunnelState } from '../ztunnel/state/store.js';
import type { XdsClient, XdsExtraType } from '../ztunnel/xds/client.js';
import { gatewayIdentity } from './identity.js';
import type { GatewaySettings } from './settings.js';

export interface ProxyBase {
  state: ZtunnelState;
  /** The pod's SPIFFE identity (checked against its service-account token). */
  identity: string;
  certificates: CertificateManager;
  /** Not started yet: the caller starts it once its endpoints are up. */
  xds: XdsClient;
  /** Node's process metrics (CPU, memory, event loop), served beside the proxy's own. */
  processMetrics: Registry;
}

/**
 * Builds the pieces; `account` is the service account the pod runs as (the Gateway's name, or a
 * waypoint's `istio.io/service-account`), `kind` the xDS node kind, `extraTypes` the role's own
 * resource types.
 */
export async function startProxyBase(
  settings: Omit<GatewaySettings, 'enforceTrustDomain'>,
  options: { account: string; kind: 'router' | 'waypoint'; log: Logger; extraTypes?: ReadonlyArray<XdsExtraType<never>> },
): Promise<ProxyBase> {
  const { log } = options;
  const state = new ZtunnelState({
    network: settings.network,
    nodeName: settings.nodeName,
    clusterId: settings.clusterId,
    systemNamespace: settings.systemNamespace,
    logger: log.child({ part: 'state' }),
  });
  const identity = await gatewayIdentity({ trustDomain: settings.trustDomain, namespace: settings.podNamespace, gatewayName: options.account, tokenPath: settings.tokenPath }, log.child({ part: 'identity' }));
  const certificates = certificateManagerFor(settings, log.child({ part: 'identity' }));
  const xds = xdsClientFor(settings, state, proxyNodeId(options.kind, settings.instanceIp, settings.podName, settings.podNamespace), log.child({ part: 'xds' }), options.extraTypes);
  const processMetrics = new Registry();
  collectDefaultMetrics({ register: processMetrics });
  return { state, identity, certificates, xds, processMetrics };
}
