import type { Redis } from "ioredis";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { JobEvent } from "../../core/queue/messages.ts";
import { withWorkerScripts } from "./worker-scripts.ts";

/** Extra life of a stream buffer beyond the job's retention, so a reader polling at the edge still drains it. */
export const STREAM_MARGIN_MS = 60_000;

export interface StreamWriterOptions {
  redis: Redis;
  keys: RedisKeys;
  jobId: string;
  endpointId: string;
  /** Expiry to set on each push, ms: must cover the rest of the run plus the retention. */
  liveTtlMs: () => number;
}

/**
 * Appends a job's stream chunks to `stream:{jobId}` as `{"output": chunk}` (the shape `/stream`
 * returns) and announces each one. RPUSH, PEXPIRE and PUBLISH run in one script, so a reader woken
 * by the message always finds the chunk; pushes are awaited one at a time by the caller, so chunks
 * land exactly once and in order.
 */
export class StreamWriter {
  private count = 0;

  constructor(private readonly options: StreamWriterOptions) {}

  get chunks(): number {
    return this.count;
  }

  /** Serialises first, so a chunk that is not JSON fails the job instead of reaching Redis half-written. */
  async push(chunk: unknown): Promise<void> {
    const { redis, keys, jobId, endpointId } = this.options;
    const payload = JSON.stringify({ output: chunk });
    const event: JobEvent = { type: "chunk", jobId, endpointId };
    const key = keys.stream(jobId);
    await withWorkerScripts(redis).hearthPushChunk(
      key,
      payload,
      Math.max(1, Math.ceil(this.options.liveTtlMs())),
      keys.jobEventsChannel(),
      JSON.stringify(event),
    );
    this.count++;
  }

  /** Once the job is finished: the buffer lives for the job's retention (plus margin) from now. */
  async seal(retentionMs: number): Promise<void> {
    if (this.count === 0) return;
    await this.options.redis.pexpire(this.options.keys.stream(this.options.jobId), retentionMs + STREAM_MARGIN_MS);
  }
}
