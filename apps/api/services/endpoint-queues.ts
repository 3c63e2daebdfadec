import { Job, Queue, type JobsOptions } from "bullmq";
import type { Redis } from "ioredis";
import { z } from "zod";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { jobData, jobResult, JOB_NAME, type JobData } from "../../../core/queue/job-catalog.ts";
import { HEARTH_EVENTS, hearthEntry, type RemovalReason } from "../../../core/log/log-entry.ts";
import { LOG_STREAM_MAX_LEN } from "../../../core/log/log-stream.ts";
import type { QueueState, StoredJob } from "../../../core/policy/job-view.ts";
import type { JobView } from "../../../core/contracts/job-view.ts";

/** A job that left BullMQ without finishing there (cancelled while queued): its final view, kept for its retention. */
const tombstone = z.object({
  endpointId: z.string(),
  view: z.object({ id: z.string(), status: z.enum(["CANCELLED", "TIMED_OUT"]), retries: z.number(), error: z.string().optional() }),
});
type Tombstone = z.infer<typeof tombstone>;

/** The slice of BullMQ's transaction wrapper we use: its own script calls plus XADD and EXEC. */
interface QueueTransaction {
  xadd(key: string, id: "*", ...fields: string[]): QueueTransaction;
  hset(key: string, data: Record<string, string>): QueueTransaction;
  exec(): Promise<[Error | null, unknown][] | null>;
}

/**
 * BullMQ queues of endpoints, sharing one connection (BullMQ only duplicates connections for
 * blocking commands, which a producer never issues), and reads of a job in the shape the pure
 * view policy takes. Every change made here is written to the endpoint's log in the same
 * transaction (see core/log).
 */
export class EndpointQueues {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly redis: Redis,
    readonly keys: RedisKeys,
  ) {}

  queue(endpointId: string): Queue {
    let q = this.queues.get(endpointId);
    if (!q) {
      q = new Queue(this.keys.queueName(endpointId), {
        connection: this.redis,
        prefix: this.keys.prefix,
        // The events stream is the endpoint's durable log: only its consumers trim it (see core/log).
        streams: { events: { maxLen: LOG_STREAM_MAX_LEN } },
      });
      // A producer-only Queue errors when Redis drops; ioredis reconnects, requests in flight fail on their own.
      q.on("error", () => {});
      this.queues.set(endpointId, q);
    }
    return q;
  }

  /**
   * Adds a job and its `accepted` log entry in one MULTI: BullMQ's own add script (which also
   * XADDs `added`/`waiting`) and our XADD commit together or not at all.
   */
  async add(endpointId: string, jobId: string, data: JobData, opts: JobsOptions, accepted: unknown): Promise<void> {
    const queue = this.queue(endpointId);
    // BullMQ's transaction wrapper (its scripts are defined on the connection it returns).
    const client = (await (queue as unknown as { backend: { client: Promise<{ multi(): QueueTransaction }> } }).backend.client);
    const multi = client.multi();
    // Every time, in the same MULTI (no extra round trip): any other `new Queue` on this queue (a
    // dashboard, a script) writes BullMQ's default cap of 10,000 back, which would trim the log.
    multi.hset(this.keys.queueMeta(endpointId), { "opts.maxLenEvents": String(LOG_STREAM_MAX_LEN) });
    const job = new Job(queue, JOB_NAME, data, { ...opts, jobId }, jobId);
    void job.addJob(multi as never);
    multi.xadd(this.keys.log(endpointId), "*", ...hearthEntry(HEARTH_EVENTS.accepted, accepted));
    const results = await multi.exec();
    if (!results) throw new Error("job add transaction was discarded");
    for (const [err, value] of results) {
      if (err) throw err;
      if (typeof value === "number" && value < 0) throw new Error(`BullMQ refused the job (code ${value})`);
    }
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
    return { stored, job };
  }

  /**
   * Removes a job that is not running, saying why in the log first. BullMQ's remove script writes
   * the `removed` entry atomically with the removal; the `removing` entry before it only names the
   * reason (a reason never followed by `removed`, because a worker took the job meanwhile, means
   * nothing to the log's readers). Returns false when the job is locked by a worker.
   */
  async remove(endpointId: string, job: Job, reason: RemovalReason): Promise<boolean> {
    await this.redis.xadd(this.keys.log(endpointId), "*", ...hearthEntry(HEARTH_EVENTS.removing, { jobId: job.id!, reason }));
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
