export type { ClusterView, ClusterViewChange, GatewayInfo, RemoteClusterSink } from './types.js';
export { KubeClusterView, type KubeClusterViewOptions } from './cluster-view.js';
export { MeshView, type MeshChange, type MeshViewOptions, type MeshViewStats } from './merge.js';
export {
  kubeConnector,
  RemoteClusters,
  REMOTE_SECRET_LABEL,
  type ClusterConnection,
  type ConnectCluster,
  type ConnectRequest,
  type RemoteClustersOptions,
  type RemoteClusterStatus,
} from './remote-secrets.js';
export { watchClusterView, type ApiHealth, type ClusterWatch, type ClusterWatchOptions } from './kube-watch.js';
export { parseRemoteKubeconfig, RemoteKubeconfigError } from './kubeconfig.js';
export { EAST_WEST_GATEWAY_CLASS } from './gateways.js';
export { GLOBAL_SERVICE_LABEL } from './global-services.js';
export { ServiceScopePolicy } from './service-scope.js';
export type { ServiceScopeConfig } from '../../api/mesh-config.js';
export { gatewayWorkloadUid, syntheticWorkloadUid } from './mesh-resources.js';
export { REMOTE_CLUSTER_STATES, type RemoteClusterState, type RemoteErrorReason } from './metrics.js';
