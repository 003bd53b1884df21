// `ambit image build`: resolves each layer from the cache or builds it, then writes the OCI archives that are not up to date.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { appEntries, depsEntries, depsKeyInputs, nodeEntries, readPackage, thisPackageDir, type AmbitPackage } from './ambit-layers.js';
import { defaultCacheDir, findLayer, hashEntries, layerDir, sha256, storeLayer, type CachedLayer } from './cache.js';
import { ambitImage, CURL_ENTRYPOINT, sampleImages, type ImageDef, type LayerName } from './catalog.js';
import { DEFAULT_MIRROR, debianArch, debianKeyInputs, debootstrapRootfs, describeDebian, removeRootfs, type DebianSpec } from './debian-rootfs.js';
import { writeLayer, type LayerEntry } from './layer-tar.js';
import { archiveUpToDate, planArchive, writeArchive } from './oci-archive.js';

export type ImageSet = 'ambit' | 'samples' | 'all';

export interface BuildOptions {
  which: ImageSet;
  /** Where the archives go; default `<cacheDir>/archives`. */
  outDir?: string;
  cacheDir?: string;
  /** The built ambit package to put in the images; default the one this code is part of. */
  packageDir?: string;
  /** Rebuild every layer even if cached. */
  noCache?: boolean;
  log?: (line: string) => void;
}

export interface ArchiveResult {
  file: string;
  images: { ref: string; manifestDigest: string }[];
  size: number;
  written: boolean;
}

export interface BuildResult {
  version: string;
  layers: CachedLayer[];
  archives: ArchiveResult[];
  /** True when every layer came from the cache and every archive was already up to date. */
  builtNothing: boolean;
  seconds: number;
}

const DEBIAN: Record<'base' | 'curl-base', DebianSpec> = {
  // ztunnel programs its capture rules with `nft` and reads routes and addresses with `ip` in the node's namespace.
  base: { suite: 'bookworm', variant: 'minbase', include: ['nftables', 'iproute2'], mirror: DEFAULT_MIRROR },
  // curl.yaml and sleep.yaml exec curl, dig and sh in this image.
  'curl-base': { suite: 'bookworm', variant: 'minbase', include: ['curl', 'dnsutils', 'ca-certificates'], mirror: DEFAULT_MIRROR },
};

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const short = (digest: string) => digest.slice(0, 19);

