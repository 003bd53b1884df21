// The layers above Debian: Node (the host's binary and the libraries the base lacks), production node_modules, the built package.
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectTree, parentDirs, type LayerEntry } from './layer-tar.js';
import { BuildStepError, runLogged } from './run-logged.js';

/** Where the package lives in the image. */
export const APP_DIR = '/opt/ambit';
export const NODE_PATH = '/usr/bin/node';

export interface AmbitPackage {
  dir: string;
  name: string;
  version: string;
  dependencies: Record<string, string>;
}

/** The package this code belongs to (src/image/ or dist/image/ → the package root). */
export function thisPackageDir(): string {
  return fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Reads and checks the package to put in the image: built (dist/), with its entry point and lock file. */
export async function readPackage(dir: string): Promise<AmbitPackage> {
  let pkg: { name?: unknown; version?: unknown; dependencies?: Record<string, string> };
  try {
    pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as typeof pkg;
  } catch (err) {
    throw new Error(`${dir} is not the ambit package: cannot read package.json (${(err as Error).message})`);
  }
  if (typeof pkg.version !== 'string' || typeof pkg.name !== 'string') throw new Error(`${join(dir, 'package.json')} has no name or version`);
  if (!(await exists(join(dir, 'dist/cli/main.js')))) {
    throw new Error(`${join(dir, 'dist')} is missing or not built (no dist/cli/main.js): run \`npm run build\` first`);
  }
  for (const f of ['bin/ambit.js', 'package-lock.json']) {
    if (!(await exists(join(dir, f)))) throw new Error(`${join(dir, f)} is missing: the image needs it`);
  }
  return { dir, name: pkg.name, version: pkg.version, dependencies: pkg.dependencies ?? {} };
}

const ROOT = { uid: 0, gid: 0 };
const app = APP_DIR.slice(1);

/** The built package: bin/, dist/ (no source maps or declarations) and package.json, root-owned. */
export async function appEntries(pkg: AmbitPackage): Promise<LayerEntry[]> {
  const skip = (rel: string, isDir: boolean) => !isDir && /\.(map|d\.ts|tsbuildinfo)$/.test(rel);
  const pkgJson = await stat(join(pkg.dir, 'package.json'));
  return [
    ...parentDirs(app),
    { path: `${app}/bin`, kind: 'dir', mode: 0o755, ...ROOT },
    ...(await collectTree(join(pkg.dir, 'bin'), `${app}/bin`, { owner: ROOT })),
    { path: `${app}/dist`, kind: 'dir', mode: 0o755, ...ROOT },
    ...(await collectTree(join(pkg.dir, 'dist'), `${app}/dist`, { owner: ROOT, exclude: skip })),
    { path: `${app}/package.json`, kind: 'file', mode: 0o644, ...ROOT, source: join(pkg.dir, 'package.json'), size: pkgJson.size },
  ];
}

/** What decides node_modules: the lock file, the dependency list and the platform (koffi's native part). */
export async function depsKeyInputs(pkg: AmbitPackage): Promise<Record<string, unknown>> {
  return { recipe: 'deps-r2', lock: await readFile(join(pkg.dir, 'package-lock.json'), 'utf8'), dependencies: pkg.dependencies, platform: `${process.platform}-${process.arch}` };
}

/** Installs the production dependencies into `stage` (npm ci --omit=dev, no install scripts) and returns them as entries. */
export async function depsEntries(pkg: AmbitPackage, stage: string, logFile: string): Promise<LayerEntry[]> {
  await mkdir(stage, { recursive: true });
  await copyFile(join(pkg.dir, 'package.json'), join(stage, 'package.json'));
  await copyFile(join(pkg.dir, 'package-lock.json'), join(stage, 'package-lock.json'));
  await runLogged('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=warn'], {
    cwd: stage,
    logFile,
    timeoutMs: 10 * 60_000,
    what: 'npm ci --omit=dev (the production dependencies)',
  });
  // npm's bookkeeping differs from run to run; source maps, TypeScript sources and declarations, and
  // Markdown are not needed at run time (they are half of node_modules: 114 → 59 MB).
  const skip = (rel: string, isDir: boolean) =>
    rel === '.package-lock.json' || rel === '.bin' || rel.startsWith('.bin/') || (!isDir && /\.(map|[cm]?ts|md)$/.test(rel));
  return [...parentDirs(`${app}/node_modules`), ...(await collectTree(join(stage, 'node_modules'), `${app}/node_modules`, { owner: ROOT, exclude: skip }))];
}

/** /lib, /bin, /sbin and /lib64 are symlinks into /usr on Debian 12: a layer must use the /usr paths. */
export function canonicalUsrPath(path: string): string {
  const p = path.replace(/^\/+/, '');
  return /^(lib|lib64|bin|sbin|lib32|libx32)\//.test(p) ? `usr/${p}` : p;
}

/** Shared libraries the executable loads, as ldd resolves them on this host. */
function sharedLibraries(executable: string): string[] {
  let out: string;
  try {
    out = execFileSync('ldd', [executable], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return []; // "not a dynamic executable"
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.push(m[1]);
  }
  if (/not found/.test(out)) throw new BuildStepError(`ldd ${executable}: a library is not found on this host:\n${out}`);
  return libs;
}

export interface NodeLayerPlan {
  entries: LayerEntry[];
  /** Host libraries copied because the base lacks them. */
  copiedLibraries: string[];
  nodeBinary: string;
}

/** The Node binary running this process as /usr/bin/node, plus each library it needs that `basePaths` lacks. */
export async function nodeEntries(basePaths: ReadonlySet<string>, nodeBinary = process.execPath): Promise<NodeLayerPlan> {
  const binary = await realpath(nodeBinary);
  const st = await stat(binary);
  const entries: LayerEntry[] = [...parentDirs('usr/bin'), { path: NODE_PATH.slice(1), kind: 'file', mode: 0o755, ...ROOT, source: binary, size: st.size }];
  const copied: string[] = [];
  for (const lib of sharedLibraries(binary)) {
    const inImage = canonicalUsrPath(lib);
    if (basePaths.has(inImage)) continue;
    const source = await realpath(lib);
    const libStat = await stat(source);
    const dir = inImage.slice(0, inImage.lastIndexOf('/'));
    entries.push(...parentDirs(dir), { path: inImage, kind: 'file', mode: 0o755, ...ROOT, source, size: libStat.size });
    copied.push(lib);
  }
  return { entries, copiedLibraries: copied, nodeBinary: binary };
}
