// Builds small OCI image archives here (no registry, no Docker): files → one tar layer → oci-layout archive for `ctr images import`.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface ImageFile {
  /** Path inside the image, without a leading slash. Parent directories are added. */
  path: string;
  content: Buffer | string;
  mode?: number;
}

export interface ImageSpec {
  /** Full reference, e.g. "k8s.gcr.io/pause:3.2" or "ambit.local/tiny:1". */
  name: string;
  files: ImageFile[];
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
}

/** One ustar entry; names up to 100 bytes (what these images need). */
function tarEntry(name: string, body: Buffer, mode: number, type: '0' | '5'): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
  const header = Buffer.alloc(512);
  const put = (value: string, offset: number, length: number) => header.write(value, offset, length, 'utf8');
  const octal = (n: number, length: number) => n.toString(8).padStart(length - 1, '0') + '\0';
  put(name, 0, 100);
  put(octal(mode, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(type === '0' ? body.length : 0, 12), 124, 12);
  put(octal(0, 12), 136, 12);
  header.fill(' ', 148, 156);
  put(type, 156, 1);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  let sum = 0;
  for (const byte of header) sum += byte;
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([header, body, pad]);
}

export function tarArchive(entries: Array<{ name: string; body?: Buffer; mode?: number; dir?: boolean }>): Buffer {
  const parts = entries.map((e) => (e.dir ? tarEntry(e.name.endsWith('/') ? e.name : `${e.name}/`, Buffer.alloc(0), e.mode ?? 0o755, '5') : tarEntry(e.name, e.body ?? Buffer.alloc(0), e.mode ?? 0o644, '0')));
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The OCI image layout (oci-layout, index.json, blobs) as one tar, named for containerd by annotation. */
export function buildImageArchive(spec: ImageSpec): Buffer {
  const dirs = new Set<string>();
  for (const f of spec.files) {
    const parts = f.path.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const layer = tarArchive([
    ...[...dirs].sort().map((d) => ({ name: d, dir: true })),
    ...spec.files.map((f) => ({ name: f.path, body: Buffer.isBuffer(f.content) ? f.content : Buffer.from(f.content), mode: f.mode ?? 0o644 })),
  ]);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Entrypoint: spec.entrypoint, Cmd: spec.cmd, Env: spec.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
      rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
    }),
  );
  const tag = spec.name.slice(spec.name.lastIndexOf(':') + 1);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: sha256(manifest),
          size: manifest.length,
          platform: { architecture: 'amd64', os: 'linux' },
          annotations: { 'io.containerd.image.name': spec.name, 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  const blob = (b: Buffer) => ({ name: `blobs/sha256/${sha256(b).slice(7)}`, body: b });
  return tarArchive([
    { name: 'oci-layout', body: Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })) },
    { name: 'index.json', body: index },
    { name: 'blobs', dir: true },
    { name: 'blobs/sha256', dir: true },
    blob(layer),
    blob(config),
    blob(manifest),
  ]);
}

/** The sandbox image: the static pause binary built from the Kubernetes source. */
export function pauseImageArchive(name: string, pauseBinary: string): Buffer {
  return buildImageArchive({ name, files: [{ path: 'pause', content: readFileSync(pauseBinary), mode: 0o755 }], entrypoint: ['/pause'] });
}
