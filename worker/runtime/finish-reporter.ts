import type { Redis } from "ioredis";
import type { JobResult } from "../../core/queue/job-catalog.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { JobEvent } from "../../core/queue/messages.ts";
import { withWorkerScripts } from "./worker-scripts.ts";

export interface FinishReporterOptions {
  redis: Redis;
  keys: RedisKeys;
  endpointId: string;
}

/** `stats:{endpoint}` field counted for each final status (the `/health` job counters). */
const statField: Record<JobResult["status"], string> = {
  COMPLETED: "completed",
  FAILED: "failed",
  TIMED_OUT: "failed",
  CANCELLED: "cancelled",
};

/** Outputs larger than this (as JSON) are left out of the finish message; waiters read them from the job. */
export const MAX_MESSAGE_OUTPUT_BYTES = 64 * 1024;

/**
 * Tells the API's waiters a job finished: one `finished` message on the endpoint's channel with
 * the envelope, and one counter. Called as the processor returns its envelope, just before
 * BullMQ's moveToFinished (which logs the finish durably) goes out on the same connection; the
 * message is a hint for speed, the log is the record. A streamed job's message leaves its output
 * out (the chunks went out already), and so does one whose output is large.
 */
export class FinishReporter {
  constructor(private readonly options: FinishReporterOptions) {}

  /** `token`: the worker's lock token for the job; without the lock, nothing is announced. */
  async report(jobId: string, token: string, result: JobResult): Promise<void> {
    const { redis, keys, endpointId } = this.options;
    let sent = result;
    if (result.output !== undefined && ((result.chunks ?? 0) > 0 || jsonBytesOver(result.output, MAX_MESSAGE_OUTPUT_BYTES))) {
      const { output: _left, ...rest } = result;
      sent = rest;
    }
    const event: JobEvent = { type: "finished", jobId, endpointId, result: sent, ...(sent !== result && { outputOmitted: true }) };
    await withWorkerScripts(redis).hearthFinishJob(
      keys.stats(endpointId),
      keys.jobLock(endpointId, jobId),
      statField[result.status],
      keys.jobEventsChannel(endpointId),
      JSON.stringify(event),
      token,
    );
  }
}

/**
 * Announces a job BullMQ moved to failed without our processor's envelope (its stalled checker
 * gave up on it): BullMQ has logged the failure already; this only wakes the waiters and counts it.
 */
export async function reportFailedByQueue(options: FinishReporterOptions, jobId: string, result: JobResult): Promise<void> {
  const { redis, keys, endpointId } = options;
  const event: JobEvent = { type: "finished", jobId, endpointId, result };
  await withWorkerScripts(redis).hearthFailedByQueue(keys.stats(endpointId), keys.jobEventsChannel(endpointId), JSON.stringify(event));
}

function jsonBytesOver(value: unknown, limit: number): boolean {
  const json = JSON.stringify(value);
  // Characters bound bytes from below and 3× from above: only the middle band needs counting.
  if (json === undefined || json.length <= limit / 3) return false;
  return json.length > limit || Buffer.byteLength(json) > limit;
}
