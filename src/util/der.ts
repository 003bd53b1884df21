// The few DER encodings a PKCS#10 request needs (lengths, OIDs, strings), so the proxies need no ASN.1 library.

/** A tag-length-value with a definite length. */
export function tlv(tag: number, ...content: Uint8Array[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), lengthOf(body.length), body]);
}

export const sequence = (...content: Uint8Array[]): Buffer => tlv(0x30, ...content);
export const set = (...content: Uint8Array[]): Buffer => tlv(0x31, ...content);
export const octetString = (content: Uint8Array): Buffer => tlv(0x04, content);
export const booleanTrue = (): Buffer => Buffer.from([0x01, 0x01, 0xff]);
export const integerZero = (): Buffer => Buffer.from([0x02, 0x01, 0x00]);
export const nullValue = (): Buffer => Buffer.from([0x05, 0x00]);
/** A BIT STRING with no unused bits. */
export const bitString = (content: Uint8Array): Buffer => tlv(0x03, Buffer.from([0]), content);

/** An OBJECT IDENTIFIER from its dotted form. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((arc) => {
    if (!/^\d+$/.test(arc)) throw new Error(`object identifier ${dotted} has a non-numeric arc`);
    return BigInt(arc);
  });
  if (arcs.length < 2 || arcs[0]! > 2n) throw new Error(`object identifier ${dotted} is not valid`);
  const bytes: number[] = [];
  for (const arc of [arcs[0]! * 40n + arcs[1]!, ...arcs.slice(2)]) {
    const chunk: number[] = [Number(arc & 0x7fn)];
    for (let rest = arc >> 7n; rest > 0n; rest >>= 7n) chunk.unshift(Number(rest & 0x7fn) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

function lengthOf(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
