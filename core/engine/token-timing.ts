import type { GenerationStats } from "../queue/job-catalog.ts";

/**
 * Time to first token and mean inter-token latency of one generation, from the arrival times of
 * the chunks that carried text. Times are given, never read: the caller owns the clock.
 */
export class TokenTiming {
  private first: number | undefined;
  private last: number | undefined;
  private count = 0;

  constructor(private readonly startedAt: number) {}

  /** Chunks that carried text so far (an engine streams about one token per chunk). */
  get tokens(): number {
    return this.count;
  }

  token(at: number): void {
    this.first ??= at;
    this.last = at;
    this.count++;
  }

  stats(): Pick<GenerationStats, "ttftMs" | "itlMs"> {
    if (this.first === undefined || this.last === undefined) return {};
    const ttftMs = Math.max(0, this.first - this.startedAt);
    return this.count > 1 ? { ttftMs, itlMs: (this.last - this.first) / (this.count - 1) } : { ttftMs };
  }
}
