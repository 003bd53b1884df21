// `ambit image build`: builds (or reuses from the cache) the product and sample images, checks the OCI archives, runs them in a throwaway containerd.
//
//   node --import tsx --test test/image-build.test.ts
//
// Building the Debian base layers needs root (debootstrap); without root and without cached base
// layers the build tests skip, saying so. The layer-tar and bad-input tests run anywhere.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, link, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildImages, type BuildResult } from '../src/image/build.js';
import { NeedsRootError } from '../src/image/debian-rootfs.js';
import { collectTree, writeLayer } from '../src/image/layer-tar.js';
import { ambitImage, sampleImages } from '../src/image/catalog.js';
import { PROGRAM_NAMES } from '../src/lab/programs/run.js';
import { resolveImage } from '../src/lab/agent/images.js';
import { checkOciArchive, resolveInImage, type CheckedImage } from './helpers/oci-check.js';
import { containerdMissing, startContainerd, type Containerd } from './helpers/throwaway-containerd.js';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const tmpDirs: string[] = [];
const tmp = async (name: string) => {
  const d = await mkdtemp(join(tmpdir(), `ambit-image-test-${name}-`));
  tmpDirs.push(d);
  return d;
};
after(async () => {
  for (const d of tmpDirs) {
    await chmod(d, 0o755).catch(() => undefined);
    await rm(d, { recursive: true, force: true });
  }
});

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('layer tarballs', () => {
  test('are deterministic: same tree, other mtimes and file order on disk -> same digests; links kept', async () => {
    const dir = await tmp('tree');
    await mkdir(join(dir, 'a/b'), { recursive: true });
    await writeFile(join(dir, 'a/b/file'), 'hello\n');
    await writeFile(join(dir, 'z'), 'zz');
    await link(join(dir, 'a/b/file'), join(dir, 'hard'));
    await symlink('a/b/file', join(dir, 'soft'));
    const out = await tmp('layers');
    const mtime = new Date(0);
    const first = await writeLayer(await collectTree(dir, 'opt/x', { owner: { uid: 0, gid: 0 } }), join(out, '1.tar.gz'), mtime);
    await utimes(join(dir, 'z'), new Date(), new Date(Date.now() - 1e6));
    const second = await writeLayer(await collectTree(dir, 'opt/x', { owner: { uid: 0, gid: 0 } }), join(out, '2.tar.gz'), mtime);
    assert.deepEqual(second, first);
    const entries = await collectTree(dir, '');
    assert.deepEqual(entries.map((e) => e.path), ['a', 'a/b', 'a/b/file', 'hard', 'soft', 'z']);
  });
});

