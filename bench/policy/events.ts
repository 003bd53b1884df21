/** What the policy probe (bench/tools/policy-probe.ts) logs, one JSON object a line; times are wall-clock ms since the epoch. */

/** One new connection with one request on it. */
export interface AttemptEvent {
  kind: 'attempt';
  /** When the connection was opened. */
  start: number;
  /** When its outcome was known: the response head arrived, or the connection failed or timed out. */
  end: number;
  /** An HTTP 2xx/3xx response came back. */
  answered: boolean;
  /** Why it was not answered (ECONNRESET, closed, timeout, status 503, …). */
  error?: string;
}

/** The keep-alive connection `conn` got its first answer. */
export interface EstablishedEvent {
  kind: 'established';
  conn: number;
  t: number;
}

/** The keep-alive connection `conn`, established before, ended. */
export interface ClosedEvent {
  kind: 'closed';
  conn: number;
  t: number;
  /** Requests answered on it. */
  answered: number;
  /** When the last of them was answered. */
  lastAnswer: number;
  /** ECONNRESET, closed (FIN), timeout (a request unanswered for the probe's timeout), … */
  reason: string;
}

export type ProbeEvent = AttemptEvent | EstablishedEvent | ClosedEvent;

export class ProbeLogError extends Error {}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** One line of the probe's log; throws ProbeLogError on anything else. */
export function parseProbeEvent(line: string): ProbeEvent {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new ProbeLogError(`not JSON: ${JSON.stringify(line.slice(0, 80))}`);
  }
  const e = value as Record<string, unknown>;
  if (e?.kind === 'attempt' && isNumber(e.start) && isNumber(e.end) && typeof e.answered === 'boolean') return e as unknown as AttemptEvent;
  if (e?.kind === 'established' && isNumber(e.conn) && isNumber(e.t)) return e as unknown as EstablishedEvent;
  if (e?.kind === 'closed' && isNumber(e.conn) && isNumber(e.t) && isNumber(e.answered) && isNumber(e.lastAnswer) && typeof e.reason === 'string') return e as unknown as ClosedEvent;
  throw new ProbeLogError(`not a probe event: ${JSON.stringify(line.slice(0, 80))}`);
}

/**
 * Reads a log that is still being written: every call takes the complete lines added since the
 * last one (a line being written stays for the next call).
 */
export class ProbeLogReader {
  private pending = '';
  readonly events: ProbeEvent[] = [];
  /** Lines that were not probe events (the tool's own error messages): kept for the error report. */
  readonly otherLines: string[] = [];

  /** Adds a chunk of the log; returns the events it completed. */
  push(chunk: string): ProbeEvent[] {
    const text = this.pending + chunk;
    const lines = text.split('\n');
    this.pending = lines.pop() ?? '';
    const added: ProbeEvent[] = [];
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        added.push(parseProbeEvent(line));
      } catch {
        this.otherLines.push(line);
      }
    }
    this.events.push(...added);
    return added;
  }

  attempts(): AttemptEvent[] {
    return this.events.filter((e): e is AttemptEvent => e.kind === 'attempt');
  }
}
