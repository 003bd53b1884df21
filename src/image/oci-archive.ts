// OCI image archives: a tar of an OCI image layout (oci-layout, index.json, blobs/sha256/…) with Docker's manifest.json beside it.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { CachedLayer } from './cache.js';
import { familiarName, type ImageDef } from './catalog.js';

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;
/** containerd (ctr import, kind load, docker with the containerd store) names the image from this annotation. */
export const CONTAINERD_NAME = 'io.containerd.image.name';
export const REF_NAME = 'org.opencontainers.image.ref.name';

export interface ImageInput {
  def: ImageDef;
  layers: CachedLayer[];
}

interface Blob {
  digest: string;
  size: number;
  content?: Buffer;
  file?: string;
}

export interface ArchivePlan {
  ociLayout: Buffer;
  index: Buffer;
  dockerManifest: Buffer;
  blobs: Blob[];
  images: { ref: string; manifestDigest: string; configDigest: string }[];
  /** Size of the tar this plan writes, in bytes. */
  archiveSize: number;
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const blobPath = (digest: string) => `blobs/sha256/${digest.slice('sha256:'.length)}`;

/** Lays out the images' configs, manifests and index (all content-addressed; layers shared between images once). */
export function planArchive(images: ImageInput[], opts: { created: Date; architecture: string }): ArchivePlan {
  const created = opts.created.toISOString().replace(/\.000Z$/, 'Z');
  const blobs = new Map<string, Blob>();
  const index: { mediaType: string; digest: string; size: number; platform: { architecture: string; os: string }; annotations: Record<string, string> }[] = [];
  const docker: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  const refs: ArchivePlan['images'] = [];
  for (const { def, layers } of images) {
    const config = json({
      created,
      architecture: opts.architecture,
      os: 'linux',
      config: def.config,
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((l) => ({ created, created_by: l.createdBy, comment: `ambit image build: ${l.name} layer` })),
    });
    const configDigest = digestOf(config);
    blobs.set(configDigest, { digest: configDigest, size: config.length, content: config });
    for (const l of layers) blobs.set(l.digest, { digest: l.digest, size: l.size, file: l.file });
    const manifest = json({
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: configDigest, size: config.length },
      layers: layers.map((l) => ({ mediaType: MEDIA.layer, digest: l.digest, size: l.size })),
    });
    const manifestDigest = digestOf(manifest);
    blobs.set(manifestDigest, { digest: manifestDigest, size: manifest.length, content: manifest });
    // The full name as ref.name too: several sample images share a tag (1.20.3), and OCI's ref grammar allows it.
    index.push({
      mediaType: MEDIA.manifest,
      digest: manifestDigest,
      size: manifest.length,
      platform: { architecture: opts.architecture, os: 'linux' },
      annotations: { [CONTAINERD_NAME]: def.ref, [REF_NAME]: def.ref },
    });
    docker.push({ Config: blobPath(configDigest), RepoTags: [familiarName(def.ref)], Layers: layers.map((l) => blobPath(l.digest)) });
    refs.push({ ref: def.ref, manifestDigest, configDigest });
  }
  const plan: Omit<ArchivePlan, 'archiveSize'> = {
    ociLayout: json({ imageLayoutVersion: '1.0.0' }),
    index: json({ schemaVersion: 2, mediaType: MEDIA.index, manifests: index }),
    dockerManifest: json(docker),
    blobs: [...blobs.values()].sort((a, b) => (a.digest < b.digest ? -1 : 1)),
    images: refs,
  };
  const entry = (size: number) => 512 + Math.ceil(size / 512) * 512;
  const archiveSize =
    entry(plan.ociLayout.length) + entry(plan.index.length) + entry(plan.dockerManifest.length) + 2 * 512 + plan.blobs.reduce((n, b) => n + entry(b.size), 0) + 1024;
  return { ...plan, archiveSize };
}

const EPOCH = new Date(0);

function add(pack: tar.Pack, name: string, content: Buffer | undefined, size: number, file?: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const header: tar.Headers = { name, size, mode: name.endsWith('/') ? 0o755 : 0o644, uid: 0, gid: 0, uname: '', gname: '', mtime: EPOCH, type: name.endsWith('/') ? 'directory' : 'file' };
    const done = (err?: Error | null) => (err ? reject(err) : resolve());
    if (!file) {
      pack.entry(header, content ?? Buffer.alloc(0), done);
      return;
    }
    const sink = pack.entry(header, done);
    createReadStream(file)
      .on('error', (err) => {
        sink.destroy(err);
        reject(err);
      })
      .pipe(sink);
  });
}

/** Writes the archive to `file` (through a temporary file and a rename). */
export async function writeArchive(plan: ArchivePlan, file: string): Promise<void> {
  const pack = tar.pack();
  const tmp = `${file}.tmp-${process.pid}`;
  const feed = (async () => {
    try {
      await add(pack, 'oci-layout', plan.ociLayout, plan.ociLayout.length);
      await add(pack, 'index.json', plan.index, plan.index.length);
      await add(pack, 'manifest.json', plan.dockerManifest, plan.dockerManifest.length);
      await add(pack, 'blobs/', undefined, 0);
      await add(pack, 'blobs/sha256/', undefined, 0);
      for (const b of plan.blobs) await add(pack, blobPath(b.digest), b.content, b.size, b.file);
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
      throw err;
    }
  })();
  try {
    await Promise.all([pipeline(pack, createWriteStream(tmp)), feed]);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** True when `file` is the archive `plan` describes: same size and the same index.json (everything else is named by digest). */
export async function archiveUpToDate(plan: ArchivePlan, file: string): Promise<boolean> {
  try {
    if ((await stat(file)).size !== plan.archiveSize) return false;
    // oci-layout and index.json are the first two entries: their headers and content fit in the first blocks.
    const head = Buffer.alloc(512 * 4 + plan.index.length + plan.ociLayout.length);
    const fh = await open(file, 'r');
    try {
      await fh.read(head, 0, head.length, 0);
    } finally {
      await fh.close();
    }
    const start = 512 + Math.ceil(plan.ociLayout.length / 512) * 512 + 512;
    return head.subarray(start, start + plan.index.length).equals(plan.index);
  } catch {
    return false;
  }
}
