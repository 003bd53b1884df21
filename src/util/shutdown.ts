// Stopping a proxy process once: on SIGTERM/SIGINT (exit 0) or on a fatal error (exit 1), whichever comes first.

/**
 * Wraps `shutdown` so it runs at most once, and installs SIGTERM/SIGINT handlers that run it and
 * exit 0. Returns the once-only stop and `exitAfterStop(code)` for fatal errors.
 */
export function stopOnSignals(shutdown: () => Promise<void>): { stop: () => Promise<void>; exitAfterStop: (code: number) => void } {
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= shutdown());
  const exitAfterStop = (code: number) => void stop().finally(() => process.exit(code));
  process.once('SIGTERM', () => exitAfterStop(0));
  process.once('SIGINT', () => exitAfterStop(0));
  return { stop, exitAfterStop };
}
