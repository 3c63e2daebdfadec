import { z } from "zod";

/**
 * The crash-loop circuit breaker of an endpoint. A failed start is a worker that ends before it was
 * ever ready (a handler that throws at import, an engine that cannot load its model, a provider that
 * refuses the start). After `maxFailedStarts` of them in a row the breaker opens: the scheduler
 * starts no worker and fails the endpoint's queued jobs with the last start error, instead of
 * letting them wait for ever while failed boots run up the tenant's bill. It closes when the
 * endpoint changes (any PATCH moves its revision) or is reset (`POST /api/v1/endpoints/{id}/reset`).
 * One worker seen ready clears the count. Pure: the scheduler stores the state (Redis, so it
 * survives a scheduler restart) and passes `now`.
 */
export const breakerState = z.object({
  /** Failed starts in a row, since the last ready worker, change or reset. */
  failedStarts: z.number().int().min(0),
  /** Why the last start failed (the worker's own exit reason, or its exit code). */
  lastError: z.string().max(1000).nullable(),
  /** ms epoch (the scheduler's clock) the breaker opened; null while closed. */
  openedAt: z.number().nullable(),
  /** The endpoint revision (its `updatedAt`, ms) this state belongs to: a state of another revision is stale. */
  revision: z.number(),
});
export type BreakerState = z.infer<typeof breakerState>;

/** Default `maxFailedStarts` of an endpoint. */
export const DEFAULT_MAX_FAILED_STARTS = 3;

export function closedBreaker(revision: number): BreakerState {
  return { failedStarts: 0, lastError: null, openedAt: null, revision };
}

/** The state as it holds for `revision`: one stored for another revision (the endpoint changed since) reads closed. */
export function currentBreaker(stored: BreakerState | undefined, revision: number): BreakerState {
  return stored !== undefined && stored.revision === revision ? stored : closedBreaker(revision);
}

export function isOpen(s: BreakerState): boolean {
  return s.openedAt !== null;
}

/** One more failed start; opens the breaker when `maxFailedStarts` in a row are reached. An open breaker stays as it is. */
export function recordFailedStart(s: BreakerState, failure: { error: string; now: number; maxFailedStarts: number }): BreakerState {
  if (isOpen(s)) return s;
  const failedStarts = s.failedStarts + 1;
  const error = failure.error.slice(0, 1000);
  return { ...s, failedStarts, lastError: error, openedAt: failedStarts >= Math.max(1, failure.maxFailedStarts) ? failure.now : null };
}

/** A worker of the endpoint became ready: the failures before it were not a loop. An open breaker stays open (its workers were stopped). */
export function recordReady(s: BreakerState): BreakerState {
  if (isOpen(s) || s.failedStarts === 0) return s;
  return { ...s, failedStarts: 0, lastError: null };
}

/** The error queued jobs fail with while the breaker is open. */
export function crashLoopError(s: BreakerState): string {
  const why = s.lastError ?? "workers ended before they were ready";
  return `crash_loop: ${s.failedStarts} failed worker starts in a row (last: ${why}); fix the endpoint (PATCH) or POST /api/v1/endpoints/{id}/reset`;
}

/** A stored breaker (JSON), checked; a damaged one reads as absent, that is closed. */
export function parseBreaker(raw: string | null): BreakerState | undefined {
  if (raw === null) return undefined;
  try {
    const r = breakerState.safeParse(JSON.parse(raw));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
