// The layer cache under ~/.cache/ambit/images/: one directory per layer, named by the hash of its inputs.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { normalizeEntries, type LayerBlob, type LayerEntry } from './layer-tar.js';

/** `$AMBIT_CACHE_DIR/images`, else `~/.cache/ambit/images` (the lab's cache root). */
export function defaultCacheDir(): string {
  return join(process.env.AMBIT_CACHE_DIR ?? join(homedir(), '.cache', 'ambit'), 'images');
}

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Hash of what a layer would contain (paths, modes, owners, link targets, file contents), without writing it. */
export async function hashEntries(entries: LayerEntry[]): Promise<string> {
  const hash = createHash('sha256');
  for (const e of normalizeEntries(entries)) {
    const content = e.kind !== 'file' ? '' : e.content ? sha256(e.content) : await fileSha256(e.source!);
    hash.update(`${e.path}\0${e.kind}\0${e.mode}\0${e.uid}\0${e.gid}\0${e.linkname ?? ''}\0${content}\n`);
  }
  return hash.digest('hex');
}

export interface CachedLayer extends LayerBlob {
  /** What the layer is, for messages: "base", "node", "deps", "app", "curl-base". */
  name: string;
  key: string;
  /** The gzipped tar. */
  file: string;
  /** What made it, for the image history. */
  createdBy: string;
  /** Seconds it took to build, when it was built now; undefined when it came from the cache. */
  builtIn?: number;
}

export function layerDir(cacheDir: string, name: string, key: string): string {
  return join(cacheDir, 'layers', `${name}-${key.slice(0, 24)}`);
}

/** The cached layer for this key, if it is complete (its blob present with the recorded size). */
export async function findLayer(cacheDir: string, name: string, key: string): Promise<CachedLayer | undefined> {
  const dir = layerDir(cacheDir, name, key);
  try {
    const meta = JSON.parse(await readFile(join(dir, 'layer.json'), 'utf8')) as CachedLayer;
    if (meta.key !== key) return undefined;
    const file = join(dir, 'layer.tar.gz');
    if ((await stat(file)).size !== meta.size) return undefined;
    return { ...meta, file, builtIn: undefined };
  } catch {
    return undefined;
  }
}

/** Builds a layer into the cache with `make` (which writes the gzipped tar to the file it is given). */
export async function storeLayer(
  cacheDir: string,
  name: string,
  key: string,
  createdBy: string,
  make: (file: string, dir: string) => Promise<LayerBlob>,
): Promise<CachedLayer> {
  const dir = layerDir(cacheDir, name, key);
  const started = process.hrtime.bigint();
  await rm(dir, { recursive: true, force: true });
  const tmpDir = `${dir}.tmp-${process.pid}`;
  await rm(tmpDir, { recursive: true, force: true });
  await mkdir(tmpDir, { recursive: true });
  try {
    const blob = await make(join(tmpDir, 'layer.tar.gz'), tmpDir);
    const meta: CachedLayer = { ...blob, name, key, file: '', createdBy };
    await writeFile(join(tmpDir, 'layer.json'), JSON.stringify(meta, null, 2) + '\n');
    await rename(tmpDir, dir);
    const builtIn = Number(process.hrtime.bigint() - started) / 1e9;
    return { ...meta, file: join(dir, 'layer.tar.gz'), builtIn };
  } catch (err) {
    await rm(tmpDir, { recursive: true, force: true });
    throw err;
  }
}
