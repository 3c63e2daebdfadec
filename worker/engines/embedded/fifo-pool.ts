interface Waiter<T> {
  resolve: (item: T) => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/**
 * A fixed set of items (context sequences) lent to one holder at a time. When none is free,
 * callers wait in arrival order: a burst beyond the pool's size queues instead of failing, and no
 * caller is overtaken. A waiter whose signal aborts leaves the queue at once.
 *
 * Invariant: a waiter exists only while no item is free (`release` hands an item straight to the
 * oldest waiter).
 */
export class FifoPool<T> {
  private readonly free: T[];
  private readonly waiters: Waiter<T>[] = [];
  private closedWith: unknown;
  private closed = false;

  constructor(private readonly items: readonly T[]) {
    if (items.length === 0) throw new Error("a pool needs at least one item");
    this.free = [...items];
  }

  /** Items lent out now. */
  get inUse(): number {
    return this.items.length - this.free.length;
  }

  /** Callers waiting for an item. */
  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Resolves with a free item, or with the next one released once the callers queued before this
   * one are served. `rank` picks among several free items (the highest wins; ties go to the most
   * recently released). Rejects with `signal.reason` if the signal aborts first, and with the
   * pool's close reason once it is closed.
   */
  acquire(signal?: AbortSignal, rank?: (item: T) => number): Promise<T> {
    if (this.closed) return Promise.reject(this.closedWith);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.free.length > 0) return Promise.resolve(this.takeFree(rank));
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(signal?.reason);
        },
      };
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Returns an item lent by `acquire`; the oldest waiter gets it, if any. */
  release(item: T): void {
    const next = this.waiters.shift();
    if (!next) {
      this.free.push(item);
      return;
    }
    next.signal?.removeEventListener("abort", next.onAbort);
    next.resolve(item);
  }

  /** Rejects every waiter and every later `acquire` with `reason`; lent items may still be released. */
  close(reason: unknown): void {
    this.closed = true;
    this.closedWith = reason;
    for (const waiter of this.waiters.splice(0)) {
      waiter.signal?.removeEventListener("abort", waiter.onAbort);
      waiter.reject(reason);
    }
  }

  private takeFree(rank: ((item: T) => number) | undefined): T {
    let best = this.free.length - 1;
    if (rank) {
      let bestScore = rank(this.free[best]!);
      for (let i = best - 1; i >= 0; i--) {
        const score = rank(this.free[i]!);
        if (score > bestScore) [best, bestScore] = [i, score];
      }
    }
    return this.free.splice(best, 1)[0]!;
  }
}
