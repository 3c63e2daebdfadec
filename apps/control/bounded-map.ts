/**
 * A Map that holds at most `max` keys: setting a new key past that forgets the key written longest
 * ago (a key set again counts as written now). For what a metric must remember between batches of
 * the log; forgetting costs an observation, never memory without bound.
 */
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();
  /** Keys forgotten to make room, since this process started. */
  evicted = 0;

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`max must be a positive integer, got ${max}`);
  }

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): void {
    // Deleted first so that the key moves to the end of the insertion order.
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size <= this.max) return;
    const oldest = this.map.keys().next();
    if (!oldest.done) {
      this.map.delete(oldest.value);
      this.evicted++;
    }
  }

  delete(key: K): boolean {
    return this.map.delete(key);
  }
}
