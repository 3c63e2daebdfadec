import type { z } from "zod";
import type { healthView, jobView, streamPage } from "../../../../core/contracts/job-view.ts";
import { ApiError } from "../../api-error.ts";
import { RateLimitError } from "../../services/rate-limiter.ts";
import { insufficientScope, invalidField } from "../route-kit.ts";
import { ENDPOINT_ID, JOB_ID, SYNC_JOB_ID, WORKER_ID } from "./example-ids.ts";

/*
 * Examples of the RunPod job routes (runpod-contract.md §1.3-1.6): the job object in the states a
 * client meets, the stream page, `/health`, and the errors of admission.
 */

type Job = z.input<typeof jobView>;

/** What a text-generation handler returns (a handler's output is whatever JSON it returns). */
const output = { text: "Hearth runs RunPod-style serverless workers on your own GPUs.", tokens: 14 };

/** `/status` of a finished job: 824 ms queued, 1437 ms in the handler. */
export const completedJob: Job = { id: JOB_ID, status: "COMPLETED", delayTime: 824, executionTime: 1437, output, workerId: WORKER_ID, retries: 0 };

/** `/runsync` that finished within its wait. */
export const completedSyncJob: Job = { ...completedJob, id: SYNC_JOB_ID, delayTime: 31, executionTime: 1502 };

/** Still queued after 5 s without a ready worker: why, and how far the booting worker is. */
export const waitingJob: Job = {
  id: JOB_ID,
  status: "IN_QUEUE",
  retries: 0,
  waitReason: "starting",
  waitDetail: { phase: "weights_fetch", progress: { bytes: 6_442_450_944, totalBytes: 15_231_233_024 } },
};

/** `/cancel` of a job a worker had taken. */
export const cancelledJob: Job = { id: JOB_ID, status: "CANCELLED", delayTime: 824, workerId: WORKER_ID, retries: 0 };

/** `/retry` answers the job queued again under its id, its retries counted. */
export const retriedJob: Job = { id: JOB_ID, status: "IN_QUEUE", retries: 1 };

/** `/run`: the id to poll. */
export const queuedJob = { id: JOB_ID, status: "IN_QUEUE" } as const;

/** One `/stream` poll: the chunks a generator handler yielded since the previous one. */
export const streamExample: z.input<typeof streamPage> = {
  status: "IN_PROGRESS",
  stream: [{ output: { index: 0, text: "Hearth runs" } }, { output: { index: 1, text: " RunPod-style" } }],
};

/** An endpoint scaled to zero as jobs arrive: one worker loading its engine, the queue waiting on it. */
export const healthExample: z.input<typeof healthView> = {
  jobs: { completed: 1284, failed: 3, inProgress: 0, inQueue: 5, retried: 1 },
  workers: { idle: 0, initializing: 1, ready: 0, running: 0, throttled: 0, unhealthy: 0, paused: 0 },
  waitReason: "starting",
  waitDetail: { phase: "engine_load" },
  startBreaker: { open: false, failedStarts: 0, lastError: null },
};

export const jobErrors = {
  invalidBody: invalidField("policy.ttl", "Too small: expected number to be >=10000"),
  invalidWait: invalidField("wait", "Too big: expected number to be <=300000"),
  notRetryable: new ApiError(400, "not_retryable", "only FAILED or TIMED_OUT jobs can be retried; this job is COMPLETED"),
  notFound: ApiError.notFound("job"),
  runScope: insufficientScope("read", "POST", `/v2/${ENDPOINT_ID}/run`),
  tooLarge: (mb: number) => new ApiError(413, "payload_too_large", `request body exceeds the limit of this operation (${mb} MB)`),
  rateLimited: new RateLimitError("requests", "rate limit reached for requests: the tenant's limit is 100 per second with a burst of 1000; retry in 1 s", {}),
};
