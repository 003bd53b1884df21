/** The Kubernetes kit: API clients with timeouts, errors, patches, and the informer (as istio's pkg/kube). */
export { apiClient, DEFAULT_REQUEST_TIMEOUT_MS, requestTimeout, type ApiClientOptions } from './client.js';
export { errorMessage, isConflict, isGone, isNotFound, isRequestTimeout, RequestTimeoutError, statusCode, statusMessage } from './errors.js';
export { createInformer, DEFAULT_INFORMER_BACKOFF, startInformer, type Informer, type InformerOptions, type ListResult } from './informer.js';
export { mergePatch, serverSideApply, statusPatch } from './patch.js';
export { TimedWatch, type WatchTimeouts } from './watch.js';
