import type { Redis } from "ioredis";
import type { RedisKeys } from "../../core/queue/keys.ts";
import { withWorkerScripts } from "./worker-scripts.ts";

/** Extra life of a stream buffer beyond the job's retention, so a reader polling at the edge still drains it. */
export const STREAM_MARGIN_MS = 60_000;

/** Chunks added while a write is in flight, past which `add` asks the caller to wait (backpressure). */
const MAX_BACKLOG = 512;
/** The same in bytes of JSON: a stream of large chunks holds about this much in the worker, not 512 chunks' worth. */
const MAX_BACKLOG_BYTES = 1024 * 1024;
/**
 * The most bytes of chunks one write carries (one chunk at least). A write builds strings of its
 * size (the event, the command); past V8's regular object size (128 KB) they land in its large
 * object space, which only a full GC frees: 1 MB writes let a 256 MB stream leave hundreds of MB of
 * garbage in the worker before one ran.
 */
const MAX_WRITE_BYTES = 48 * 1024;

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
  private pendingBytes = 0;
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
    const json = JSON.stringify({ output: chunk });
    this.pending.push(json);
    this.pendingBytes += json.length;
    this.kick();
    return this.pending.length >= MAX_BACKLOG || this.pendingBytes >= MAX_BACKLOG_BYTES ? this.flush() : undefined;
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
        const batch = this.takeBatch();
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
      this.pendingBytes = 0;
    }
  }

  /** The oldest pending chunks, up to MAX_WRITE_BYTES of them (at least one). */
  private takeBatch(): string[] {
    let n = 0;
    let bytes = 0;
    while (n < this.pending.length && (n === 0 || bytes + this.pending[n]!.length <= MAX_WRITE_BYTES)) bytes += this.pending[n++]!.length;
    const batch = n === this.pending.length ? this.pending : this.pending.slice(0, n);
    this.pending = n === this.pending.length ? [] : this.pending.slice(n);
    this.pendingBytes -= bytes;
    return batch;
  }
}
