import { fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import type { ServiceDefinition } from '@grpc/grpc-js';
import {
  DeltaDiscoveryRequestSchema,
  DeltaDiscoveryResponseSchema,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
} from '../gen/envoy/discovery/discovery_pb.js';
import {
  IstioCertificateRequestSchema,
  IstioCertificateResponseSchema,
  type IstioCertificateRequest,
  type IstioCertificateResponse,
} from '../gen/istio/ca/ca_pb.js';

/** Serializer pair for grpc-js built from a protobuf-es schema. */
function codec<D extends DescMessage>(schema: D) {
  return {
    serialize: (message: MessageShape<D>): Buffer => Buffer.from(toBinary(schema, message)),
    deserialize: (bytes: Buffer): MessageShape<D> => fromBinary(schema, bytes),
  };
}

const deltaRequest = codec(DeltaDiscoveryRequestSchema);
const deltaResponse = codec(DeltaDiscoveryResponseSchema);
const certRequest = codec(IstioCertificateRequestSchema);
const certResponse = codec(IstioCertificateResponseSchema);

export const aggregatedDiscoveryService = {
  deltaAggregatedResources: {
    path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
    requestStream: true,
    responseStream: true,
    requestSerialize: deltaRequest.serialize,
    requestDeserialize: deltaRequest.deserialize,
    responseSerialize: deltaResponse.serialize,
    responseDeserialize: deltaResponse.deserialize,
  },
} satisfies ServiceDefinition<{ deltaAggregatedResources: (call: never) => void }>;

export const istioCertificateService = {
  createCertificate: {
    path: '/istio.v1.auth.IstioCertificateService/CreateCertificate',
    requestStream: false,
    responseStream: false,
    requestSerialize: certRequest.serialize,
    requestDeserialize: certRequest.deserialize,
    responseSerialize: certResponse.serialize,
    responseDeserialize: certResponse.deserialize,
  },
} satisfies ServiceDefinition<{ createCertificate: (call: never, cb: never) => void }>;

export type { DeltaDiscoveryRequest, DeltaDiscoveryResponse, IstioCertificateRequest, IstioCertificateResponse };

/** gRPC metadata keys the control plane reads from every caller. */
export const CLUSTER_ID_HEADER = 'clusterid';
export const AUTHORIZATION_HEADER = 'authorization';
