/**
 * Summarises a V8 sampling heap profile (.heapprofile, e.g. from loopback-hbone.ts --heap-profile):
 * bytes allocated by function (self), the top N.
 *
 *   node --import tsx bench/perf/heapprofile-top.ts <file.heapprofile> [--top 40]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

function main(): void {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '40' } }, allowPositionals: true });
  const file = positionals[0];
  if (!file) throw new Error('usage: heapprofile-top.ts <file.heapprofile> [--top N]');
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode };
  const self = new Map<string, number>();
  const stacks = new Map<string, number>();
  let total = 0;
  const short = (url: string) => url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'nm:').replace(/^.*\/(src|bench|test)\//, '$1/');
  const name = (node: HeapNode) => `${node.callFrame.functionName || '(anonymous)'} ${short(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;
  const walk = (node: HeapNode, path: string[]) => {
    const key = name(node);
    const here = [...path, key];
    if (node.selfSize) {
      total += node.selfSize;
      self.set(key, (self.get(key) ?? 0) + node.selfSize);
      const stack = here.slice(-4).join(' < ');
      stacks.set(stack, (stacks.get(stack) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, here);
  };
  walk(profile.head, []);
  const top = Number(values.top);
  const kb = (bytes: number) => `${(bytes / 1024).toFixed(0).padStart(9)} KiB ${((bytes / total) * 100).toFixed(1).padStart(5)}%`;
  console.log(`## allocated (sampled) by function, of ${(total / 2 ** 20).toFixed(1)} MiB`);
  [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).forEach(([key, bytes]) => console.log(`${kb(bytes)}  ${key}`));
  console.log('\n## by innermost four frames');
  [...stacks.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).forEach(([key, bytes]) => console.log(`${kb(bytes)}  ${key.split(' < ').reverse().join(' < ')}`));
}

main();
