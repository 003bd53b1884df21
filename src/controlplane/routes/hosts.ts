// Hosts as Istio route objects write them: wildcards and short names qualified by namespace. Pure.

/** Whether `host` (possibly itself a wildcard) falls under the wildcard `pattern` (`*` or `*.suffix`). */
function underWildcard(host: string, pattern: string): boolean {
  if (pattern === '*') return true;
  return pattern.startsWith('*.') && host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
}

/** The hosts both sides accept, as the more specific of the two; undefined when none. */
export function intersectHost(a: string, b: string): string | undefined {
  if (a === b) return a;
  if (a.startsWith('*') && underWildcard(b, a)) return b;
  if (b.startsWith('*') && underWildcard(a, b)) return a;
  return undefined;
}

/** A destination host as Istio reads it: short names are services of the rule's namespace. */
export function qualifyHost(host: string, namespace: string, input: { domainSuffix: string; serviceExists(hostname: string): boolean }): string {
  if (!host.includes('.')) return `${host}.${namespace}.svc.${input.domainSuffix}`;
  const withSuffix = `${host}.svc.${input.domainSuffix}`;
  if (host.split('.').length === 2 && input.serviceExists(withSuffix)) return withSuffix;
  return host;
}

