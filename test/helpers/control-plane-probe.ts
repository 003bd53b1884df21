// Runs inside a lab network namespace: calls the control plane's CA (CreateCertificate) and xDS
// (DeltaAggregatedResources) with given tokens and prints, as one JSON line, what each call returned.
// Usage: node --import tsx control-plane-probe.ts '<json ProbeRequest>'
import { create } from '@bufbuild/protobuf';
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { aggregatedDiscoveryService, AUTHORIZATION_HEADER, CLUSTER_ID_HEADER, istioCertificateService } from '../../src/api/grpc.js';
import { ADDRESS_TYPE_URL } from '../../src/api/resources.js';
import { DeltaDiscoveryRequestSchema } from '../../src/gen/envoy/discovery/discovery_pb.js';
import { IstioCertificateRequestSchema } from '../../src/gen/istio/ca/ca_pb.js';
import { generateKeys } from '../../src/util/keys.js';
import { createUriCsr } from '../../src/util/uri-csr.js';

interface ProbeRequest {
  address: string;
  serverName: string;
  rootPem: string;
  clusterId: string;
  identity: string;
  /** Each token is tried once on the CA and once on xDS. */
  tokens?: string[];
  /** Additionally: this many CA calls, each with a different random JWT-shaped token (a flood). */
  garbageCalls?: number;
  /** Concurrent calls of the flood. */
  concurrency?: number;
}

interface Outcome {
  code: string;
  details: string;
}

function channel(req: ProbeRequest): Client {
  return new Client(req.address, credentials.createSsl(Buffer.from(req.rootPem)), { 'grpc.ssl_target_name_override': req.serverName, 'grpc.default_authority': req.serverName });
}

function metadataFor(token: string, clusterId: string): Metadata {
  const metadata = new Metadata();
  metadata.set(AUTHORIZATION_HEADER, `Bearer ${token}`);
  metadata.set(CLUSTER_ID_HEADER, clusterId);
  return metadata;
}

function callCa(client: Client, csr: string, token: string, clusterId: string): Promise<Outcome> {
  const method = istioCertificateService.createCertificate;
  const request = create(IstioCertificateRequestSchema, { csr, validityDuration: 3600n });
  return new Promise((resolve) => {
    client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, request, metadataFor(token, clusterId), { deadline: Date.now() + 15_000 }, (err: ServiceError | null) =>
      resolve(err ? { code: status[err.code] ?? String(err.code), details: err.details } : { code: 'OK', details: 'certificate issued' }),
    );
  });
}

function callXds(client: Client, token: string, clusterId: string): Promise<Outcome> {
  const method = aggregatedDiscoveryService.deltaAggregatedResources;
  const stream = client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, metadataFor(token, clusterId), { deadline: Date.now() + 15_000 });
  return new Promise((resolve) => {
    stream.on('data', () => {
      resolve({ code: 'OK', details: 'got a response' });
      stream.cancel();
    });
    stream.on('error', (err: ServiceError) => resolve({ code: status[err.code] ?? String(err.code), details: err.details }));
    stream.write(create(DeltaDiscoveryRequestSchema, { typeUrl: ADDRESS_TYPE_URL }));
  });
}

function garbageToken(): string {
  const part = () => Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url');
  return `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: part() })).toString('base64url')}.${part()}`;
}

async function probe(req: ProbeRequest): Promise<object> {
  const client = channel(req);
  const csr = await createUriCsr(await generateKeys(), req.identity);
  const results: Array<{ ca: Outcome; xds: Outcome }> = [];
  for (const token of req.tokens ?? []) results.push({ ca: await callCa(client, csr, token, req.clusterId), xds: await callXds(client, token, req.clusterId) });
  const flood: Record<string, number> = {};
  let next = 0;
  const worker = async () => {
    while (next < (req.garbageCalls ?? 0)) {
      next++;
      const outcome = await callCa(client, csr, garbageToken(), req.clusterId);
      flood[outcome.code] = (flood[outcome.code] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: req.concurrency ?? 32 }, worker));
  client.close();
  return { results, flood };
}

const request = JSON.parse(process.argv[2] ?? '{}') as ProbeRequest;
probe(request).then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (err: Error) => process.stdout.write(`${JSON.stringify({ error: err.message })}\n`),
);
