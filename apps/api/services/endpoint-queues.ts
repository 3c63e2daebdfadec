import { Job, Queue, type JobsOptions } from "bullmq";
import type { Redis } from "ioredis";
import { z } from "zod";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { jobData, jobProgress, jobResult, type JobData } from "../../../core/queue/job-catalog.ts";
import { acceptedJobName, HEARTH_EVENTS, hearthEntry, type AcceptedPayload, type RemovalReason } from "../../../core/log/log-entry.ts";
import { LOG_STREAM_MAX_LEN } from "../../../core/log/log-stream.ts";
import type { QueueState, StoredJob } from "../../../core/policy/job-view.ts";
import type { JobView } from "../../../core/contracts/job-view.ts";

/** A job that left BullMQ without finishing there (cancelled while queued): its final view, kept for its retention. */
const tombstone = z.object({
  endpointId: z.string(),
  view: z.object({ id: z.string(), status: z.enum(["CANCELLED", "TIMED_OUT"]), retries: z.number(), error: z.string().optional() }),
});
type Tombstone = z.infer<typeof tombstone>;

export interface EndpointQueuesOptions {
  /**
   * How many endpoints' Queue objects are kept (the least recently used is closed first). Each holds
   * listeners on the shared connection and a little memory, and costs one round trip to build again.
   * Default 1000.
   */
  maxQueues?: number;
}

/**
 * BullMQ queues of endpoints, sharing one connection (BullMQ only duplicates connections for
 * blocking commands, which a producer never issues), and reads of a job in the shape the pure
 * view policy takes. Every change made here is written to the endpoint's log in the same
 * transaction (see core/log).
 */
export class EndpointQueues {
  /** In order of last use, oldest first. */
  private readonly queues = new Map<string, Queue>();
  private readonly metaWritten = new Set<string>();
  private readonly maxQueues: number;

  constructor(
    private readonly redis: Redis,
    readonly keys: RedisKeys,
    options: EndpointQueuesOptions = {},
  ) {
    this.maxQueues = Math.max(1, options.maxQueues ?? 1000);
  }

  queue(endpointId: string): Queue {
    let q = this.queues.get(endpointId);
    if (q) {
      this.queues.delete(endpointId);
      this.queues.set(endpointId, q);
      return q;
    }
    q = new Queue(this.keys.queueName(endpointId), {
      connection: this.redis,
      prefix: this.keys.prefix,
      // The events stream is the endpoint's durable log: only its consumers trim it (see core/log).
      streams: { events: { maxLen: LOG_STREAM_MAX_LEN } },
    });
    // A producer-only Queue errors when Redis drops; ioredis reconnects, requests in flight fail on their own.
    q.on("error", () => {});
    this.queues.set(endpointId, q);
    if (this.queues.size > this.maxQueues) {
      const oldest = this.queues.keys().next().value;
      if (oldest !== undefined) this.forget(oldest);
    }
    return q;
  }

  /**
   * Closes and drops an endpoint's Queue (deleted or changed endpoints, and the least recently used).
   * Safe while a request still holds it: on a shared connection `close()` only removes the Queue's
   * listeners from the connection, and the Queue keeps working for that request.
   */
  forget(endpointId: string): void {
    const q = this.queues.get(endpointId);
    this.queues.delete(endpointId);
    this.metaWritten.delete(endpointId);
    void q?.close().catch(() => {});
  }

  /** Whether this process holds a Queue object for the endpoint (for tests and metrics). */
  holds(endpointId: string): boolean {
    return this.queues.has(endpointId);
  }

  /** How many Queue objects this process holds. */
  get size(): number {
    return this.queues.size;
  }

