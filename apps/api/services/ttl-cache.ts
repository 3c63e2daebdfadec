/**
 * A small map whose entries expire after `ttlMs`, bounded to `maxEntries` (oldest inserted evicted
 * first). Used for keys and endpoints on the job path; invalidation messages delete entries
 * early, the TTL bounds staleness if a message is missed.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expiresAt: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * An entry past its TTL but no older than `maxStaleMs` beyond it (stale-if-error: served while
   * the store behind the cache is unreachable). Invalidations still delete entries at once.
   */
  getStale(key: string, maxStaleMs: number): V | undefined {
    const e = this.entries.get(key);
    return e && e.expiresAt + maxStaleMs > this.now() ? e.value : undefined;
  }

  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    // Expired entries stay (until evicted or replaced) for `getStale`.
    if (e.expiresAt <= this.now()) return undefined;
    return e.value;
  }

  set(key: string, value: V): void {
    if (this.entries.size >= this.maxEntries && !this.entries.has(key)) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(key, { value, expiresAt: this.now() + this.ttlMs });
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}
