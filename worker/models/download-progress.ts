import type { Log } from "../../core/log/process-log.ts";

/**
 * A download's progress as log lines: at most one per `intervalMs` while bytes arrive
 * (`bytes`, `totalBytes`, `bytesPerSecond` since the start), and one when it completes.
 */
export class DownloadProgress {
  bytes = 0;
  private total: number | undefined;

  /** The download's size, once its source said it. */
  get totalBytes(): number | undefined {
    return this.total;
  }
  private readonly startedAt: number;
  private lastLineAt: number;

  constructor(
    private readonly uri: string,
    private readonly clock: () => number,
    private readonly intervalMs: number,
    private readonly log: Log | undefined,
  ) {
    this.startedAt = clock();
    this.lastLineAt = this.startedAt;
  }

  expect(total: number): void {
    this.total = total;
    this.log?.({ msg: "model download started", uri: this.uri, totalBytes: total });
  }

  add(n: number): void {
    this.bytes += n;
    const now = this.clock();
    if (now - this.lastLineAt < this.intervalMs) return;
    this.lastLineAt = now;
    this.log?.({ msg: "model download progress", ...this.figures(now) });
  }

  done(digest: string): void {
    this.log?.({ msg: "model downloaded", ...this.figures(this.clock()), sha256: digest });
  }

  private figures(now: number): Record<string, unknown> {
    const seconds = Math.max(now - this.startedAt, 1) / 1000;
    return { uri: this.uri, bytes: this.bytes, ...(this.total !== undefined && { totalBytes: this.total }), bytesPerSecond: Math.round(this.bytes / seconds) };
  }
}
