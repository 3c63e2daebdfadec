import type { Redis } from "ioredis";
import { jobData, type JobResult } from "../../core/queue/job-catalog.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { JobEvent } from "../../core/queue/messages.ts";
import type { JobRecordWrite } from "../../core/db/job-records.ts";
import { withWorkerScripts } from "./worker-scripts.ts";

export interface FinishReporterOptions {
  redis: Redis;
  keys: RedisKeys;
  endpointId: string;
  records: { push(write: JobRecordWrite): void };
}

/** `stats:{endpoint}` field counted for each final status (the `/health` job counters). */
const statField: Record<JobResult["status"], string> = {
  COMPLETED: "completed",
  FAILED: "failed",
  TIMED_OUT: "failed",
  CANCELLED: "cancelled",
};

/**
 * Tells the world a job finished: one `finished` message with the envelope (for waiters), one
 * counter, one durable record. Called as the processor returns its envelope, just before BullMQ's
 * moveToFinished goes out on the same connection; a waiter should answer from the envelope in the
 * message, since a re-read in that instant may still find the job active.
 */
export class FinishReporter {
  constructor(private readonly options: FinishReporterOptions) {}

  async report(jobId: string, rawData: unknown, result: JobResult): Promise<void> {
    const { redis, keys, endpointId, records } = this.options;
    const event: JobEvent = { type: "finished", jobId, endpointId, result };
    await withWorkerScripts(redis).hearthFinishJob(keys.stats(endpointId), statField[result.status], keys.jobEventsChannel(), JSON.stringify(event));

    const data = jobData.safeParse(rawData);
    // Without valid data there is no tenant to file the record under; the envelope above says why.
    if (!data.success) return;
    const d = data.data;
    records.push({
      id: jobId,
      tenantId: d.tenantId,
      endpointId: d.endpointId,
      status: result.status,
      statusAt: result.finishedAt,
      submittedAt: new Date(d.submittedAt),
      startedAt: new Date(result.startedAt),
      finishedAt: new Date(result.finishedAt),
      delayTimeMs: Math.max(0, result.startedAt - d.submittedAt),
      executionTimeMs: Math.max(0, result.finishedAt - result.startedAt),
      workerId: result.workerId,
      retries: d.retries,
      output: result.output,
      error: result.error ?? null,
      ...(result.generation && {
        ttftMs: result.generation.ttftMs === undefined ? null : Math.round(result.generation.ttftMs),
        itlMs: result.generation.itlMs ?? null,
        promptTokens: result.generation.promptTokens ?? null,
        completionTokens: result.generation.completionTokens ?? null,
      }),
    });
  }
}
