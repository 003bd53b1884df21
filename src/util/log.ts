import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured logger, one JSON line per event. Level from AMBIT_LOG_LEVEL (default info). */
export function createLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level: process.env.AMBIT_LOG_LEVEL ?? 'info', base: { component, ...bindings } });
}
