import { ambitPath } from './ambit.js';
import { directPath } from './direct.js';
import { haproxyPath } from './haproxy.js';
import type { BenchPath, PathName } from './path.js';
import { stunnelPath } from './stunnel.js';

export const PATHS: Record<PathName, BenchPath> = { direct: directPath, ambit: ambitPath, stunnel: stunnelPath, haproxy: haproxyPath };
