import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand } from './exec.js';

/** Throwaway PKI for the native tunnels: one CA, a server and a client certificate (ECDSA P-256). */
export interface TunnelCerts {
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Certificate and key in one file, as HAProxy's `crt` wants it. */
  serverPem: string;
  clientCert: string;
  clientKey: string;
  clientPem: string;
  /** Names in the certificates' subjectAltName, which the peers check. */
  serverName: string;
  clientName: string;
}

async function openssl(args: string[]): Promise<void> {
  const r = await runCommand(['openssl', ...args], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.trim()}`);
}

async function issue(dir: string, name: string, usage: 'serverAuth' | 'clientAuth', ca: { cert: string; key: string }) {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=DNS:${name}\nextendedKeyUsage=${usage}\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n`);
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext, '-out', cert]);
  return { cert, key };
}

export async function generateTunnelCerts(dir: string): Promise<TunnelCerts> {
  const ca = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  await openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', ca.key, '-out', ca.cert,
    '-days', '2', '-sha256', '-subj', '/CN=ambit-bench-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const serverName = 'server.bench';
  const clientName = 'client.bench';
  const server = await issue(dir, serverName, 'serverAuth', ca);
  const client = await issue(dir, clientName, 'clientAuth', ca);
  const pem = (c: { cert: string; key: string }, name: string) => {
    const file = join(dir, `${name}.pem`);
    writeFileSync(file, readFileSync(c.cert, 'utf8') + readFileSync(c.key, 'utf8'), { mode: 0o600 });
    return file;
  };
  return {
    caCert: ca.cert,
    serverCert: server.cert,
    serverKey: server.key,
    serverPem: pem(server, serverName),
    clientCert: client.cert,
    clientKey: client.key,
    clientPem: pem(client, clientName),
    serverName,
    clientName,
  };
}
