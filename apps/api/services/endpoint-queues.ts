import { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { jobData, jobResult } from "../../../core/queue/job-catalog.ts";
import type { QueueState, StoredJob } from "../../../core/policy/job-view.ts";
import type { JobView } from "../../../core/contracts/job-view.ts";

/** A job that left BullMQ without finishing there (cancelled while queued): its final view, kept for its retention. */
export interface Tombstone {
  endpointId: string;
  view: JobView;
}

/**
 * BullMQ queues of endpoints, sharing one connection (BullMQ only duplicates connections for
 * blocking commands, which a producer never issues), and reads of a job in the shape the pure
 * view policy takes.
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
      q = new Queue(this.keys.queueName(endpointId), { connection: this.redis, prefix: this.keys.prefix });
      // A producer-only Queue errors when Redis drops; ioredis reconnects, requests in flight fail on their own.
      q.on("error", () => {});
      this.queues.set(endpointId, q);
    }
    return q;
  }

  /** The job as stored, or undefined if BullMQ does not have it (see `readTombstone`). */
  async readJob(endpointId: string, jobId: string): Promise<{ stored: StoredJob; job: Job } | undefined> {
    const queue = this.queue(endpointId);
    // State first, then the hash: a job that completes between the two reads then shows its
    // result; the other order could pair "completed" with a hash read before the result landed.
    let state = (await queue.getJobState(jobId)) as QueueState;
    if (state === "unknown") return undefined;
    let job = await Job.fromId(queue, jobId);
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

  async readTombstone(endpointId: string, jobId: string): Promise<JobView | undefined> {
    const raw = await this.redis.get(this.keys.tombstone(jobId));
    if (!raw) return undefined;
    try {
      const t = JSON.parse(raw) as Tombstone;
      return t.endpointId === endpointId ? t.view : undefined;
    } catch {
      return undefined;
    }
  }

  async writeTombstone(endpointId: string, view: JobView, keepMs: number): Promise<void> {
    const t: Tombstone = { endpointId, view };
    await this.redis.set(this.keys.tombstone(view.id), JSON.stringify(t), "PX", Math.max(1000, Math.round(keepMs)));
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => {})));
    this.queues.clear();
  }
}
