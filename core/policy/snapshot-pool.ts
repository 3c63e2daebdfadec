/*
 * The snapshot pool (FlashBoot): which paused workers a host keeps. Pure: the scheduler hands in
 * what its provider holds paused and the time.
 */

/** One paused worker as the pool sees it. */
export interface PausedWorkerView {
  id: string;
  endpointId: string;
  /** ms epoch it was paused: its last use, for least-recently-used eviction. */
  pausedAt: number;
  /** Resident memory it keeps while paused (bytes). */
  residentBytes: number;
}

export interface PausedPoolLimits {
  /** HEARTH_PAUSED_MEMORY_BYTES: what all paused workers of the host may keep resident together. */
  memoryBytes: number;
  /** HEARTH_PAUSED_MAX_AGE_S, in ms: a worker paused longer than this is stopped. */
  maxAgeMs: number;
}

export interface PausedEviction {
  id: string;
  why: "max_age" | "memory_budget";
}

/**
 * The paused workers to stop at `now`: every one paused for longer than `maxAgeMs`, then the least
 * recently used (paused longest ago) until the rest fit in `memoryBytes`. Ties break by id, so the
 * answer does not depend on the input's order.
 */
export function choosePausedEvictions(paused: readonly PausedWorkerView[], limits: PausedPoolLimits, now: number): PausedEviction[] {
  const byAge = [...paused].sort((a, b) => a.pausedAt - b.pausedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const out: PausedEviction[] = [];
  const kept: PausedWorkerView[] = [];
  for (const w of byAge) {
    if (now - w.pausedAt > limits.maxAgeMs) out.push({ id: w.id, why: "max_age" });
    else kept.push(w);
  }
  let total = kept.reduce((sum, w) => sum + Math.max(0, w.residentBytes), 0);
  for (const w of kept) {
    if (total <= limits.memoryBytes) break;
    out.push({ id: w.id, why: "memory_budget" });
    total -= Math.max(0, w.residentBytes);
  }
  return out;
}
