import { fileURLToPath } from 'node:url';

/**
 * Container images the lab can run. Each image maps to a program on this host: the lab has no
 * container runtime, so a pod's containers are host processes in the pod's namespaces.
 */
export interface ResolvedContainer {
  argv: string[];
  env: Record<string, string>;
}

interface ImageRule {
  /** Human-readable name listed in errors. */
  display: string;
  matches: (repository: string) => boolean;
  resolve: (command: string[] | undefined, args: string[] | undefined) => ResolvedContainer;
}

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const programsEntry = `${repoRoot}dist/lab/programs/run.js`;
const ambitEntry = `${repoRoot}bin/ambit.js`;

function builtin(program: string, env: Record<string, string> = {}) {
  return (command: string[] | undefined, args: string[] | undefined): ResolvedContainer =>
    command?.length
      ? { argv: [...command, ...(args ?? [])], env }
      : { argv: [process.execPath, programsEntry, program, ...(args ?? [])], env };
}

/** An image whose entrypoint is a host program (curl images: the real curl is on the host). */
function hostProgram(defaultArgv: string[]) {
  return (command: string[] | undefined, args: string[] | undefined): ResolvedContainer => ({
    argv: command?.length ? [...command, ...(args ?? [])] : [...defaultArgv, ...(args ?? [])],
    env: {},
  });
}

/** Strips registry host, tag and digest: "registry.istio.io/release/examples-helloworld-v1:1.0" → "release/examples-helloworld-v1". */
export function repositoryOf(image: string): string {
  let name = image.split('@')[0]!;
  const lastSlash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  if (colon > lastSlash) name = name.slice(0, colon);
  const parts = name.split('/');
  if (parts.length > 1 && /[.:]|^localhost$/.test(parts[0]!)) parts.shift();
  if (parts[0] === 'library') parts.shift();
  return parts.join('/');
}

const endsWith = (...names: string[]) => (repo: string) => names.some((n) => repo === n || repo.endsWith(`/${n}`));

const RULES: ImageRule[] = [
  {
    display: 'ambit/ambit (this checkout\'s ambit CLI)',
    matches: (repo) => repo === 'ambit' || repo.endsWith('/ambit'),
    resolve: (command, args) => ({
      argv: command?.length && command[0] !== 'ambit' ? [...command, ...(args ?? [])] : [process.execPath, ambitEntry, ...(command?.slice(1) ?? []), ...(args ?? [])],
      env: {},
    }),
  },
  { display: 'examples-helloworld-v1', matches: endsWith('examples-helloworld-v1'), resolve: builtin('helloworld', { SERVICE_VERSION: 'v1' }) },
  { display: 'examples-helloworld-v2', matches: endsWith('examples-helloworld-v2'), resolve: builtin('helloworld', { SERVICE_VERSION: 'v2' }) },
  { display: 'examples-bookinfo-details-v1', matches: endsWith('examples-bookinfo-details-v1'), resolve: builtin('bookinfo-details') },
  { display: 'examples-bookinfo-ratings-v1', matches: endsWith('examples-bookinfo-ratings-v1'), resolve: builtin('bookinfo-ratings') },
  { display: 'examples-bookinfo-reviews-v1', matches: endsWith('examples-bookinfo-reviews-v1'), resolve: builtin('bookinfo-reviews', { SERVICE_VERSION: 'v1', ENABLE_RATINGS: 'false' }) },
  { display: 'examples-bookinfo-reviews-v2', matches: endsWith('examples-bookinfo-reviews-v2'), resolve: builtin('bookinfo-reviews', { SERVICE_VERSION: 'v2', ENABLE_RATINGS: 'true', STAR_COLOR: 'black' }) },
  { display: 'examples-bookinfo-reviews-v3', matches: endsWith('examples-bookinfo-reviews-v3'), resolve: builtin('bookinfo-reviews', { SERVICE_VERSION: 'v3', ENABLE_RATINGS: 'true', STAR_COLOR: 'red' }) },
  { display: 'examples-bookinfo-productpage-v1', matches: endsWith('examples-bookinfo-productpage-v1'), resolve: builtin('bookinfo-productpage') },
  { display: 'curlimages/curl', matches: endsWith('curlimages/curl', 'curl'), resolve: hostProgram(['curl']) },
  { display: 'busybox', matches: endsWith('busybox'), resolve: hostProgram(['/bin/sh']) },
  { display: 'nginx (the host nginx binary)', matches: endsWith('nginx'), resolve: hostProgram(['nginx', '-g', 'daemon off;']) },
];

export const KNOWN_IMAGES = RULES.map((r) => r.display);

export class UnknownImageError extends Error {
  constructor(readonly image: string) {
    super(`image "${image}" is not known to the ambit lab; known images: ${KNOWN_IMAGES.join(', ')}`);
  }
}

export function resolveImage(image: string, command?: string[], args?: string[]): ResolvedContainer {
  const repo = repositoryOf(image);
  const rule = RULES.find((r) => r.matches(repo));
  if (!rule) throw new UnknownImageError(image);
  return rule.resolve(command, args);
}
