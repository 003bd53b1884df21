/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`) by function: self time and total
 * (inclusive) time, the top N of each, plus self time per file.
 *
 *   node --import tsx bench/perf/cpuprofile-top.ts <file.cpuprofile> [--top 40] [--filter text]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function shortUrl(url: string): string {
  if (!url) return '';
  return url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'nm:').replace(/^.*\/(src|bench|test)\//, '$1/');
}

function main(): void {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '40' }, filter: { type: 'string' } }, allowPositionals: true });
  const file = positionals[0];
  if (!file) throw new Error('usage: cpuprofile-top.ts <file.cpuprofile> [--top N]');
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const top = Number(values.top);
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const totalUs = profile.endTime - profile.startTime;

  const keyOf = (node: ProfileNode) => {
    const frame = node.callFrame;
    const name = frame.functionName || '(anonymous)';
    return frame.url ? `${name} ${shortUrl(frame.url)}:${frame.lineNumber + 1}` : name;
  };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const perFile = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const key = keyOf(node);
    self.set(key, (self.get(key) ?? 0) + us);
    const fileKey = node.callFrame.url ? shortUrl(node.callFrame.url) : `(${node.callFrame.functionName || 'native'})`;
    perFile.set(fileKey, (perFile.get(fileKey) ?? 0) + us);
    // Inclusive: every distinct function on the stack gets the sample once.
    const seen = new Set<string>();
    for (let cursor: number | undefined = id; cursor !== undefined; cursor = parent.get(cursor)) {
      const k = keyOf(byId.get(cursor)!);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }
  const idleUs = self.get('(idle)') ?? 0;
  const busyUs = totalUs - idleUs;
  const pct = (us: number) => `${((us / busyUs) * 100).toFixed(1).padStart(5)}%`;
  const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(7)} ms`;
  const filter = values.filter;
  const print = (title: string, map: Map<string, number>) => {
    console.log(`\n## ${title} (of ${(busyUs / 1000).toFixed(0)} ms busy, ${(idleUs / 1000).toFixed(0)} ms idle)`);
    [...map.entries()]
      .filter(([key]) => key !== '(idle)' && (!filter || key.includes(filter)))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .forEach(([key, us]) => console.log(`${ms(us)} ${pct(us)}  ${key}`));
  };
  print('self time by function', self);
  print('self time by file', perFile);
  print('inclusive time by function', inclusive);
}

main();
