#!/usr/bin/env node
// Entry point: runs the compiled CLI. `npm run build` produces dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  console.error('ambit: dist/ is missing; run `npm run build` first');
  process.exit(1);
}
await import(main);
