// Runs inside a lab network namespace: speaks HBONE (HTTP/2 over mTLS) to a ztunnel and prints
// what happened as one JSON line. Usage: node --import tsx hbone-probe.ts '<json ProbeRequest>'
import { connect as http2Connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';

interface ProbeRequest {
  host: string;
  port: number;
  certPem: string;
  keyPem: string;
  caPem: string;
  /** `headers`: more request headers (`forwarded`, `baggage`, …), sent as given. */
  requests: Array<{ method: string; authority: string; path?: string; headers?: Record<string, string> }>;
}

interface ProbeResult {
  handshake: string;
  statuses: Array<number | string>;
}

async function probe(req: ProbeRequest): Promise<ProbeResult> {
  const socket = tlsConnect({ host: req.host, port: req.port, cert: req.certPem, key: req.keyPem, ca: req.caPem, ALPNProtocols: ['h2'], servername: '', checkServerIdentity: () => undefined });
  const handshake = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('failed: timeout'), 5000);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      resolve('ok');
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      resolve(`failed: ${err.message}`);
    });
  });
  if (handshake !== 'ok') return { handshake, statuses: [] };
  const session = http2Connect(`https://${req.host}:${req.port}`, { createConnection: () => socket });
  session.on('error', () => undefined);
  const statuses: Array<number | string> = [];
  for (const r of req.requests) {
    statuses.push(
      await new Promise<number | string>((resolve) => {
        const headers: Record<string, string> = { ...r.headers, ':method': r.method, ':authority': r.authority };
        if (r.method !== 'CONNECT') Object.assign(headers, { ':path': r.path ?? '/', ':scheme': 'https' });
        let stream;
        try {
          stream = session.request(headers, { endStream: r.method !== 'CONNECT' });
        } catch (err) {
          resolve(`error: ${(err as Error).message}`);
          return;
        }
        const timer = setTimeout(() => resolve('timeout'), 5000);
        stream.on('response', (h) => {
          clearTimeout(timer);
          resolve(Number(h[':status']));
          stream.close();
        });
        stream.on('error', (err) => {
          clearTimeout(timer);
          resolve(`error: ${err.message}`);
        });
        stream.on('close', () => resolve(`closed (rst ${stream.rstCode})`));
      }),
    );
  }
  session.destroy();
  return { handshake, statuses };
}

const request = JSON.parse(process.argv[2] ?? '{}') as ProbeRequest;
probe(request).then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (err: Error) => process.stdout.write(`${JSON.stringify({ handshake: `failed: ${err.message}`, statuses: [] })}\n`),
);
