// Runs inside a lab network namespace: many HBONE CONNECTs, each with a random `baggage` (and
// optionally a random `x-forwarded-network`), over a few mTLS HTTP/2 sessions to a ztunnel; prints
// the response statuses as one JSON line.
// Usage: node --import tsx hbone-flood.ts '<json FloodRequest>'
import { randomBytes } from 'node:crypto';
import { connect as http2Connect, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';

interface FloodRequest {
  host: string;
  port: number;
  certPem: string;
  keyPem: string;
  caPem: string;
  /** `:authority` of every CONNECT (`podIP:port`). */
  authority: string;
  connects: number;
  sessions: number;
  /** CONNECTs in flight per session. */
  inFlight: number;
  /** Also send a random `x-forwarded-network` with every CONNECT. */
  randomNetwork?: boolean;
  /** Prefix of every random value, so that a reader can look for them (in /metrics, say). */
  valuePrefix?: string;
}

function openSession(req: FloodRequest): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: req.host, port: req.port, cert: req.certPem, key: req.keyPem, ca: req.caPem, ALPNProtocols: ['h2'], servername: '', checkServerIdentity: () => undefined });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      const session = http2Connect(`https://${req.host}:${req.port}`, { createConnection: () => socket });
      session.on('error', () => undefined);
      resolve(session);
    });
  });
}

function randomHeaders(req: FloodRequest): Record<string, string> {
  const random = () => `${req.valuePrefix ?? ''}${randomBytes(12).toString('hex')}`;
  const baggage = `k8s.cluster.name=${random()},k8s.namespace.name=${random()},k8s.deployment.name=${random()},service.name=${random()},service.version=${random()}`;
  return req.randomNetwork ? { baggage, 'x-forwarded-network': random() } : { baggage };
}

function connectOnce(session: ClientHttp2Session, req: FloodRequest): Promise<string> {
  return new Promise((resolve) => {
    let stream;
    try {
      stream = session.request({ ':method': 'CONNECT', ':authority': req.authority, ...randomHeaders(req) });
    } catch (err) {
      resolve(`error: ${(err as Error).message}`);
      return;
    }
    const timer = setTimeout(() => (stream.close(), resolve('timeout')), 10_000);
    stream.on('response', (headers) => {
      clearTimeout(timer);
      resolve(String(headers[':status']));
      stream.close();
    });
    stream.on('error', () => (clearTimeout(timer), resolve('stream error')));
    stream.on('close', () => (clearTimeout(timer), resolve(`closed (rst ${stream.rstCode})`)));
  });
}

async function flood(req: FloodRequest): Promise<object> {
  const statuses: Record<string, number> = {};
  let next = 0;
  const started = Date.now();
  const runSession = async () => {
    let session = await openSession(req);
    const worker = async () => {
      while (next < req.connects) {
        next++;
        if (session.closed || session.destroyed) session = await openSession(req);
        const status = await connectOnce(session, req);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: req.inFlight }, worker));
    session.close();
  };
  await Promise.all(Array.from({ length: req.sessions }, runSession));
  return { statuses, seconds: (Date.now() - started) / 1000 };
}

const request = JSON.parse(process.argv[2] ?? '{}') as FloodRequest;
flood(request).then(
  // Exit once the line is out: sessions the server keeps open (rejected streams linger) would hold the process.
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0)),
  (err: Error) => process.stdout.write(`${JSON.stringify({ error: err.message })}\n`, () => process.exit(1)),
);
