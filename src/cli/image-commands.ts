/** `ambit image …`: the product image and the sample images, built here from Debian packages (never pulled). */
import type { Command } from 'commander';

interface BuildFlags {
  samples?: boolean;
  all?: boolean;
  output?: string;
  cache: boolean;
  packageDir?: string;
  json?: boolean;
}

export function registerImageCommands(program: Command): void {
  const image = program.command('image').description('container images built on this host from Debian packages (never pulled)');

  image
    .command('build')
    .description(
      'build ambit/ambit:<version> as an OCI archive (Debian bookworm minbase + Node + this package), each layer cached by its inputs; ' +
        'load it with `kind load image-archive`, `ctr -n k8s.io images import` or `docker load -i`',
    )
    .option('--samples', 'build the stand-ins for Istio\'s sample images instead (helloworld, bookinfo, curlimages/curl), in one archive')
    .option('--all', 'build both archives')
    .option('-o, --output <dir>', 'directory for the archives (default: ~/.cache/ambit/images/archives)')
    .option('--no-cache', 'rebuild every layer and archive')
    .option('--package-dir <dir>', 'the built ambit package to put in the images (default: this one)')
    .option('--json', 'print the result as JSON')
    .action(async (flags: BuildFlags) => {
      if (flags.samples && flags.all) throw new Error('--samples and --all: give one (--all includes the samples)');
      const { buildImages } = await import('../image/build.js');
      const result = await buildImages({
        which: flags.all ? 'all' : flags.samples ? 'samples' : 'ambit',
        outDir: flags.output,
        packageDir: flags.packageDir,
        noCache: !flags.cache,
        log: (line) => process.stderr.write(`[image] ${line}\n`),
      });
      if (flags.json) console.log(JSON.stringify(result, null, 2));
      else for (const a of result.archives) console.log(a.file);
    });
}
