/** Parses `iperf3 -c … -J` output (iperf3 3.x). */
export interface Iperf3Result {
  /** What the receiver got: the throughput that reached the server. */
  receivedBitsPerSecond: number;
  sentBitsPerSecond: number;
  retransmits: number | null;
  durationSeconds: number;
}

export class Iperf3ParseError extends Error {}

interface Iperf3Json {
  error?: string;
  end?: {
    sum_sent?: { bits_per_second?: number; retransmits?: number; seconds?: number };
    sum_received?: { bits_per_second?: number; seconds?: number };
  };
}

export function parseIperf3(output: string): Iperf3Result {
  let json: Iperf3Json;
  try {
    json = JSON.parse(output) as Iperf3Json;
  } catch {
    throw new Iperf3ParseError(`iperf3 did not print JSON: ${output.trim().slice(0, 300)}`);
  }
  if (json.error) throw new Iperf3ParseError(`iperf3: ${json.error}`);
  const received = json.end?.sum_received;
  const sent = json.end?.sum_sent;
  if (received?.bits_per_second === undefined || sent?.bits_per_second === undefined) throw new Iperf3ParseError('iperf3 JSON has no end.sum_received/sum_sent');
  return {
    receivedBitsPerSecond: received.bits_per_second,
    sentBitsPerSecond: sent.bits_per_second,
    retransmits: sent.retransmits ?? null,
    durationSeconds: received.seconds ?? sent.seconds ?? Number.NaN,
  };
}
