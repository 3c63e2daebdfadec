/**
 * Token buckets for admission (request rates and LLM token rates), as pure integer arithmetic so
 * the Redis script (core/redis/rate-limit-scripts.ts) can mirror it step for step and both give
 * the same answer for the same state and clock.
 *
 * A bucket holds at most `capacity` units and gains `amount` units every `periodMs`. To keep every
 * number an integer, levels are kept in *scaled units*: one unit is `periodMs` scaled units, so the
 * refill over `elapsedMs` is exactly `elapsedMs × amount` scaled units. With the bounds of
 * core/contracts/rate-limits.ts every value stays below 2^53 (exact in a double, JS and Lua alike).
 */
export interface BucketSpec {
  /** Most units the bucket holds (the burst). */
  capacity: number;
  /** Units regained every `periodMs`. */
  amount: number;
  periodMs: number;
}

/** What Redis keeps per bucket: its level in scaled units and the ms (Redis clock) it was computed at. */
export interface BucketState {
  level: number;
  at: number;
}

export interface BucketAnswer {
  /** Level after this decision, scaled units (may be negative after a settlement charged more than was held). */
  level: number;
  /** ms until the cost asked would fit (0 when it fits now). */
  retryAfterMs: number;
  /** ms until the bucket is full again. */
  resetMs: number;
}

export interface TakeDecision {
  /** True when every bucket had room: all were charged. False: none was charged. */
  allowed: boolean;
  /** Index of the first bucket that refused (-1 when allowed). */
  refusedBy: number;
  buckets: BucketAnswer[];
}

/** The bucket's level at `now`: its stored level plus the refill since, capped at capacity; a new bucket is full. */
export function levelAt(spec: BucketSpec, state: BucketState | undefined, now: number): number {
  const full = spec.capacity * spec.periodMs;
  if (!state) return full;
  const elapsed = Math.max(0, now - state.at);
  // Compared before adding: a long idle gap times a large amount may be inexact, the cap is not.
  const room = full - state.level;
  if (room <= 0) return state.level;
  return elapsed >= Math.ceil(room / spec.amount) ? full : state.level + elapsed * spec.amount;
}

/** ms until `level` reaches `target` scaled units (0 when it already has). */
export function msUntil(spec: BucketSpec, level: number, target: number): number {
  return level >= target ? 0 : Math.ceil((target - level) / spec.amount);
}

/**
 * Takes `costs[i]` units from each bucket `i` at `now`, all or none: one bucket without room
 * refuses the lot and charges nothing (a request refused by its key's limit does not use up its
 * tenant's). A cost larger than the capacity is never admitted; its `retryAfterMs` is the time to
 * fill the bucket, the best a client can do before it sends a smaller request.
 */
export function takeAll(specs: readonly BucketSpec[], states: readonly (BucketState | undefined)[], costs: readonly number[], now: number): TakeDecision {
  const levels = specs.map((s, i) => levelAt(s, states[i], now));
  let refusedBy = -1;
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i]!;
    const need = costs[i]! * spec.periodMs;
    if (levels[i]! < need) {
      refusedBy = i;
      break;
    }
  }
  const allowed = refusedBy === -1;
  const buckets = specs.map((spec, i) => {
    const need = costs[i]! * spec.periodMs;
    const full = spec.capacity * spec.periodMs;
    const level = allowed ? levels[i]! - need : levels[i]!;
    return { level, retryAfterMs: allowed ? 0 : msUntil(spec, level, Math.min(need, full)), resetMs: msUntil(spec, level, full) };
  });
  return { allowed, refusedBy, buckets };
}

/**
 * Settles a hold: `delta` units more (positive: the job used more than was held) or fewer
 * (negative: given back) at `now`. A give-back never fills past capacity; a charge may take the
 * level below zero, which later requests wait out.
 */
export function adjust(spec: BucketSpec, state: BucketState | undefined, delta: number, now: number): number {
  const full = spec.capacity * spec.periodMs;
  const level = levelAt(spec, state, now) - delta * spec.periodMs;
  return level > full ? full : level;
}

/** Whole units left in a bucket (for `X-RateLimit-Remaining`): never negative. */
export function remainingUnits(spec: BucketSpec, level: number): number {
  return level <= 0 ? 0 : Math.floor(level / spec.periodMs);
}
