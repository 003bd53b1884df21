// Real lab nodes (kubelet + containerd in the node's network namespace and its own mount namespace): the public surface.
export { LAB_PAUSE_IMAGE, nodePaths, type RealNodeSpec } from './spec.js';
export { issueNodeCredentials, type NodeCredentials } from './credentials.js';
export { buildImageArchive, pauseImageArchive, type ImageSpec } from './oci-image.js';
export { importImageArchive, listImages } from './images.js';
export { nodeLeftovers, nodePids, readNodeRecord, RealNodeError, startRealNode, stopRealNode, type NodeRecord } from './runtime.js';
