/** An argv as a reader would type it in a shell (for the commands shown in reports). */
export function shellQuote(argv: string[]): string {
  return argv.map((a) => (/^[\w./,:=@%+<>-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
