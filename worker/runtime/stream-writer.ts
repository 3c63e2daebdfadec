import type { Redis } from "ioredis";
import type { RedisKeys } from "../../core/queue/keys.ts";
import { withWorkerScripts } from "./worker-scripts.ts";

/** Extra life of a stream buffer beyond the job's retention, so a reader polling at the edge still drains it. */
export const STREAM_MARGIN_MS = 60_000;

/** Chunks added while a write is in flight, past which `add` asks the caller to wait (backpressure). */
const MAX_BACKLOG = 512;

export interface StreamWriterOptions {
  redis: Redis;
  keys: RedisKeys;
  jobId: string;
  endpointId: string;
  /** Expiry to set on each push, ms: must cover the rest of the run plus the retention. */
  liveTtlMs: () => number;
  /**
   * Least ms between the starts of two writes (default 0): chunks arriving sooner wait and go
   * together in the next write. The first chunk after a quiet spell is always written at once.
   */
  lingerMs?: number;
  now?: () => number;
}

/**
 * Appends a job's stream chunks to `stream:{jobId}` as `{"output": chunk}` (the shape `/stream`
 * returns) and announces them with the chunks inside the message, so a live relay (the OpenAI SSE
 * route) forwards them without reading the list back. RPUSH, PEXPIRE and PUBLISH run in one
 * script, so a reader woken by the message always finds the chunks.
 *
 * Writes never overlap: chunks that arrive while one is in flight are sent together in the next.
 * An engine producing tokens faster than one Redis round trip then costs one write per round trip,
 * not one per token, and chunks still land exactly once and in order.
 */
export class StreamWriter {
  private count = 0;
  private pending: string[] = [];
  private inFlight: Promise<void> | undefined;
  private failure: unknown;
  private lastWriteAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: StreamWriterOptions) {}

  /** Chunks written to Redis so far. */
  get chunks(): number {
    return this.count;
  }

  /**
   * Queues one chunk and starts a write if none is in flight. Serialises first, so a chunk that is
   * not JSON throws here instead of reaching Redis half-written; a failed earlier write throws too.
   * Returns a promise only when the backlog is long: the caller should await it before adding more.
   */
  add(chunk: unknown): Promise<void> | undefined {
    if (this.failure !== undefined) throw this.failure;
    this.pending.push(JSON.stringify({ output: chunk }));
    this.kick();
    return this.pending.length >= MAX_BACKLOG ? this.flush() : undefined;
  }

  private now(): number {
    return this.options.now ? this.options.now() : performance.now();
  }

  /** Starts a write now, or once the linger since the last one has passed. */
  private kick(): void {
    if (this.inFlight || this.timer || this.pending.length === 0) return;
    const wait = this.lastWriteAt + (this.options.lingerMs ?? 0) - this.now();
    if (wait <= 0) this.startWrite(false);
    else
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.kick();
      }, wait);
  }

  /** Resolves once every chunk added so far is in Redis; rejects with the write error if one failed. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.inFlight) {
        await this.inFlight;
        continue;
      }
      // The end of a stream does not linger: what is pending goes now.
      clearTimeout(this.timer);
      this.timer = undefined;
      if (this.pending.length === 0 || this.failure !== undefined) break;
      this.startWrite(true);
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /** Once the job is finished: the buffer lives for the job's retention (plus margin) from now. */
  async seal(retentionMs: number): Promise<void> {
    if (this.count === 0) return;
    await this.options.redis.pexpire(this.options.keys.stream(this.options.endpointId, this.options.jobId), retentionMs + STREAM_MARGIN_MS);
  }

  /** Runs the writes; `inFlight` is set before the first of them and cleared after the last. */
  private startWrite(force: boolean): void {
    const run = this.writeBatches(force);
    this.inFlight = run;
    void run.finally(() => {
      if (this.inFlight === run) this.inFlight = undefined;
      if (this.failure === undefined) this.kick();
    });
  }

  private async writeBatches(force: boolean): Promise<void> {
    const { redis, keys, jobId, endpointId } = this.options;
    const linger = this.options.lingerMs ?? 0;
    const now = () => this.now();
    try {
      while (this.pending.length > 0) {
        if (!force && linger > 0 && now() - this.lastWriteAt < linger) break; // kick() sets the timer
        this.lastWriteAt = now();
        const batch = this.pending;
        this.pending = [];
        // The chunk event, built around payloads that are JSON already (see JobEvent "chunk").
        const event = `{"type":"chunk","jobId":${JSON.stringify(jobId)},"endpointId":${JSON.stringify(endpointId)},"chunks":[${batch.join(",")}]}`;
        await withWorkerScripts(redis).hearthPushChunks(
          keys.stream(endpointId, jobId),
          Math.max(1, Math.ceil(this.options.liveTtlMs())),
          keys.jobEventsChannel(endpointId),
          event,
          ...batch,
        );
        this.count += batch.length;
      }
    } catch (err) {
      this.failure = err;
      this.pending = [];
    }
  }
}