/** Fails early, before any layer is built, when the output directory cannot be made or written. */
async function ensureWritable(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new Error(`output directory ${dir} cannot be created: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const probe = join(dir, `.ambit-write-test-${process.pid}`);
  try {
    await writeFile(probe, '');
    await rm(probe, { force: true });
  } catch (err) {
    throw new Error(`output directory ${dir} is not writable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** SOURCE_DATE_EPOCH (reproducible builds) or 1970: every mtime and `created` in the images. */
function buildDate(): Date {
  const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? '0');
  return new Date((Number.isFinite(epoch) ? epoch : 0) * 1000);
}

class LayerResolver {
  private readonly done = new Map<LayerName, Promise<CachedLayer>>();
  constructor(
    private readonly pkg: AmbitPackage,
    private readonly cacheDir: string,
    private readonly noCache: boolean,
    private readonly log: (line: string) => void,
    private readonly mtime: Date,
  ) {}

  get(name: LayerName): Promise<CachedLayer> {
    let p = this.done.get(name);
    if (!p) {
      p = this.resolve(name);
      this.done.set(name, p);
    }
    return p;
  }

  private async cachedOrBuild(name: LayerName, key: string, createdBy: string, build: (file: string, dir: string) => Promise<LayerEntry[]>, hint = ''): Promise<CachedLayer> {
    if (!this.noCache) {
      const hit = await findLayer(this.cacheDir, name, key);
      if (hit) {
        this.log(`${name}: cached (${short(hit.digest)}…, ${mb(hit.size)} gzipped, ${mb(hit.uncompressedSize)} tar)`);
        return hit;
      }
    }
    this.log(`${name}: building: ${createdBy}${hint}`);
    const layer = await storeLayer(this.cacheDir, name, key, createdBy, async (file, dir) => {
      const entries = await build(file, dir);
      return writeLayer(entries, file, this.mtime);
    });
    this.log(`${name}: built in ${layer.builtIn!.toFixed(1)} s (${short(layer.digest)}…, ${mb(layer.size)} gzipped, ${mb(layer.uncompressedSize)} tar)`);
    return layer;
  }

  private async resolve(name: LayerName): Promise<CachedLayer> {
    switch (name) {
      case 'base':
      case 'curl-base':
        return this.debian(name);
      case 'node': {
        const base = await this.get('base');
        const paths = new Set((await readFile(join(layerDir(this.cacheDir, 'base', base.key), 'files.txt'), 'utf8')).split('\n'));
        const plan = await nodeEntries(paths);
        const key = sha256(`node-r1\n${base.key}\n${await hashEntries(plan.entries)}`);
        const libs = plan.copiedLibraries.length ? ` and ${plan.copiedLibraries.join(', ')}` : '';
        return this.cachedOrBuild(name, key, `copy ${plan.nodeBinary} (Node ${process.version})${libs}`, async () => plan.entries);
      }
      case 'deps': {
        const key = sha256(JSON.stringify(await depsKeyInputs(this.pkg)));
        const stage = join(this.cacheDir, 'tmp', `deps-${process.pid}`);
        await rm(stage, { recursive: true, force: true });
        return this.cachedOrBuild(name, key, 'npm ci --omit=dev --ignore-scripts', (_file, dir) => depsEntries(this.pkg, stage, join(dir, 'npm.log'))).finally(() =>
          rm(stage, { recursive: true, force: true }),
        );
      }
      case 'app': {
        const entries = await appEntries(this.pkg);
        const key = sha256(`app-r1\n${await hashEntries(entries)}`);
        return this.cachedOrBuild(name, key, `copy ${this.pkg.name} ${this.pkg.version} (bin/, dist/, package.json)`, async () => entries);
      }
      case 'curl-entrypoint': {
        const entries: LayerEntry[] = [{ path: 'entrypoint.sh', kind: 'file', mode: 0o755, uid: 0, gid: 0, content: Buffer.from(CURL_ENTRYPOINT) }];
        const key = sha256(`curl-entrypoint-r1\n${await hashEntries(entries)}`);
        return this.cachedOrBuild(name, key, 'add /entrypoint.sh (as curlimages/curl\'s)', async () => entries);
      }
    }
  }

  private async debian(name: 'base' | 'curl-base'): Promise<CachedLayer> {
    const spec = DEBIAN[name];
    const key = sha256(JSON.stringify(debianKeyInputs(spec)));
    const root = join(this.cacheDir, 'tmp', `rootfs-${name}-${process.pid}`);
    try {
      return await this.cachedOrBuild(
        name,
        key,
        describeDebian(spec),
        async (_file, dir) => {
          await removeRootfs(root);
          const entries = await debootstrapRootfs(spec, root, join(this.cacheDir, 'debs'), join(dir, 'debootstrap.log'));
          // The node layer copies only the libraries the base lacks: it needs the base's paths.
          await writeFile(join(dir, 'files.txt'), entries.map((e) => e.path).join('\n') + '\n');
          return entries;
        },
        ' (about a minute; as root)',
      );
    } finally {
      await removeRootfs(root);
    }
  }
}

function archivesFor(which: ImageSet, version: string): { file: string; images: ImageDef[] }[] {
  // Samples go in one archive: their layers are shared, so it is about the size of one image, not nine.
  const ambit = { file: `ambit-${version}.oci.tar`, images: [ambitImage(version)] };
  const samples = { file: `ambit-samples-${version}.oci.tar`, images: sampleImages(version) };
  return which === 'ambit' ? [ambit] : which === 'samples' ? [samples] : [ambit, samples];
}

export async function buildImages(opts: BuildOptions): Promise<BuildResult> {
  const started = process.hrtime.bigint();
  const log = opts.log ?? (() => undefined);
  const pkg = await readPackage(resolve(opts.packageDir ?? thisPackageDir()));
  const cacheDir = resolve(opts.cacheDir ?? defaultCacheDir());
  const outDir = resolve(opts.outDir ?? join(cacheDir, 'archives'));
  await ensureWritable(outDir);
  await mkdir(join(cacheDir, 'tmp'), { recursive: true });
  const mtime = buildDate();
  const layers = new LayerResolver(pkg, cacheDir, !!opts.noCache, log, mtime);
  const architecture = debianArch();

  const archives: ArchiveResult[] = [];
  for (const archive of archivesFor(opts.which, pkg.version)) {
    const inputs = [];
    for (const def of archive.images) {
      // One layer at a time: a cold build runs debootstrap and npm ci, and the host has few cores.
      const resolved = [];
      for (const l of def.layers) resolved.push(await layers.get(l));
      inputs.push({ def, layers: resolved });
    }
    const plan = planArchive(inputs, { created: mtime, architecture });
    const file = join(outDir, archive.file);
    const names = plan.images.map((i) => i.ref);
    const upToDate = !opts.noCache && (await archiveUpToDate(plan, file));
    if (upToDate) {
      log(`${archive.file}: up to date (${names.length} image${names.length > 1 ? 's' : ''}, ${mb(plan.archiveSize)})`);
    } else {
      await writeArchive(plan, file);
      log(`${archive.file}: wrote ${file} (${mb(plan.archiveSize)}): ${names.join(', ')}`);
    }
    archives.push({ file, images: plan.images.map(({ ref, manifestDigest }) => ({ ref, manifestDigest })), size: plan.archiveSize, written: !upToDate });
  }

  const used = await Promise.all([...new Set(archivesFor(opts.which, pkg.version).flatMap((a) => a.images.flatMap((i) => i.layers)))].map((l) => layers.get(l)));
  const builtNothing = used.every((l) => l.builtIn === undefined) && archives.every((a) => !a.written);
  if (builtNothing) log(`nothing to build: all ${used.length} layers cached and ${archives.length === 1 ? 'the archive' : 'the archives'} up to date`);
  return { version: pkg.version, layers: used, archives, builtNothing, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}
