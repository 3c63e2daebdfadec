/**
 * Runs `fn` for a key at most once at a time. A call while a run is in flight does not start a second
 * run beside it: it asks for exactly one more run after the current one (with the latest argument),
 * and resolves when that run is done. So a burst of wakes converges an endpoint once or twice, never
 * concurrently, and no wake is lost.
 */
export class Coalescer<A> {
  private readonly entries = new Map<string, { again: boolean; arg: A; done: Promise<void> }>();

  constructor(private readonly fn: (key: string, arg: A) => Promise<void>) {}

  run(key: string, arg: A): Promise<void> {
    const current = this.entries.get(key);
    if (current) {
      current.again = true;
      current.arg = arg;
      return current.done;
    }
    const entry = { again: false, arg, done: Promise.resolve() };
    entry.done = (async () => {
      try {
        do {
          entry.again = false;
          await this.fn(key, entry.arg);
        } while (entry.again);
      } finally {
        this.entries.delete(key);
      }
    })();
    this.entries.set(key, entry);
    return entry.done;
  }

  /** Resolves when every run in flight now (and the reruns they owe) has finished; never rejects. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.entries.values()].map((e) => e.done));
  }
}
