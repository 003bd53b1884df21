// PEM text: encoding DER under a label, and picking certificate blocks out of a text (node:crypto alone).

const CERTIFICATE_PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** DER bytes as a PEM block with 64-character lines. */
export function pemEncode(der: ArrayBuffer | Uint8Array, label: string): string {
  const base64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Every PEM certificate block in a text, in order. */
export function pemCertificates(text: string): string[] {
  return (text.match(CERTIFICATE_PEM_BLOCK) ?? []).map((block) => `${block}\n`);
}
