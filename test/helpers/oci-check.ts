// Reads an OCI image archive back and checks it the way importers do: digests, sizes, diff_ids, manifest.json; returns each image's files.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';

interface BlobInfo {
  size: number;
  digest: string;
  /** JSON blobs (small): the bytes. */
  content?: Buffer;
  /** Layers: sha256 of the uncompressed tar, and its entries. */
  diffId?: string;
  entries?: Map<string, { type: string; linkname?: string; mode: number }>;
}

export interface CheckedImage {
  ref: string;
  config: { config: { Entrypoint?: string[]; Cmd?: string[]; Env?: string[]; WorkingDir?: string }; rootfs: { diff_ids: string[] } };
  /** Files of the image's root filesystem: the layers applied in order. */
  files: Map<string, { type: string; linkname?: string; mode: number }>;
  layerDigests: string[];
}

async function readLayer(entry: NodeJS.ReadableStream): Promise<{ diffId: string; entries: BlobInfo['entries'] }> {
  const hash = createHash('sha256');
  const entries: NonNullable<BlobInfo['entries']> = new Map();
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    entries.set(header.name.replace(/\/$/, ''), { type: header.type ?? 'file', linkname: header.linkname ?? undefined, mode: header.mode ?? 0 });
    stream.on('end', next);
    stream.resume();
  });
  const tee = new Writable({
    write(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      if (!extract.write(chunk)) extract.once('drain', () => cb());
      else cb();
    },
    final(cb) {
      extract.end();
      extract.once('finish', () => cb());
    },
  });
  await pipeline(entry, createGunzip(), tee);
  return { diffId: `sha256:${hash.digest('hex')}`, entries };
}

/** Parses the archive and asserts its consistency; returns the images it names. */
export async function checkOciArchive(file: string): Promise<CheckedImage[]> {
  const files = new Map<string, BlobInfo>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const name = header.name;
      if (header.type === 'directory') {
        stream.on('end', next);
        stream.resume();
        return;
      }
      const hash = createHash('sha256');
      const chunks: Buffer[] = [];
      let size = 0;
      // A layer is gzip (1f 8b); read it as a layer in parallel with hashing.
      let layer: Promise<{ diffId: string; entries: BlobInfo['entries'] }> | undefined;
      let layerFeed: PassThrough | undefined;
      stream.on('data', (chunk: Buffer) => {
        if (size === 0 && chunk[0] === 0x1f && chunk[1] === 0x8b) {
          layerFeed = new PassThrough();
          layer = readLayer(layerFeed);
        }
        size += chunk.length;
        hash.update(chunk);
        if (layerFeed) {
          if (!layerFeed.write(chunk)) {
            stream.pause();
            layerFeed.once('drain', () => stream.resume());
          }
        }
        else if (size < 1e6) chunks.push(chunk);
      });
      stream.on('end', () => {
        layerFeed?.end();
        void (layer ?? Promise.resolve(undefined)).then((l) => {
          files.set(name, { size, digest: `sha256:${hash.digest('hex')}`, content: layer ? undefined : Buffer.concat(chunks), diffId: l?.diffId, entries: l?.entries });
          next();
        }, reject);
      });
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  await pipeline(createReadStream(file), extract);
  await done;

  const jsonOf = <T>(name: string): T => {
    const f = files.get(name);
    assert.ok(f?.content, `${file}: ${name} is missing`);
    return JSON.parse(f.content.toString('utf8')) as T;
  };
  const blob = (desc: { digest: string; size: number }, what: string): BlobInfo => {
    const b = files.get(`blobs/sha256/${desc.digest.slice('sha256:'.length)}`);
    assert.ok(b, `${what}: blob ${desc.digest} is missing`);
    assert.equal(b.digest, desc.digest, `${what}: the blob's content does not hash to its name`);
    assert.equal(b.size, desc.size, `${what}: descriptor size ${desc.size} != blob size ${b.size}`);
    return b;
  };
  // Every blob's name is its digest.
  for (const [name, info] of files) if (name.startsWith('blobs/sha256/')) assert.equal(`sha256:${name.slice(13)}`, info.digest, `${name}: content hash differs`);

  assert.deepEqual(jsonOf('oci-layout'), { imageLayoutVersion: '1.0.0' });
  type Desc = { mediaType: string; digest: string; size: number; annotations?: Record<string, string> };
  const index = jsonOf<{ schemaVersion: number; mediaType: string; manifests: Desc[] }>('index.json');
  assert.equal(index.schemaVersion, 2);
  assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
  const docker = jsonOf<{ Config: string; RepoTags: string[]; Layers: string[] }[]>('manifest.json');
  assert.equal(docker.length, index.manifests.length, 'manifest.json has one entry per image');

  const images: CheckedImage[] = [];
  index.manifests.forEach((desc, i) => {
    const ref = desc.annotations?.['org.opencontainers.image.ref.name'];
    assert.ok(ref, `index.json manifest ${i} has no org.opencontainers.image.ref.name`);
    assert.equal(desc.annotations?.['io.containerd.image.name'], ref);
    assert.equal(desc.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    const manifest = JSON.parse(blob(desc, ref).content!.toString('utf8')) as { schemaVersion: number; config: Desc; layers: Desc[] };
    assert.equal(manifest.schemaVersion, 2);
    assert.equal(manifest.config.mediaType, 'application/vnd.oci.image.config.v1+json');
    const config = JSON.parse(blob(manifest.config, `${ref} config`).content!.toString('utf8')) as CheckedImage['config'] & { os: string; architecture: string };
    assert.equal(config.os, 'linux');
    assert.equal(config.rootfs.diff_ids.length, manifest.layers.length);
    const merged: CheckedImage['files'] = new Map();
    manifest.layers.forEach((l, j) => {
      assert.equal(l.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      const b = blob(l, `${ref} layer ${j}`);
      assert.equal(config.rootfs.diff_ids[j], b.diffId, `${ref} layer ${j}: diff_id is not the uncompressed tar's digest`);
      for (const [p, e] of b.entries!) merged.set(p, e);
    });
    const d = docker[i]!;
    assert.equal(d.Config, `blobs/sha256/${manifest.config.digest.slice(7)}`, `manifest.json ${i}: Config`);
    assert.deepEqual(d.Layers, manifest.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`), `manifest.json ${i}: Layers`);
    assert.deepEqual(d.RepoTags, [ref.replace(/^docker\.io\//, '')], `manifest.json ${i}: RepoTags`);
    images.push({ ref, config, files: merged, layerDigests: manifest.layers.map((l) => l.digest) });
  });
  return images;
}

/** Follows symlinks inside an image's file map; returns the final path if it exists as a file. */
export function resolveInImage(files: CheckedImage['files'], path: string): string | undefined {
  let parts = path.replace(/^\/+/, '').split('/');
  for (let hops = 0; hops < 40; hops++) {
    let changed = false;
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      const e = files.get(prefix);
      if (!e) return undefined;
      if (e.type === 'symlink' && e.linkname) {
        const target = e.linkname.startsWith('/') ? e.linkname.slice(1).split('/') : [...parts.slice(0, i - 1), ...e.linkname.split('/')];
        const norm: string[] = [];
        for (const t of [...target, ...parts.slice(i)]) {
          if (t === '..') norm.pop();
          else if (t && t !== '.') norm.push(t);
        }
        parts = norm;
        changed = true;
        break;
      }
    }
    if (!changed) return files.get(parts.join('/'))?.type === 'file' ? parts.join('/') : undefined;
  }
  return undefined;
}
