// The images ambit builds: the product image and stand-ins for Istio's sample images under the names the samples use.
import { APP_DIR } from './ambit-layers.js';

export type LayerName = 'base' | 'node' | 'deps' | 'app' | 'curl-base' | 'curl-entrypoint';

/** The runtime part of an OCI image config (field names as in the spec). */
export interface RuntimeConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env: string[];
  WorkingDir: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Labels?: Record<string, string>;
}

export interface ImageDef {
  /** Fully qualified name, as containerd stores it (docker.io/… for Docker Hub names). */
  ref: string;
  layers: LayerName[];
  config: RuntimeConfig;
}

export const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const AMBIT_LAYERS: LayerName[] = ['base', 'node', 'deps', 'app'];
/** The lab's built-in sample programs (src/lab/programs/run.ts), inside the image. */
const PROGRAMS_ENTRY = `${APP_DIR}/dist/lab/programs/run.js`;

export function ambitImage(version: string): ImageDef {
  return {
    ref: `docker.io/ambit/ambit:${version}`,
    layers: AMBIT_LAYERS,
    // The deploy manifests give only args (`ztunnel`, `controlplane`, …): the entrypoint is the CLI.
    config: { Entrypoint: ['node', `${APP_DIR}/bin/ambit.js`], Env: [PATH_ENV], WorkingDir: APP_DIR, Labels: labels('ambit', version) },
  };
}

function labels(title: string, version: string): Record<string, string> {
  return { 'org.opencontainers.image.title': title, 'org.opencontainers.image.version': version, 'org.opencontainers.image.vendor': 'ambit' };
}

/**
 * A sample app: the ambit layers with the program as entrypoint. The environment is what the lab
 * gives the same image (src/lab/agent/images.ts); the manifests set no command, only ports.
 */
function sample(name: string, tag: string, program: string, port: number, env: Record<string, string>, version: string): ImageDef {
  return {
    ref: `registry.istio.io/release/${name}:${tag}`,
    layers: AMBIT_LAYERS,
    config: {
      Entrypoint: ['node', PROGRAMS_ENTRY, program],
      Env: [PATH_ENV, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)],
      WorkingDir: APP_DIR,
      ExposedPorts: { [`${port}/tcp`]: {} },
      Labels: { ...labels(name, version), 'io.ambit.stand-in-for': `${name}:${tag}` },
    },
  };
}

/** As curlimages/curl's entrypoint: options go to curl, a command runs as given. */
export const CURL_ENTRYPOINT = `#!/bin/sh
set -e
if [ "$#" -eq 0 ] || [ "\${1#-}" != "$1" ] || ! command -v "$1" >/dev/null 2>&1; then
  set -- curl "$@"
fi
exec "$@"
`;

export function sampleImages(version: string): ImageDef[] {
  const bookinfo = '1.20.3';
  return [
    sample('examples-helloworld-v1', '1.0', 'helloworld', 5000, { SERVICE_VERSION: 'v1' }, version),
    sample('examples-helloworld-v2', '1.0', 'helloworld', 5000, { SERVICE_VERSION: 'v2' }, version),
    sample('examples-bookinfo-details-v1', bookinfo, 'bookinfo-details', 9080, {}, version),
    sample('examples-bookinfo-ratings-v1', bookinfo, 'bookinfo-ratings', 9080, {}, version),
    sample('examples-bookinfo-reviews-v1', bookinfo, 'bookinfo-reviews', 9080, { SERVICE_VERSION: 'v1', ENABLE_RATINGS: 'false' }, version),
    sample('examples-bookinfo-reviews-v2', bookinfo, 'bookinfo-reviews', 9080, { SERVICE_VERSION: 'v2', ENABLE_RATINGS: 'true', STAR_COLOR: 'black' }, version),
    sample('examples-bookinfo-reviews-v3', bookinfo, 'bookinfo-reviews', 9080, { SERVICE_VERSION: 'v3', ENABLE_RATINGS: 'true', STAR_COLOR: 'red' }, version),
    sample('examples-bookinfo-productpage-v1', bookinfo, 'bookinfo-productpage', 9080, {}, version),
    {
      // curl.yaml and sleep.yaml both run this image with command ["/bin/sleep", "infinity"].
      ref: 'docker.io/curlimages/curl:8.16.0',
      layers: ['curl-base', 'curl-entrypoint'],
      config: {
        Entrypoint: ['/entrypoint.sh'],
        Cmd: ['curl'],
        Env: [PATH_ENV],
        WorkingDir: '/',
        Labels: { ...labels('curl', version), 'io.ambit.stand-in-for': 'curlimages/curl:8.16.0 (Debian bookworm curl, dig, sh)' },
      },
    },
  ];
}

/** "docker.io/library/x:1" → "x:1", "docker.io/ambit/ambit:0.1.0" → "ambit/ambit:0.1.0" (docker's RepoTags form). */
export function familiarName(ref: string): string {
  return ref.replace(/^docker\.io\//, '').replace(/^library\//, '');
}
