// Deterministic layer tarballs: entries sorted by path, one fixed mtime, numeric owners; gzip and both digests in one pass.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir, readlink, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';

/** One entry of a layer, by its path inside the image (no leading or trailing slash). */
export interface LayerEntry {
  path: string;
  kind: 'dir' | 'file' | 'symlink' | 'hardlink' | 'fifo';
  /** Permission bits, setuid/setgid/sticky included. */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files: the host file to copy, or the content itself. */
  source?: string;
  content?: Buffer;
  size?: number;
  /** Symlinks: the target as written; hard links: the image path of the first link. */
  linkname?: string;
  /** Hard-link detection while collecting ("dev:ino"). */
  inode?: string;
}

export interface CollectOptions {
  /** Force these owners (files of the ambit package); default: the numeric owners on disk (the Debian root). */
  owner?: { uid: number; gid: number };
  /** Relative paths (inside the collected tree) to leave out; a directory's contents go with it. */
  exclude?: (relative: string, isDir: boolean) => boolean;
}

/** Collects a host directory as layer entries under `prefix` (e.g. "opt/ambit"; "" for a root filesystem). */
export async function collectTree(hostDir: string, prefix: string, opts: CollectOptions = {}): Promise<LayerEntry[]> {
  const out: LayerEntry[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const host = join(dir, name);
      const relative = rel ? `${rel}/${name}` : name;
      const st = await lstat(host);
      if (opts.exclude?.(relative, st.isDirectory())) continue;
      const path = prefix ? `${prefix}/${relative}` : relative;
      const uid = opts.owner?.uid ?? st.uid;
      const gid = opts.owner?.gid ?? st.gid;
      const mode = st.mode & 0o7777;
      if (st.isDirectory()) {
        out.push({ path, kind: 'dir', mode, uid, gid });
        await walk(host, relative);
      } else if (st.isSymbolicLink()) {
        out.push({ path, kind: 'symlink', mode, uid, gid, linkname: await readlink(host) });
      } else if (st.isFile()) {
        out.push({ path, kind: 'file', mode, uid, gid, source: host, size: st.size, inode: st.nlink > 1 ? `${st.dev}:${st.ino}` : undefined });
      } else if (st.isFIFO()) {
        out.push({ path, kind: 'fifo', mode, uid, gid });
      }
      // Device nodes and sockets are left out: runtimes give a container its own /dev.
    }
  };
  await walk(hostDir, '');
  return out;
}

/** Parent directories an entry list needs (e.g. "opt", "opt/ambit"), root-owned 0755. */
export function parentDirs(...paths: string[]): LayerEntry[] {
  const dirs = new Set<string>();
  for (const p of paths) {
    const parts = p.split('/');
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  return [...dirs].map((path) => ({ path, kind: 'dir', mode: 0o755, uid: 0, gid: 0 }));
}

const byPath = (a: LayerEntry, b: LayerEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/** Sorts by path, drops duplicate paths (the last given wins) and turns later links to one inode into hard links. */
export function normalizeEntries(entries: LayerEntry[]): LayerEntry[] {
  const unique = new Map<string, LayerEntry>();
  for (const e of entries) unique.set(e.path, e);
  const sorted = [...unique.values()].sort(byPath);
  const firstOfInode = new Map<string, string>();
  return sorted.map((e) => {
    if (e.kind !== 'file' || !e.inode) return e;
    const first = firstOfInode.get(e.inode);
    if (first === undefined) {
      firstOfInode.set(e.inode, e.path);
      return e;
    }
    return { path: e.path, kind: 'hardlink', mode: e.mode, uid: e.uid, gid: e.gid, linkname: first };
  });
}

/** What a written layer is: the gzip blob's digest and size, and the uncompressed tar's (the diff_id). */
export interface LayerBlob {
  digest: string;
  size: number;
  diffId: string;
  uncompressedSize: number;
}

class Measure extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

const TYPE = { dir: 'directory', file: 'file', symlink: 'symlink', hardlink: 'link', fifo: 'fifo' } as const;

async function addEntry(pack: tar.Pack, e: LayerEntry, mtime: Date): Promise<void> {
  const header: tar.Headers = {
    name: e.kind === 'dir' ? `${e.path}/` : e.path,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    uname: '',
    gname: '',
    mtime,
    type: TYPE[e.kind],
    linkname: e.linkname,
    size: 0,
  };
  if (e.kind !== 'file') {
    await new Promise<void>((resolve, reject) => pack.entry(header, (err) => (err ? reject(err) : resolve())));
    return;
  }
  if (e.content) {
    await new Promise<void>((resolve, reject) => pack.entry({ ...header, size: e.content!.length }, e.content!, (err) => (err ? reject(err) : resolve())));
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const sink = pack.entry({ ...header, size: e.size ?? 0 }, (err) => (err ? reject(err) : resolve()));
    createReadStream(e.source!)
      .on('error', (err) => {
        sink.destroy(err);
        reject(err);
      })
      .pipe(sink);
  });
}

/** Writes entries as a gzipped tar to `file` (atomically) with every mtime set to `mtime`. */
export async function writeLayer(entries: LayerEntry[], file: string, mtime: Date): Promise<LayerBlob> {
  const pack = tar.pack();
  const raw = new Measure();
  const gz = new Measure();
  const tmp = `${file}.tmp-${process.pid}`;
  const feed = (async () => {
    try {
      for (const e of normalizeEntries(entries)) await addEntry(pack, e, mtime);
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
      throw err;
    }
  })();
  try {
    // Level 6 (zlib's default) keeps gzip deterministic for one zlib and about 3× faster than 9.
    await Promise.all([pipeline(pack, raw, createGzip({ level: 6 }), gz, createWriteStream(tmp)), feed]);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return { digest: gz.digest(), size: gz.bytes, diffId: raw.digest(), uncompressedSize: raw.bytes };
}
