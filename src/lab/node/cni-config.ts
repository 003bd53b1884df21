// The node's CNI network: ptp + host-local, pods get .2-.254 of the node's pod CIDR, as the lab plan says.
import { podAddressRange } from '../plan.js';
import type { NodePaths, RealNodeSpec } from './spec.js';

export const CNI_NETWORK_NAME = 'ambit-lab';

/**
 * One veth per pod (ptp), like the lab's own pod network: the pod has its address from the node's
 * pod CIDR and a default route through the node; the node has a /32 route to each pod. No masquerade:
 * pod addresses are routed on the lab network as they are. (containerd brings up the pod's lo itself.)
 */
export function cniConfig(spec: RealNodeSpec, paths: NodePaths): string {
  const range = podAddressRange(spec.podCidr);
  return JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: CNI_NETWORK_NAME,
      plugins: [
        {
          type: 'ptp',
          ipMasq: false,
          mtu: 1500,
          ipam: {
            type: 'host-local',
            dataDir: paths.cniDataDir,
            ranges: [[{ subnet: spec.podCidr, rangeStart: `${range.prefix}.${range.first}`, rangeEnd: `${range.prefix}.${range.last}`, gateway: `${range.prefix}.1` }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
      ],
    },
    null,
    2,
  );
}
