// A PKCS#10 certificate request carrying one URI SAN (the workload identity), built and signed with node:crypto alone.
import { KeyObject, sign as signData, webcrypto } from 'node:crypto';
import { bitString, booleanTrue, integerZero, nullValue, octetString, oid, sequence, set, tlv } from './der.js';
import { pemEncode } from './pem.js';

const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const SUBJECT_ALT_NAME = '2.5.29.17';
const URI_GENERAL_NAME_TAG = 0x86; // [6] IMPLICIT IA5String
const ATTRIBUTES_TAG = 0xa0; // [0] IMPLICIT SET OF Attribute

interface Signing {
  /** AlgorithmIdentifier DER. */
  algorithm: Buffer;
  hash: string;
}

/**
 * Builds a PEM CSR for a key pair with `uri` as its only subject alternative name, marked critical
 * since the subject is empty (RFC 5280 §4.2.1.6), signed with the pair's private key.
 */
export async function createUriCsr(keys: CryptoKeyPair, uri: string): Promise<string> {
  if (!/^[\x21-\x7e]+$/.test(uri)) throw new Error(`URI SAN ${JSON.stringify(uri)} is not printable ASCII without spaces`);
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
  const generalNames = sequence(tlv(URI_GENERAL_NAME_TAG, Buffer.from(uri, 'ascii')));
  const extensions = sequence(sequence(oid(SUBJECT_ALT_NAME), booleanTrue(), octetString(generalNames)));
  const attributes = tlv(ATTRIBUTES_TAG, sequence(oid(EXTENSION_REQUEST), set(extensions)));
  const info = sequence(integerZero(), sequence(), spki, attributes);
  const signing = signingFor(keys.privateKey);
  const signature = signData(signing.hash, info, { key: KeyObject.from(keys.privateKey), dsaEncoding: 'der' });
  return pemEncode(sequence(info, signing.algorithm, bitString(signature)), 'CERTIFICATE REQUEST');
}

function signingFor(key: CryptoKey): Signing {
  const algorithm = key.algorithm as { name: string; namedCurve?: string };
  if (algorithm.name === 'ECDSA') {
    if (algorithm.namedCurve === 'P-384') return { algorithm: sequence(oid('1.2.840.10045.4.3.3')), hash: 'sha384' };
    if (algorithm.namedCurve === 'P-521') return { algorithm: sequence(oid('1.2.840.10045.4.3.4')), hash: 'sha512' };
    return { algorithm: sequence(oid('1.2.840.10045.4.3.2')), hash: 'sha256' };
  }
  if (algorithm.name === 'RSASSA-PKCS1-v1_5') return { algorithm: sequence(oid('1.2.840.113549.1.1.11'), nullValue()), hash: 'sha256' };
  throw new Error(`cannot sign a CSR with a ${algorithm.name} key (want ECDSA or RSASSA-PKCS1-v1_5)`);
}
