import { z } from "zod";
import { jobWaitReason, waitDetail } from "../policy/wait-reason.ts";

/** RunPod job statuses Hearth emits (`RUNNING` is documented but no client uses it, so it is never emitted). */
export const JOB_STATUSES = ["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"] as const;
export const jobStatus = z.enum(JOB_STATUSES);
export type JobStatus = z.infer<typeof jobStatus>;
export type TerminalStatus = Extract<JobStatus, "COMPLETED" | "FAILED" | "CANCELLED" | "TIMED_OUT">;

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]);
export const isTerminal = (s: JobStatus): s is TerminalStatus => TERMINAL_STATUSES.has(s);

/** The job object of `/runsync`, `/status`, `/status-sync` (and, later, the webhook body). */
export const jobView = z
  .object({
    id: z.string(),
    status: jobStatus,
    /** ms queued before a worker took it; present once started. */
    delayTime: z.number().optional(),
    /** ms the handler ran; present once finished. */
    executionTime: z.number().optional(),
    output: z.unknown().optional(),
    error: z.string().optional(),
    workerId: z.string().optional(),
    retries: z.number(),
    /**
     * IN_QUEUE for more than 5 s without a ready worker (or while the start breaker is open): why
     * (core/policy/wait-reason.ts), with the phase and progress of a starting worker, or the last
     * start error of a crash loop, in `waitDetail`.
     */
    waitReason: jobWaitReason.optional(),
    waitDetail: waitDetail.optional(),
  })
  .meta({ id: "Job" });
export type JobView = z.infer<typeof jobView>;

/** The answer of `/health` (RunPod's field names). */
export const healthView = z
  .object({
    jobs: z.object({ completed: z.number(), failed: z.number(), inProgress: z.number(), inQueue: z.number(), retried: z.number() }),
    workers: z.object({ idle: z.number(), initializing: z.number(), ready: z.number(), running: z.number(), throttled: z.number(), unhealthy: z.number(), paused: z.number() }),
    /**
     * Why `workers.throttled` workers wait: the host is full (`no_capacity`), the tenant is at its
     * maxWorkers (`quota`), or its billing holds it (`billing`: zero balance, or its spend per
     * hour reached; shown even while nothing waits); and, once the oldest queued job has waited 5 s
     * without a ready worker, `starting`, `resuming` or `crash_loop` (core/policy/wait-reason.ts).
     */
    waitReason: jobWaitReason.optional(),
    /** With `waitReason`: the phase of a starting worker, the last start error of a crash loop, the count held back. */
    waitDetail: waitDetail.optional(),
    /** The endpoint's start breaker (core/policy/start-breaker.ts): open, queued jobs fail with `lastError`. */
    startBreaker: z.object({ open: z.boolean(), failedStarts: z.number(), lastError: z.string().nullable() }).optional(),
  })
  .meta({ id: "Health" });
export type HealthView = z.infer<typeof healthView>;

/** One page of `/stream`: the chunks since the last read. */
export const streamPage = z.object({ status: jobStatus, stream: z.array(z.object({ output: z.unknown() })) }).meta({ id: "StreamPage" });
export type StreamPage = z.infer<typeof streamPage>;
