/*
 * Warm pools: how many idle booted or paused workers an endpoint keeps ready besides workersMin,
 * sized from its recent demand. Pure: the scheduler records arrivals and hands in the history.
 */

/** Jobs that arrived on an endpoint during one observation (`count` up to `at`, ms epoch). */
export interface ArrivalSample {
  at: number;
  count: number;
}

export interface WarmPoolOptions {
  /** The endpoint's `workersStandby`: the pool's size when demand is low. 0: no pool, whatever the demand. */
  workersStandby: number;
  /** The endpoint's `workersMax`: the pool never exceeds it. */
  workersMax: number;
  /** How far back demand counts (ms). Default 10 minutes. */
  windowMs?: number;
  /**
   * Width of one burst (ms): about a cold start. The pool is sized for the busiest such span of the
   * window, since arrivals closer together than a cold start cannot be served by workers started for
   * them. Default 10 s.
   */
  burstMs?: number;
}

/**
 * The warm pool for an endpoint at `now`: `workersStandby`, grown to the most jobs that arrived
 * within one `burstMs` span during the last `windowMs` (each of those would otherwise have waited for
 * a cold start), never above `workersMax`. An endpoint without `workersStandby` keeps no pool.
 */
export function warmPoolSize(history: readonly ArrivalSample[], options: WarmPoolOptions, now: number): number {
  const standby = Math.max(0, Math.floor(options.workersStandby));
  if (standby === 0) return 0;
  const windowMs = options.windowMs ?? 600_000;
  const burstMs = Math.max(1, options.burstMs ?? 10_000);
  const recent = history.filter((s) => s.at <= now && now - s.at < windowMs && s.count > 0).sort((a, b) => a.at - b.at);
  // Busiest span: a sliding window of `burstMs` over the samples (two pointers).
  let peak = 0;
  let sum = 0;
  let from = 0;
  for (const s of recent) {
    sum += s.count;
    while (s.at - recent[from]!.at >= burstMs) sum -= recent[from++]!.count;
    peak = Math.max(peak, sum);
  }
  return Math.min(Math.max(standby, peak), Math.max(0, options.workersMax));
}
