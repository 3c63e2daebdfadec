/** One completed model in the weights cache, as the eviction policy sees it. */
export interface CachedModel {
  /** sha256 of the content (the entry's name). */
  digest: string;
  bytes: number;
  /** When a worker last asked for it (ms since the epoch, from the entry's mtime). */
  lastUsedMs: number;
  /** A live process holds a lease on it: never evicted, whatever its age. */
  leased: boolean;
}

export type EvictionPlan =
  | { ok: true; evict: string[] }
  | { ok: false; reason: "exceeds_budget" | "held_by_leases"; message: string };

/**
 * Which entries to delete so that `incomingBytes` more fit under `budgetBytes`: least recently used
 * first (ties by digest, so two hosts sharing a volume agree), leased ones never. Refuses a model
 * larger than the whole budget, and a budget the leased entries keep too full, rather than evicting
 * everything and still not fitting.
 */
export function planEviction(entries: readonly CachedModel[], incomingBytes: number, budgetBytes: number): EvictionPlan {
  if (incomingBytes > budgetBytes) {
    return { ok: false, reason: "exceeds_budget", message: `the model is ${incomingBytes} bytes and HEARTH_MODEL_CACHE_BYTES is ${budgetBytes}` };
  }
  const used = entries.reduce((sum, e) => sum + e.bytes, 0);
  let excess = used + incomingBytes - budgetBytes;
  if (excess <= 0) return { ok: true, evict: [] };
  const candidates = entries
    .filter((e) => !e.leased)
    .sort((a, b) => a.lastUsedMs - b.lastUsedMs || (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  const evict: string[] = [];
  for (const e of candidates) {
    if (excess <= 0) break;
    evict.push(e.digest);
    excess -= e.bytes;
  }
  if (excess > 0) {
    const held = entries.filter((e) => e.leased).reduce((sum, e) => sum + e.bytes, 0);
    return {
      ok: false,
      reason: "held_by_leases",
      message: `${incomingBytes} bytes do not fit in HEARTH_MODEL_CACHE_BYTES=${budgetBytes}: running workers hold ${held} bytes of models in use`,
    };
  }
  return { ok: true, evict };
}
