import type { JobView, JobStatus } from "../contracts/job-view.ts";
import type { JobData, JobResult } from "../queue/job-catalog.ts";

/** BullMQ's states, plus "unknown" for a job id it no longer has. */
export type QueueState = "waiting" | "prioritized" | "delayed" | "waiting-children" | "active" | "completed" | "failed" | "unknown";

/** A job as read back from the queue: the facts `toJobView` needs, nothing from Redis or the clock. */
export interface StoredJob {
  id: string;
  state: QueueState;
  data: JobData;
  /** The processor's envelope, once the job is `completed`. */
  result?: JobResult;
  /** BullMQ's reason when it failed the job itself (stalled too often). */
  failedReason?: string;
  /** ms epoch BullMQ started the current attempt. */
  processedOn?: number;
  /** ms epoch BullMQ finished it. */
  finishedOn?: number;
  /** BullMQ worker name (the Hearth worker id) of the current attempt. */
  processedBy?: string;
  /** The engine's latest progress of a running job (RunPod `progress_update`), shown as its output. */
  progress?: { output: unknown };
}

const QUEUED_STATES: ReadonlySet<QueueState> = new Set(["waiting", "prioritized", "delayed", "waiting-children"]);

/** True when a job may no longer be seen: its TTL has passed, or its finished result outlived its retention. */
export function isGone(job: Pick<StoredJob, "data" | "finishedOn" | "state">, now: number): boolean {
  if (now >= job.data.expiresAt) return true;
  const finished = job.state === "completed" || job.state === "failed";
  return finished && job.finishedOn !== undefined && now >= job.finishedOn + job.data.retentionMs;
}

/**
 * The RunPod job object of a stored job at `now`, or undefined when the caller must see 404
 * (TTL passed, result expired, or BullMQ no longer knows it).
 */
export function toJobView(job: StoredJob, now: number): JobView | undefined {
  if (job.state === "unknown" || isGone(job, now)) return undefined;
  const base = { id: job.id, retries: job.data.retries };

  if (QUEUED_STATES.has(job.state)) return { ...base, status: "IN_QUEUE" };

  if (job.state === "active") {
    const view: JobView = { ...base, status: "IN_PROGRESS" };
    if (job.processedOn !== undefined) view.delayTime = Math.max(0, job.processedOn - job.data.submittedAt);
    if (job.processedBy) view.workerId = job.processedBy;
    if (job.progress !== undefined && job.progress.output !== undefined) view.output = job.progress.output;
    return view;
  }

  if (job.state === "completed" && job.result) return finishedView(base, job.data, job.result);

  // BullMQ failed the job itself, or a completed job lost its envelope: either way a failure.
  const view: JobView = { ...base, status: "FAILED", error: job.failedReason || "job failed without a result" };
  if (job.processedOn !== undefined) {
    view.delayTime = Math.max(0, job.processedOn - job.data.submittedAt);
    if (job.finishedOn !== undefined) view.executionTime = Math.max(0, job.finishedOn - job.processedOn);
  }
  if (job.processedBy) view.workerId = job.processedBy;
  return view;
}

/** The job object of a finished job from its envelope; shared by status reads and completion events. */
export function finishedView(base: { id: string; retries: number }, data: Pick<JobData, "submittedAt">, result: JobResult): JobView {
  const view: JobView = {
    ...base,
    status: result.status as JobStatus,
    delayTime: Math.max(0, result.startedAt - data.submittedAt),
    executionTime: Math.max(0, result.finishedAt - result.startedAt),
    workerId: result.workerId,
  };
  if (result.output !== undefined) view.output = result.output;
  if (result.error !== undefined) view.error = result.error;
  return view;
}
