import { eq } from "drizzle-orm";
import type { Redis } from "ioredis";
import type { Db } from "../../../core/db/client.ts";
import { jobs } from "../../../core/db/schema.ts";
import type { JobRecordBuffer } from "../../../core/db/job-records.ts";
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
  db: Db;
  records: JobRecordBuffer;
  submitter: JobSubmitter;
  /** How long `/cancel` waits for the worker to confirm a running job stopped (ms). Default 1500, inside runpod-sdk's 3 s. */
  cancelConfirmMs?: number;
  now?: () => number;
}

const QUEUED = new Set(["waiting", "prioritized", "delayed", "waiting-children"]);

/** Cancel, retry and purge: the operations that change a job after it was submitted. */
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
      const removed = await read.job.remove().then(
        () => true,
        () => false, // a worker locked it meanwhile: cancel it as a running job
      );
      // Not removed: a worker took it meanwhile, and the broadcast below reaches it (workers keep a
      // cancel for a job that has not reached their processor yet).
      if (removed) {
        const cancelled: JobView = { id: jobId, status: "CANCELLED", retries: data.retries };
        await queues.writeTombstone(endpointId, cancelled, Math.min(data.retentionMs, data.expiresAt - now));
        const finished: JobEvent = { type: "finished", jobId, endpointId };
        await redis
          .multi()
          .hincrby(keys.stats(endpointId), "cancelled", 1)
          .publish(keys.jobEventsChannel(), JSON.stringify(finished))
          .exec();
        this.options.records.push({ id: jobId, tenantId: data.tenantId, endpointId, status: "CANCELLED", statusAt: now, finishedAt: new Date(now) });
        return cancelled;
      }
    }

    const watch = this.options.events.watch(jobId, (e) => e.type === "finished");
    try {
      const msg: ControlMessage = { type: "cancel", jobId, endpointId };
      await redis.publish(keys.controlChannel(), JSON.stringify(msg));
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
    await redis.del(keys.stream(jobId));
    await read.job.retry(read.stored.state === "failed" ? "failed" : "completed");
    await redis.hincrby(keys.stats(endpointId), "retried", 1);
    // Off the hot path, so written at once: a buffered write could not clear the old output.
    await this.options.db
      .update(jobs)
      .set({
        status: "IN_QUEUE",
        statusAt: now,
        retries: retried.retries,
        submittedAt: new Date(now),
        startedAt: null,
        finishedAt: null,
        delayTimeMs: null,
        executionTimeMs: null,
        error: null,
        output: null,
        outputRef: null,
        workerId: null,
      })
      .where(eq(jobs.id, jobId));
    if (!data.lowPriority) this.options.submitter.wake(endpointId);
    return { id: jobId, status: "IN_QUEUE", retries: retried.retries };
  }

  /** Removes every queued (not running) job of the endpoint; returns how many were removed. */
  async purge(endpointId: string): Promise<number> {
    const queue = this.options.queues.queue(endpointId);
    const queued = await queue.getJobs(["wait", "prioritized", "delayed"]);
    const now = this.now();
    const results = await Promise.all(
      queued.map((job) =>
        job.remove().then(
          () => job,
          () => undefined, // taken by a worker meanwhile: it runs
        ),
      ),
    );
    let removed = 0;
    for (const job of results) {
      if (!job) continue;
      removed++;
      const data = job.data as { tenantId?: string };
      if (data.tenantId && job.id) {
        this.options.records.push({ id: job.id, tenantId: data.tenantId, endpointId, status: "CANCELLED", statusAt: now, error: "purged", finishedAt: new Date(now) });
      }
    }
    return removed;
  }
}
