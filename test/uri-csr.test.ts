// The proxies' hand-built PKCS#10 request (DER by node:crypto alone) read back by openssl and by the CA's parser; SAN text parsing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, webcrypto } from 'node:crypto';
import { describe, it } from 'node:test';
import { readCsr } from '../src/util/csr.js';
import { oid } from '../src/util/der.js';
import { generateKeys } from '../src/util/keys.js';
import { createRootCa, issueLeaf } from '../src/util/pki.js';
import { subjectAltNames, certificateUriSans } from '../src/util/san.js';
import { createUriCsr } from '../src/util/uri-csr.js';

const IDENTITY = 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage';

const openssl = (args: string[], input: string) => execFileSync('openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });

describe('createUriCsr', () => {
  it('makes a request openssl verifies, with the URI as its only, critical SAN and an empty subject', async () => {
    const pem = await createUriCsr(await generateKeys(), IDENTITY);
    const text = openssl(['req', '-noout', '-text', '-verify'], pem);
    assert.match(text, /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/bookinfo-productpage\s/);
    assert.match(text, /Subject:\s*\n/);
    assert.match(text, /ecdsa-with-SHA256/);
  });

  it('passes the CA parser and signature check, which reads back the same SAN', async () => {
    const csr = await readCsr(await createUriCsr(await generateKeys(), IDENTITY));
    assert.deepEqual(csr.uriSans, [IDENTITY]);
  });

  it('signs with the hash that matches a P-384 key and with RSA', async () => {
    const p384 = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify'])) as CryptoKeyPair;
    assert.match(openssl(['req', '-noout', '-text', '-verify'], await createUriCsr(p384, IDENTITY)), /ecdsa-with-SHA384/);
    const rsa = (await webcrypto.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
    const csr = await readCsr(await createUriCsr(rsa, IDENTITY));
    assert.deepEqual(csr.uriSans, [IDENTITY]);
  });

  it('encodes long values with multi-byte lengths (a 300-character URI)', async () => {
    const long = `spiffe://cluster.local/ns/default/sa/${'a'.repeat(300)}`;
    assert.deepEqual((await readCsr(await createUriCsr(await generateKeys(), long))).uriSans, [long]);
  });

  it('refuses a URI that is not printable ASCII', async () => {
    await assert.rejects(createUriCsr(await generateKeys(), 'spiffe://cluster.local/ns/a b'), /not printable ASCII/);
    await assert.rejects(createUriCsr(await generateKeys(), 'spiffe://cluster.local/ns/ü'), /not printable ASCII/);
  });
});

describe('DER object identifiers', () => {
  it('encodes arcs above 127 in base-128', () => {
    assert.equal(oid('1.2.840.10045.4.3.2').toString('hex'), '06082a8648ce3d040302');
    assert.equal(oid('2.5.29.17').toString('hex'), '0603551d11');
    assert.throws(() => oid('1.x'), /non-numeric/);
  });
});

describe('certificate SANs from node', () => {
  it('reads URI SANs of an issued certificate among DNS and IP names', async () => {
    const ca = await createRootCa('test root');
    const leaf = await issueLeaf(ca, { commonName: 'x', dnsNames: ['a.example'], ipAddresses: ['198.18.0.1'], uris: [IDENTITY, 'spiffe://cluster.local/ns/x/sa/y'] });
    assert.deepEqual(certificateUriSans(new X509Certificate(leaf.certPem)), [IDENTITY, 'spiffe://cluster.local/ns/x/sa/y']);
  });

  it('parses values node quotes because they hold a comma or a quote', () => {
    assert.deepEqual(subjectAltNames('DNS:a.example, URI:"spiffe://td/ns/a, b", URI:"x\\"y", IP Address:198.18.0.1'), [
      { type: 'DNS', value: 'a.example' },
      { type: 'URI', value: 'spiffe://td/ns/a, b' },
      { type: 'URI', value: 'x"y' },
      { type: 'IP Address', value: '198.18.0.1' },
    ]);
    assert.deepEqual(subjectAltNames(''), []);
  });
});
