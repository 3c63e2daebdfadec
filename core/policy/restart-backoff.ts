/**
 * Crash-loop backoff for an endpoint's workers. A worker that exits on its own with a non-zero code
 * (a handler that throws at import, an engine that cannot load) is a failure; starting another
 * straight away would only repeat it every tick. After n consecutive failures the next start waits
 * baseMs · 2^(n-1), at most maxMs. One worker seen healthy (idle or running) clears the record.
 */
export interface CrashRecord {
  consecutiveFailures: number;
  /** ms epoch of the last failure; null when there is none. */
  lastFailureAt: number | null;
}

export interface BackoffConfig {
  /** Delay after the first failure, ms. Default 1000. */
  baseMs?: number;
  /** Longest delay, ms. Default 60000. */
  maxMs?: number;
}

export const NO_CRASHES: CrashRecord = { consecutiveFailures: 0, lastFailureAt: null };

export function recordCrash(record: CrashRecord, now: number): CrashRecord {
  return { consecutiveFailures: record.consecutiveFailures + 1, lastFailureAt: now };
}

/** ms to wait before the next start may happen (0: start now). */
export function startDelayMs(record: CrashRecord, now: number, config: BackoffConfig = {}): number {
  if (record.consecutiveFailures === 0 || record.lastFailureAt === null) return 0;
  const base = config.baseMs ?? 1000;
  const max = config.maxMs ?? 60_000;
  const delay = Math.min(max, base * 2 ** (record.consecutiveFailures - 1));
  return Math.max(0, record.lastFailureAt + delay - now);
}