describe('bad input', () => {
  test('an unknown flag is named', async () => {
    const r = await cli(['image', 'build', '--bogus']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unknown option '--bogus'/);
  });

  test('--samples with --all is refused', async () => {
    const r = await cli(['image', 'build', '--samples', '--all']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--samples and --all/);
  });

  test('an output directory that cannot be made or written is named, before anything is built', async () => {
    const file = join(await tmp('out'), 'plain-file');
    await writeFile(file, '');
    await assert.rejects(buildImages({ which: 'ambit', outDir: join(file, 'sub') }), /output directory .*plain-file\/sub cannot be created: ENOTDIR/);
    const r = await cli(['image', 'build', '-o', join(file, 'sub')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ambit: output directory .* cannot be created: ENOTDIR/);
    if (process.getuid?.() !== 0) {
      const ro = await tmp('ro');
      await chmod(ro, 0o500);
      await assert.rejects(buildImages({ which: 'ambit', outDir: ro }), /output directory .* is not writable: EACCES/);
    }
  });

  test('a package without dist/ (not built) is named, with the fix', async () => {
    const pkg = await tmp('pkg');
    await mkdir(join(pkg, 'bin'));
    await writeFile(join(pkg, 'package.json'), JSON.stringify({ name: 'ambit', version: '9.9.9' }));
    await writeFile(join(pkg, 'package-lock.json'), '{}');
    await writeFile(join(pkg, 'bin/ambit.js'), '');
    await assert.rejects(buildImages({ which: 'ambit', packageDir: pkg }), /dist is missing or not built .*run `npm run build` first/);
    const r = await cli(['image', 'build', '--package-dir', pkg]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ambit: .*dist is missing or not built/);
  });
});

describe('ambit image build --all', () => {
  let cold: BuildResult | undefined;
  let skip: string | undefined;
  const images: CheckedImage[] = [];
  const image = (ref: string) => {
    const found = images.find((i) => i.ref === ref);
    assert.ok(found, `${ref} is not in the archives (have: ${images.map((i) => i.ref).join(', ')})`);
    return found;
  };

  before(async () => {
    if (!existsSync(join(ROOT, 'dist/cli/main.js'))) {
      skip = 'dist/ is not built (npm run build)';
      return;
    }
    const out = await tmp('archives');
    try {
      cold = await buildImages({ which: 'all', outDir: out, log: (l) => console.log(`[image] ${l}`) });
    } catch (err) {
      if (err instanceof NeedsRootError) {
        skip = `${err.message}: skipping the build tests`;
        return;
      }
      throw err;
    }
    for (const a of cold.archives) images.push(...(await checkOciArchive(a.file)));
  });

  test('the archives are valid OCI layouts with a consistent manifest.json (checked while reading them)', (t) => {
    if (skip) return t.skip(skip);
    const refs = [ambitImage(VERSION), ...sampleImages(VERSION)].map((d) => d.ref);
    assert.deepEqual(images.map((i) => i.ref).sort(), refs.sort());
    for (const a of cold!.archives) t.diagnostic(`${a.file}: ${(a.size / 1e6).toFixed(1)} MB, ${a.images.length} image(s)`);
    for (const l of cold!.layers) t.diagnostic(`layer ${l.name}: ${(l.size / 1e6).toFixed(1)} MB gzipped, ${(l.uncompressedSize / 1e6).toFixed(1)} MB tar${l.builtIn !== undefined ? `, built in ${l.builtIn.toFixed(1)} s` : ', cached'}`);
    t.diagnostic(`build took ${cold!.seconds.toFixed(1)} s`);
  });

  test('ambit/ambit has node and the CLI, and its entrypoint is the CLI', (t) => {
    if (skip) return t.skip(skip);
    const img = image(`docker.io/ambit/ambit:${VERSION}`);
    assert.ok(resolveInImage(img.files, '/usr/bin/node'), 'no /usr/bin/node');
    assert.ok(resolveInImage(img.files, '/opt/ambit/bin/ambit.js'), 'no /opt/ambit/bin/ambit.js');
    assert.ok(resolveInImage(img.files, '/opt/ambit/dist/cli/main.js'), 'no dist/cli/main.js');
    assert.ok(resolveInImage(img.files, '/opt/ambit/node_modules/commander/package.json'), 'no production dependencies');
    assert.ok(!img.files.has('opt/ambit/node_modules/typescript'), 'a dev dependency is in the image');
    assert.ok(resolveInImage(img.files, '/bin/sh'), 'no /bin/sh');
    assert.deepEqual(img.config.config.Entrypoint, ['node', '/opt/ambit/bin/ambit.js']);
    assert.match(img.config.config.Env?.join('\n') ?? '', /^PATH=/m);
    assert.equal(img.config.config.WorkingDir, '/opt/ambit');
  });

  test('the sample images run the lab\'s programs with the lab\'s environment; curl has curl, dig and sh', (t) => {
    if (skip) return t.skip(skip);
    for (const def of sampleImages(VERSION)) {
      const img = image(def.ref);
      const [node, entry, program] = img.config.config.Entrypoint ?? [];
      if (def.ref.includes('curlimages/curl')) {
        for (const bin of ['/usr/bin/curl', '/usr/bin/dig', '/bin/sh', '/bin/sleep', '/entrypoint.sh']) assert.ok(resolveInImage(img.files, bin), `${def.ref}: no ${bin}`);
        continue;
      }
      assert.equal(node, 'node');
      assert.ok(resolveInImage(img.files, entry!), `${def.ref}: no ${entry}`);
      assert.ok((PROGRAM_NAMES as string[]).includes(program!), `${def.ref}: ${program} is not a lab program`);
      const labEnv = resolveImage(def.ref).env;
      for (const [k, v] of Object.entries(labEnv)) assert.ok(img.config.config.Env?.includes(`${k}=${v}`), `${def.ref}: ${k}=${v} missing (the lab sets it)`);
    }
    // Shared layers: all but the curl image are the ambit image's layers.
    assert.deepEqual(image('registry.istio.io/release/examples-helloworld-v1:1.0').layerDigests, image(`docker.io/ambit/ambit:${VERSION}`).layerDigests);
  });

  test('a second build with no change builds nothing and says so', async (t) => {
    if (skip) return t.skip(skip);
    const lines: string[] = [];
    const warm = await buildImages({ which: 'all', outDir: join(cold!.archives[0]!.file, '..'), log: (l) => lines.push(l) });
    t.diagnostic(`warm build: ${warm.seconds.toFixed(2)} s`);
    assert.equal(warm.builtNothing, true, lines.join('\n'));
    assert.ok(warm.layers.every((l) => l.builtIn === undefined));
    assert.match(lines.join('\n'), /nothing to build: all 6 layers cached and the archives up to date/);
    assert.deepEqual(warm.archives.map((a) => a.images), cold!.archives.map((a) => a.images));
  });

  test('skopeo reads every image of the archives (oci-archive:) and the Docker form (docker-archive:)', async (t) => {
    if (skip) return t.skip(skip);
    if (!existsSync('/usr/bin/skopeo')) return t.skip('skopeo is not installed (apt-get install skopeo)');
    for (const a of cold!.archives) {
      for (const { ref, manifestDigest } of a.images) {
        const { stdout } = await execFileAsync('skopeo', ['inspect', `oci-archive:${a.file}:${ref}`], { timeout: 60_000 });
        assert.equal((JSON.parse(stdout) as { Digest: string }).Digest, manifestDigest, ref);
      }
    }
    const ambit = cold!.archives.find((a) => a.images.length === 1)!;
    const { stdout } = await execFileAsync('skopeo', ['inspect', `docker-archive:${ambit.file}`], { timeout: 60_000 });
    assert.equal((JSON.parse(stdout) as { Layers: string[] }).Layers.length, 4);
  });

  describe('in a throwaway containerd', () => {
    let ctrd: Containerd | undefined;
    let why: string | undefined;
    before(async () => {
      why = skip ?? containerdMissing();
      if (why) return;
      ctrd = await startContainerd();
      for (const a of cold!.archives) await ctrd.ctr(['images', 'import', a.file], 300_000);
    });
    after(async () => ctrd?.stop());
    let n = 0;
    const run = async (ref: string, args: string[], extra: string[] = []) =>
      (await ctrd!.ctr(['run', '--rm', '--runc-root', join(ctrd!.dir, 'runc'), ...extra, ref, `t${++n}`, ...args], 60_000)).stdout;

    test('ctr images import names every image as the manifests do', async (t) => {
      if (why) return t.skip(why);
      const { stdout } = await ctrd!.ctr(['images', 'ls', '-q']);
      for (const i of images) assert.ok(stdout.split('\n').includes(i.ref), `${i.ref} not imported:\n${stdout}`);
    });

    test('ambit/ambit runs: its entrypoint with --version prints the package version', async (t) => {
      if (why) return t.skip(why);
      const img = image(`docker.io/ambit/ambit:${VERSION}`);
      // ctr run replaces the whole command line; give it the entrypoint as a runtime would.
      const out = await run(img.ref, [...img.config.config.Entrypoint!, '--version']);
      assert.equal(out.trim(), VERSION);
    });

    test('curlimages/curl runs curl, dig, sh and sleep (the sleep sample\'s command)', async (t) => {
      if (why) return t.skip(why);
      const ref = 'docker.io/curlimages/curl:8.16.0';
      assert.match(await run(ref, ['curl', '--version']), /^curl \d+\.\d+/);
      assert.match(await run(ref, ['/entrypoint.sh', '--version']), /^curl \d+\.\d+/);
      const dig = await ctrd!.ctr(['run', '--rm', '--runc-root', join(ctrd!.dir, 'runc'), ref, `t${++n}`, 'dig', '-v']);
      assert.match(dig.stdout + dig.stderr, /DiG 9\./);
      assert.equal((await run(ref, ['sh', '-c', 'echo ok'])).trim(), 'ok');
      assert.equal(await run(ref, ['/bin/sleep', '0']), '');
    });

    test('helloworld-v1 serves /hello as v1 from its own entrypoint', async (t) => {
      if (why) return t.skip(why);
      const img = image('registry.istio.io/release/examples-helloworld-v1:1.0');
      const port = await new Promise<number>((resolve) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as { port: number }).port;
          s.close(() => resolve(p));
        });
      });
      const id = `hw${++n}`;
      // The image's own Env (SERVICE_VERSION=v1) applies; PORT and BIND_ADDRESS keep it off the host's ports.
      await ctrd!.ctr(['run', '-d', '--net-host', '--runc-root', join(ctrd!.dir, 'runc'), '--env', `PORT=${port}`, '--env', 'BIND_ADDRESS=127.0.0.1', img.ref, id, ...img.config.config.Entrypoint!]);
      try {
        let body = '';
        for (let i = 0; i < 50 && !body; i++) {
          body = await fetch(`http://127.0.0.1:${port}/hello`).then((r) => r.text(), () => '');
          if (!body) await new Promise((r) => setTimeout(r, 200));
        }
        assert.match(body, /^Hello version: v1, instance: /);
      } finally {
        await ctrd!.ctr(['task', 'kill', '-s', 'SIGKILL', id]).catch(() => undefined);
        for (let i = 0; i < 50; i++) {
          if (await ctrd!.ctr(['task', 'delete', id]).then(() => true, () => false)) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        await ctrd!.ctr(['containers', 'delete', id]).catch(() => undefined);
      }
    });
  });
});
