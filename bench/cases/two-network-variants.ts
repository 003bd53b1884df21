/** Row variants of the two-network cases, shared by the cases and the targets that read their rows. */

export type CrossNetworkTarget = 'same network' | 'cross network';

export const crossNetworkVariant = (target: CrossNetworkTarget, innerPooling: boolean) => `${target}, inner pooling ${innerPooling ? 'on' : 'off'}`;

export const CONTROL_PLANE_ROW_PREFIX = 'control plane of ';
export const controlPlaneVariant = (cluster: string) => `${CONTROL_PLANE_ROW_PREFIX}${cluster}`;
export const READY_TO_REMOTE_ZTUNNEL = 'pod Ready → ztunnel on the other network';
export const READY_TO_LOCAL_ZTUNNEL = 'pod Ready → ztunnel in the same cluster';
