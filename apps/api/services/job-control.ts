import type { Redis } from "ioredis";
import { isTerminal, type JobView } from "../../../core/contracts/job-view.ts";
import { isGone, toJobView } from "../../../core/policy/job-view.ts";
import type { ControlMessage, JobEvent } from "../../../core/queue/messages.ts";
import { ApiError } from "../api-error.ts";
import type { EndpointQueues } from "./endpoint-queues.ts";
import type { JobEvents } from "./job-events.ts";
import type { JobSubmitter } from "./job-submitter.ts";

export interface JobControlOptions {
  queues: EndpointQueues;
  events: JobEvents;
  redis: Redis;
  submitter: JobSubmitter;
  /** How long `/cancel` waits for the worker to confirm a running job stopped (ms). Default 1500, inside runpod-sdk's 3 s. */
  cancelConfirmMs?: number;
  now?: () => number;
}

const QUEUED = new Set(["waiting", "prioritized", "delayed", "waiting-children"]);

/**
 * Cancel, retry and purge: the operations that change a job after it was submitted. Each change is
 * logged with it (see EndpointQueues); the durable records follow from the log.
 */
export class JobControl {
  private readonly now: () => number;

  constructor(private readonly options: JobControlOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * Cancels a job. A queued job is removed and answered CANCELLED at once; a running job's worker
   * is told to abort it (BullMQ's AbortSignal reaches the handler) and this waits briefly for the
   * worker to confirm. A finished job is left as it is.
   */
  async cancel(endpointId: string, jobId: string): Promise<JobView> {
    const { queues, redis } = this.options;
    const keys = queues.keys;
    const read = await queues.readJob(endpointId, jobId);
    if (!read) {
      const tomb = await queues.readTombstone(endpointId, jobId);
      if (tomb) return tomb;
      throw ApiError.notFound("job");
    }
    const now = this.now();
    const view = toJobView(read.stored, now);
    if (!view || read.stored.data.endpointId !== endpointId) throw ApiError.notFound("job");
    if (isTerminal(view.status)) return view;

    const { data } = read.stored;

    if (QUEUED.has(read.stored.state)) {
      // Not removed: a worker took it meanwhile, and the cancel below reaches it (workers keep a
      // cancel for a job that has not reached their processor yet).
      if (await queues.remove(endpointId, read.job, "cancelled")) {
        const cancelled = { id: jobId, status: "CANCELLED" as const, retries: data.retries };
        await queues.writeTombstone(endpointId, cancelled, Math.min(data.retentionMs, data.expiresAt - now));
        const finished: JobEvent = { type: "finished", jobId, endpointId };
        await redis.multi().hincrby(keys.stats(endpointId), "cancelled", 1).publish(keys.jobEventsChannel(endpointId), JSON.stringify(finished)).exec();
        return cancelled;
      }
    }

    await this.options.events.ready(endpointId);
    const watch = this.options.events.watch(endpointId, jobId, (e) => e.type === "finished");
    try {
      const msg: ControlMessage = { type: "cancel", jobId, endpointId };
      await redis.publish(keys.controlChannel(endpointId), JSON.stringify(msg));
      await watch.next(this.options.cancelConfirmMs ?? 1500);
    } finally {
      watch.dispose();
    }
    const after = await queues.readJob(endpointId, jobId);
    const afterView = after ? toJobView(after.stored, this.now()) : undefined;
    // Until the worker confirms, the job is being cancelled: answer what the caller asked for.
    return afterView && isTerminal(afterView.status) ? afterView : { ...view, status: "CANCELLED" };
  }

  /** Re-queues a FAILED or TIMED_OUT job under the same id with its original input. */
  async retry(endpointId: string, jobId: string): Promise<JobView> {
    const { queues, redis } = this.options;
    const keys = queues.keys;
    const read = await queues.readJob(endpointId, jobId);
    const now = this.now();
    if (!read || read.stored.data.endpointId !== endpointId || isGone(read.stored, now)) throw ApiError.notFound("job");
    const view = toJobView(read.stored, now)!;
    if (view.status !== "FAILED" && view.status !== "TIMED_OUT") {
      throw new ApiError(400, "not_retryable", `only FAILED or TIMED_OUT jobs can be retried; this job is ${view.status}`);
    }
    const { data } = read.stored;
    const retried = {
      ...data,
      retries: data.retries + 1,
      submittedAt: now,
      // The TTL counts from submission; a retry is a new submission of the same job.
      expiresAt: now + (data.expiresAt - data.submittedAt),
    };
    await read.job.updateData(retried);
    await redis.del(keys.stream(endpointId, jobId));
    // Logged first: the record resets on this entry, and BullMQ's own `waiting` follows it.
    await queues.logRetried(endpointId, jobId, retried.retries);
    await read.job.retry(read.stored.state === "failed" ? "failed" : "completed");
    await redis.hincrby(keys.stats(endpointId), "retried", 1);
    if (!data.lowPriority) this.options.submitter.wake(endpointId);
    return { id: jobId, status: "IN_QUEUE", retries: retried.retries };
  }

  /** Removes every queued (not running) job of the endpoint; returns how many were removed. */
  async purge(endpointId: string): Promise<number> {
    const { queues } = this.options;
    const queued = await queues.queue(endpointId).getJobs(["wait", "prioritized", "delayed"]);
    // Taken by a worker meanwhile: it runs.
    const removed = await Promise.all(queued.map((job) => queues.remove(endpointId, job, "purged")));
    return removed.filter(Boolean).length;
  }
}
