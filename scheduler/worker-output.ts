import type { Redis } from "ioredis";
import type { RedisKeys } from "../core/queue/keys.ts";
import { OUTPUT_LINE_MAX_CHARS, OUTPUT_LINES_KEPT, OUTPUT_TTL_SECONDS, type OutputLine } from "../core/contracts/output-line.ts";
import { errorFields, type Log } from "../core/log/process-log.ts";

export interface WorkerOutputOptions {
  redis: Redis;
  keys: RedisKeys;
  /** Lines are written in one pipeline at most this often, ms. Default 200. */
  flushMs?: number;
  /**
   * Lines held while Redis is away; newer ones are dropped beyond it (counted and logged): output is
   * for diagnosis, never for truth, and must not grow the scheduler without bound. Default 20 000.
   */
  maxBuffered?: number;
  log?: Log;
  now?: () => number;
}

const JOB_ID = /^[\w-]{1,128}$/;

/**
 * Keeps the last lines each worker printed, and each job's lines, in Redis for the logs routes
 * (`GET /api/v1/endpoints/:id/workers/:workerId/logs`, `GET /api/v1/jobs/:id/logs`). A worker's
 * JSON line that names a `jobId` (every line its runtime logs about a job, and whatever the
 * job's handler wrote through `console`) goes to that job's list too.
 */
export class WorkerOutput {
  private readonly pending = new Map<string, string[]>();
  private buffered = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly now: () => number;

  constructor(private readonly options: WorkerOutputOptions) {
    this.now = options.now ?? Date.now;
  }

  add(worker: { endpointId: string; workerId: string }, stream: OutputLine["stream"], text: string): void {
    if (this.buffered >= (this.options.maxBuffered ?? 20_000)) {
      this.dropped++;
      return;
    }
    const line = text.length > OUTPUT_LINE_MAX_CHARS ? `${text.slice(0, OUTPUT_LINE_MAX_CHARS - 1)}…` : text;
    const entry = JSON.stringify({ at: this.now(), stream, line } satisfies OutputLine);
    this.push(this.options.keys.workerOutput(worker.endpointId, worker.workerId), entry);
    const jobId = jobIdOf(text);
    if (jobId !== undefined) this.push(this.options.keys.jobOutput(worker.endpointId, jobId), entry);
    this.timer ??= setTimeout(() => void this.flush(), this.options.flushMs ?? 200);
  }

  /** Writes what is buffered; on failure keeps it for the next try. */
  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.flushing;
    await this.flush();
    // Redis away at the end: what is left is given up rather than holding the process open.
    if (this.timer) clearTimeout(this.timer);
  }

  private push(key: string, entry: string): void {
    const list = this.pending.get(key);
    if (list) list.push(entry);
    else this.pending.set(key, [entry]);
    this.buffered++;
  }

  private async write(): Promise<void> {
    this.timer = undefined;
    if (this.pending.size === 0) return;
    const batch = new Map(this.pending);
    this.pending.clear();
    const count = this.buffered;
    this.buffered = 0;
    const pipeline = this.options.redis.pipeline();
    for (const [key, entries] of batch) {
      pipeline.rpush(key, ...entries).ltrim(key, -OUTPUT_LINES_KEPT, -1).expire(key, OUTPUT_TTL_SECONDS);
    }
    try {
      const results = await pipeline.exec();
      for (const [err] of results ?? []) if (err) throw err;
      if (this.dropped > 0) {
        this.options.log?.({ level: "warn", msg: "worker output lines dropped while Redis was away", dropped: this.dropped });
        this.dropped = 0;
      }
    } catch (err) {
      // Back in front of anything newer, within the bound; retried by the next line or the next timer.
      for (const [key, entries] of batch) this.pending.set(key, [...entries, ...(this.pending.get(key) ?? [])]);
      this.buffered += count;
      this.options.log?.({ level: "warn", msg: "worker output not written", ...errorFields(err) });
      this.timer ??= setTimeout(() => void this.flush(), 1000);
    }
  }
}

/** The `jobId` of a worker's JSON log line, if it has a plausible one. */
function jobIdOf(line: string): string | undefined {
  if (!line.startsWith("{") || !line.includes('"jobId"')) return undefined;
  try {
    const parsed = JSON.parse(line) as { jobId?: unknown };
    return typeof parsed.jobId === "string" && JOB_ID.test(parsed.jobId) ? parsed.jobId : undefined;
  } catch {
    return undefined;
  }
}
