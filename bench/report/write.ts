import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { renderMarkdown } from './markdown.js';
import type { BenchReport } from './types.js';

export interface WrittenReport {
  json: string[];
  markdown: string;
}

/** File name of a run's JSON: its start time, safe in file names. */
export const resultFileName = (startedAt: string) => `${startedAt.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`;

/**
 * Writes the JSON (to `jsonPath`, or bench/results/<start>.json and bench/results/latest.json)
 * and the markdown generated from it (`markdownPath`). Paths are relative to `root`.
 */
export function writeReport(report: BenchReport, root: string, markdownPath: string, jsonPath?: string): WrittenReport {
  const text = `${JSON.stringify(report, null, 2)}\n`;
  const abs = (p: string) => (isAbsolute(p) ? p : join(root, p));
  const jsonFiles = jsonPath ? [jsonPath] : [join('bench', 'results', resultFileName(report.startedAt)), join('bench', 'results', 'latest.json')];
  for (const file of jsonFiles) {
    mkdirSync(dirname(abs(file)), { recursive: true });
    writeFileSync(abs(file), text);
  }
  const shown = jsonFiles[0]!;
  const link = relative(dirname(resolve(abs(markdownPath))), resolve(abs(shown)));
  mkdirSync(dirname(abs(markdownPath)), { recursive: true });
  writeFileSync(abs(markdownPath), renderMarkdown(report, { path: isAbsolute(shown) ? shown : relative(root, abs(shown)), link }));
  return { json: jsonFiles, markdown: markdownPath };
}
