// HBONE's TLS and HTTP/2 parameters (windows, frame size, stream limit) and the client's TLS contexts per identity.
import type { Settings } from 'node:http2';
import { createSecureContext, type SecureContext } from 'node:tls';

import type { WorkloadCertificate } from '../ztunnel/identity/types.js';

export const HBONE_ALPN = ['h2'];
export const HBONE_TLS_MIN_VERSION = 'TLSv1.3' as const;

/**
 * Flow-control windows sized for bulk data: the 64 KiB HTTP/2 defaults cap a tunnel at one
 * window per round trip.
 */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
export const CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;
/** Largest DATA frame we accept; bigger frames mean fewer frame headers and callbacks per byte. */
export const MAX_FRAME_BYTES = 256 * 1024;
/** nghttp2's budget (MiB) for buffered, unacknowledged data per session; must exceed the windows. */
export const MAX_SESSION_MEMORY_MIB = 64;
export const MAX_STREAMS_PER_SESSION = 100;

export const HBONE_HTTP2_SETTINGS: Settings = {
  initialWindowSize: STREAM_WINDOW_BYTES,
  maxFrameSize: MAX_FRAME_BYTES,
  enablePush: false,
};

/**
 * One SecureContext per identity, rebuilt only when the certificate or the roots change
 * (building one parses PEM and costs about a millisecond).
 */
export class SecureContextCache {
  private readonly entries = new Map<string, { certChainPem: string; rootsPem: string; context: SecureContext }>();

  get(certificate: WorkloadCertificate, rootsPem: string): SecureContext {
    const cached = this.entries.get(certificate.identity);
    if (cached && cached.certChainPem === certificate.certChainPem && cached.rootsPem === rootsPem) return cached.context;
    const context = createSecureContext({
      cert: certificate.certChainPem,
      key: certificate.keyPem,
      ca: rootsPem,
      minVersion: HBONE_TLS_MIN_VERSION,
    });
    this.entries.set(certificate.identity, { certChainPem: certificate.certChainPem, rootsPem, context });
    return context;
  }

  /** Drops the contexts of identities not in `identities` (workloads that left this node). */
  retain(identities: ReadonlySet<string>): void {
    for (const identity of this.entries.keys()) if (!identities.has(identity)) this.entries.delete(identity);
  }

  get size(): number {
    return this.entries.size;
  }
}
