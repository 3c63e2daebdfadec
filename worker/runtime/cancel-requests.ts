/**
 * Cancels that arrived for a job this worker does not run (yet). The API cancels a queued job by
 * removing it; only when a worker has already taken it does it broadcast a cancel. That message can
 * overtake the job itself on its way into this worker's processor, so it is kept here for
 * `keepMs` and checked when a job starts: a check in memory, not a Redis round trip per job.
 */
export class CancelRequests {
  private readonly pending = new Map<string, number>();

  constructor(
    private readonly keepMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  add(jobId: string): void {
    const now = this.now();
    if (this.pending.size >= 1000) {
      for (const [id, until] of this.pending) if (until <= now) this.pending.delete(id);
    }
    this.pending.set(jobId, now + this.keepMs);
  }

  /** True (once) when a cancel for `jobId` is pending. */
  take(jobId: string): boolean {
    const until = this.pending.get(jobId);
    if (until === undefined) return false;
    this.pending.delete(jobId);
    return until > this.now();
  }
}
