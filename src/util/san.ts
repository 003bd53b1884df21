// Subject alternative names of a certificate read from node's X509Certificate (no ASN.1 library).
import type { X509Certificate } from 'node:crypto';

/**
 * URI SANs of a certificate. Node renders SANs as `URI:a, DNS:b`, quoting a value as a JSON string
 * when it holds a comma, quote or other character that would make that list ambiguous.
 */
export function certificateUriSans(cert: X509Certificate): string[] {
  return subjectAltNames(cert.subjectAltName ?? '')
    .filter((name) => name.type === 'URI')
    .map((name) => name.value);
}

interface GeneralName {
  type: string;
  value: string;
}

export function subjectAltNames(text: string): GeneralName[] {
  const names: GeneralName[] = [];
  let at = 0;
  while (at < text.length) {
    const colon = text.indexOf(':', at);
    if (colon < 0) break;
    const type = text.slice(at, colon).trim();
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      next = text.indexOf(', ', end + 1);
    } else {
      next = text.indexOf(', ', colon + 1);
      value = text.slice(colon + 1, next < 0 ? text.length : next);
    }
    names.push({ type, value });
    if (next < 0) break;
    at = next + 2;
  }
  return names;
}
