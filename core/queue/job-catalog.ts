import { z } from "zod";
import { outputGuardrails } from "../contracts/guardrails.ts";

/**
 * What the API puts on an endpoint's BullMQ queue and the worker reads back: one schema both
 * sides import. Times are ms epoch; durations ms.
 */
export const jobData = z.object({
  endpointId: z.string(),
  tenantId: z.string(),
  input: z.unknown(),
  webhook: z.string().optional(),
  webhookV2: z.string().optional(),
  /** The request's `s3Config`, sealed for this job (core/secrets/job-secrets.ts); only the control plane opens it. */
  s3ConfigSealed: z.string().optional(),
  /**
   * Set when the job has somewhere to offload to (its `s3Config`, or the platform's bucket): outputs
   * and stream chunks whose JSON is longer than this many bytes go to the bucket through presigned
   * URLs from the control plane (HEARTH_OFFLOAD_BYTES).
   */
  offloadBytes: z.number().int().positive().optional(),
  /** `s3://bucket/key` when the input is `{"inputRef": …}`: the worker fetches it and the handler gets its JSON. */
  inputRef: z.string().optional(),
  /** Resolved execution timeout (policy, else the endpoint's). */
  executionTimeoutMs: z.number().int().positive(),
  lowPriority: z.boolean(),
  submittedAt: z.number(),
  /** TTL deadline: after it the job is gone, whatever its state. */
  expiresAt: z.number(),
  /** How long a finished result stays readable (30 min for /run, 1–5 min for /runsync). */
  retentionMs: z.number().int().positive(),
  retries: z.number().int().min(0),
  /**
   * The endpoint's output guardrails as they were when the job was submitted (a PATCH applies to the
   * next job, on workers already running too); the worker checks the job's output with them.
   */
  guardrails: outputGuardrails.optional(),
  /** W3C `traceparent` of the API request that submitted the job: the worker's span for it is a child of this one. */
  traceparent: z.string().max(128).optional(),
});
export type JobData = z.infer<typeof jobData>;

/**
 * BullMQ name of a job queued outside the API (tests, scripts). The API names each job with its
 * acceptance record instead (core/log/log-entry.ts `acceptedJobName`); workers take any name.
 */
export const JOB_NAME = "job";

/** BullMQ priority for `lowPriority` jobs; normal jobs carry none and so are taken first. */
export const LOW_PRIORITY = 10;

/** What an LLM engine measured of one job's generation; every field is optional (an engine may not know). */
export const generationStats = z.object({
  promptTokens: z.number().int().min(0).optional(),
  completionTokens: z.number().int().min(0).optional(),
  /** ms from the job's start on the worker to the first generated token. */
  ttftMs: z.number().min(0).optional(),
  /** Mean ms between consecutive generated tokens after the first. */
  itlMs: z.number().min(0).optional(),
});
export type GenerationStats = z.infer<typeof generationStats>;

/**
 * The return value of every processed job. The processor never throws: a handler failure,
 * timeout or cancel is a finished BullMQ job whose envelope says so. BullMQ's own `failed` state
 * is left for infrastructure failures (a job that stalled too often).
 */
export const jobResult = z.object({
  status: z.enum(["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]),
  output: z.unknown().optional(),
  error: z.string().optional(),
  workerId: z.string(),
  startedAt: z.number(),
  finishedAt: z.number(),
  generation: generationStats.optional(),
  /** Stream chunks the job produced (absent for a job that returned one value). */
  chunks: z.number().int().min(0).optional(),
});
export type JobResult = z.infer<typeof jobResult>;

/**
 * BullMQ's `progress` of a running job, as the worker's processor writes it (`job.updateProgress`):
 * the engine's latest progress report (RunPod `progress_update`), which `/status` shows as `output`.
 */
export const jobProgress = z.object({ output: z.unknown() }).strict();
export type JobProgress = z.infer<typeof jobProgress>;
