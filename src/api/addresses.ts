/** TLS name the control plane's serving certificate carries: the host part of its `host:port` address. */
export function serverNameOf(address: string): string {
  return address.replace(/:\d+$/, '');
}