  /**
   * Adds a job whose BullMQ name is its acceptance record (`acceptedJobName`): BullMQ's add script
   * stores the job and appends `added` with that name to the log in one script, so the job and its
   * `accepted` entry exist together or not at all, at the cost of one command (a MULTI with an XADD
   * of our own cost the API a sixth of its throughput: ioredis copies every script BullMQ defines
   * into each transaction object).
   */
  async add(endpointId: string, jobId: string, data: JobData, opts: JobsOptions, accepted: AcceptedPayload): Promise<void> {
    if (!this.metaWritten.has(endpointId)) {
      // The Queue writes this too, but asynchronously; a job added first must not find the default cap.
      await this.redis.hset(this.keys.queueMeta(endpointId), "opts.maxLenEvents", String(LOG_STREAM_MAX_LEN));
      this.metaWritten.add(endpointId);
    }
    await this.queue(endpointId).add(acceptedJobName(accepted), data, { ...opts, jobId });
  }

  /** The job as stored, or undefined if BullMQ does not have it (see `readTombstone`). */
  async readJob(endpointId: string, jobId: string): Promise<{ stored: StoredJob; job: Job } | undefined> {
    const queue = this.queue(endpointId);
    // State first, then the hash: a job that completes between the two reads then shows its
    // result; the other order could pair "completed" with a hash read before the result landed.
    let state = (await queue.getJobState(jobId)) as QueueState;
    if (state === "unknown") return undefined;
    const job = await Job.fromId(queue, jobId);
    if (!job) return undefined;
    if (state !== "completed" && job.finishedOn !== undefined) {
      state = (await queue.getJobState(jobId)) as QueueState;
    }
    const data = jobData.safeParse(job.data);
    if (!data.success) return undefined; // not a Hearth job: treat as absent
    const result = state === "completed" ? jobResult.safeParse(job.returnvalue) : undefined;
    const stored: StoredJob = { id: jobId, state, data: data.data };
    if (result?.success) stored.result = result.data;
    if (job.failedReason) stored.failedReason = job.failedReason;
    if (job.processedOn) stored.processedOn = job.processedOn;
    if (job.finishedOn) stored.finishedOn = job.finishedOn;
    if (job.processedBy) stored.processedBy = job.processedBy;
    // Written by the worker's processor as `{output}` (a RunPod worker's progress_update); anything else is not ours.
    const progress = jobProgress.safeParse(job.progress);
    if (state === "active" && progress.success) stored.progress = progress.data;
    return { stored, job };
  }

  /**
   * Removes a job that is not running, saying why in the log first. BullMQ's remove script writes
   * the `removed` entry atomically with the removal; the `removing` entry before it only names the
   * reason (a reason never followed by `removed`, because a worker took the job meanwhile, means
   * nothing to the log's readers). Returns false when the job is locked by a worker.
   */
  async remove(endpointId: string, job: Job, reason: RemovalReason): Promise<boolean> {
    const data = jobData.safeParse(job.data);
    const hooked = data.success && (data.data.webhook !== undefined || data.data.webhookV2 !== undefined);
    const entry = { jobId: job.id!, reason, ...(hooked && { input: data.data.input }) };
    await this.redis.xadd(this.keys.log(endpointId), "*", ...hearthEntry(HEARTH_EVENTS.removing, entry));
    return job.remove().then(
      () => true,
      () => false,
    );
  }

  /** Logs a retry of a finished job (`/retry`) ahead of BullMQ's own re-queue. */
  async logRetried(endpointId: string, jobId: string, retries: number): Promise<void> {
    await this.redis.xadd(this.keys.log(endpointId), "*", ...hearthEntry(HEARTH_EVENTS.retried, { jobId, retries }));
  }

  async readTombstone(endpointId: string, jobId: string): Promise<JobView | undefined> {
    const raw = await this.redis.get(this.keys.tombstone(endpointId, jobId));
    if (!raw) return undefined;
    try {
      const t = tombstone.safeParse(JSON.parse(raw));
      return t.success && t.data.endpointId === endpointId ? t.data.view : undefined;
    } catch {
      return undefined;
    }
  }

  async writeTombstone(endpointId: string, view: Tombstone["view"], keepMs: number): Promise<void> {
    const t: Tombstone = { endpointId, view };
    await this.redis.set(this.keys.tombstone(endpointId, view.id), JSON.stringify(t), "PX", Math.max(1000, Math.round(keepMs)));
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => {})));
    this.queues.clear();
  }
}
