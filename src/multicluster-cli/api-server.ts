/**
 * The API server URL written into a remote secret: it must be reachable from the other clusters'
 * control planes, so a loopback address (kind's default kubeconfig) gets a warning.
 */
import { MulticlusterError, serverOfContext, type KubeconfigView } from './kube-access.js';

/** True for servers other clusters cannot reach: loopback addresses and `localhost`. */
export function isLoopbackServer(server: string): boolean {
  let host: string;
  try {
    host = new URL(server).hostname.toLowerCase();
  } catch {
    return false;
  }
  return host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '[::1]' || host === '::1' || host === '0.0.0.0';
}

/** Checks a `--server` value: an http(s) URL with a host. */
export function validateServer(server: string, source: string): string {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new MulticlusterError(`${source}: "${server}" is not a URL; expected something like https://203.0.113.10:6443`);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || !url.hostname) {
    throw new MulticlusterError(`${source}: "${server}" must be an https:// URL with a host, e.g. https://203.0.113.10:6443`);
  }
  return server;
}

export function loopbackWarning(server: string, cluster: string): string {
  return `the API server of cluster "${cluster}" is ${server}, a loopback address: control planes in other clusters cannot reach it; pass an address they can reach (--server, or --server-for with ambit link)`;
}

/** The API server URL for a context: the override (checked) or the kubeconfig's; warns about loopback. */
export function serverFor(view: KubeconfigView, context: string, override: { value: string; source: string } | undefined): string {
  if (override) return validateServer(override.value, override.source);
  const server = serverOfContext(view, context);
  if (!server) throw new MulticlusterError(`the kubeconfig entry of context "${context}" has no API server URL; pass it with --server`);
  return validateServer(server, `server of context "${context}" in the kubeconfig`);
}

export function warnIfLoopback(server: string, cluster: string, warn: (line: string) => void): void {
  if (isLoopbackServer(server)) warn(loopbackWarning(server, cluster));
}
