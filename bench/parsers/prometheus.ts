/** The sum of every sample of a counter or gauge in Prometheus text exposition format (all label sets). */
export function sumMetric(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const value = Number(rest.slice(rest[0] === '{' ? rest.lastIndexOf('}') + 1 : 0).trim().split(/\s+/)[0]);
    if (Number.isFinite(value)) total += value;
  }
  return total;
}
