/**
 * The chunks a RunPod worker posts for one generator job, as the async iterable the runtime reads.
 * `push` resolves once fewer than `highWater` chunks wait: the gateway acknowledges the post only
 * then, so a worker that yields faster than Redis takes its chunks is slowed down instead of
 * filling this process's memory (the SDK posts its yields one after another).
 */
export class ChunkQueue implements AsyncIterable<unknown> {
  private readonly items: unknown[] = [];
  private readonly roomWaiters: Array<() => void> = [];
  private reader: ((r: IteratorResult<unknown>) => void) | undefined;
  private readerFail: ((err: unknown) => void) | undefined;
  private ended = false;
  private failure: { err: unknown } | undefined;
  private abandoned = false;

  constructor(private readonly highWater = 64) {}

  push(chunk: unknown): Promise<void> {
    if (this.ended || this.failure || this.abandoned) return Promise.resolve();
    if (this.reader) {
      const read = this.reader;
      this.reader = this.readerFail = undefined;
      read({ value: chunk, done: false });
      return Promise.resolve();
    }
    this.items.push(chunk);
    if (this.items.length < this.highWater) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  end(): void {
    this.ended = true;
    this.wakeReader();
  }

  fail(err: unknown): void {
    if (this.ended || this.failure) return;
    this.failure = { err };
    this.wakeReader();
    this.releaseWriters();
  }

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    return {
      next: () => {
        if (this.items.length > 0) {
          const value = this.items.shift();
          if (this.items.length < this.highWater) this.releaseWriters();
          return Promise.resolve({ value, done: false });
        }
        if (this.failure) return Promise.reject(this.failure.err);
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.reader = resolve;
          this.readerFail = reject;
        });
      },
      // The runtime stopped reading (abort): nothing more is kept, and no post waits for room.
      return: () => {
        this.abandoned = true;
        this.items.length = 0;
        this.releaseWriters();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  private wakeReader(): void {
    if (!this.reader || this.items.length > 0) return;
    const [read, fail] = [this.reader, this.readerFail];
    this.reader = this.readerFail = undefined;
    if (this.failure) fail?.(this.failure.err);
    else read({ value: undefined, done: true });
  }

  private releaseWriters(): void {
    for (const wake of this.roomWaiters.splice(0)) wake();
  }
}
