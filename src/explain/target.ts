/** The command line's `--from <ns>/<pod>` and `--to <host:port>`, checked before anything is fetched. */
import { isIP } from 'node:net';

export class ExplainArgumentError extends Error {}

export interface SourcePodName {
  namespace: string;
  name: string;
}

export interface Target {
  /** A name or an IP address (IPv6 without brackets). */
  host: string;
  port: number;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function parseSourcePod(text: string): SourcePodName {
  const parts = text.split('/');
  if (parts.length !== 2 || !parts[0] || !parts[1]) throw new ExplainArgumentError(`--from: expected <namespace>/<pod>, got "${text}"`);
  const [namespace, name] = parts as [string, string];
  if (!DNS_LABEL.test(namespace)) throw new ExplainArgumentError(`--from: "${namespace}" is not a valid namespace name`);
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) throw new ExplainArgumentError(`--from: "${name}" is not a valid pod name`);
  return { namespace, name };
}

/** `host:port`, `ip:port` or `[ipv6]:port`. */
export function parseTarget(text: string): Target {
  const usage = `expected <host>:<port> (e.g. helloworld.sample:5000, 10.96.0.10:80 or [fd00::10]:80), got "${text}"`;
  let host: string;
  let portText: string;
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(text);
  if (bracketed) {
    [, host, portText] = bracketed as unknown as [string, string, string];
    if (isIP(host) !== 6) throw new ExplainArgumentError(`--to: "${host}" in brackets is not an IPv6 address; ${usage}`);
  } else {
    if (isIP(text) === 6 || text.split(':').length > 2) throw new ExplainArgumentError(`--to: an IPv6 address needs brackets and a port, as in [fd00::10]:80; got "${text}"`);
    const colon = text.lastIndexOf(':');
    if (colon < 0) throw new ExplainArgumentError(`--to: missing port; ${usage}`);
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  if (!host) throw new ExplainArgumentError(`--to: missing host; ${usage}`);
  if (!portText) throw new ExplainArgumentError(`--to: missing port; ${usage}`);
  if (!/^\d+$/.test(portText)) throw new ExplainArgumentError(`--to: port "${portText}" is not a number; ${usage}`);
  const port = Number(portText);
  if (port < 1 || port > 65535) throw new ExplainArgumentError(`--to: port ${portText} is out of range (1-65535)`);
  if (!isIP(host) && !/^[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?\.?$/.test(host)) throw new ExplainArgumentError(`--to: "${host}" is neither an IP address nor a DNS name`);
  return { host, port };
}

export const OUTPUT_FORMATS = ['text', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function parseOutputFormat(text: string): OutputFormat {
  if ((OUTPUT_FORMATS as readonly string[]).includes(text)) return text as OutputFormat;
  throw new ExplainArgumentError(`--output: expected ${OUTPUT_FORMATS.join(' or ')}, got "${text}"`);
}
