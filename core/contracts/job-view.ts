/** RunPod job statuses Hearth emits (`RUNNING` is documented but no client uses it, so it is never emitted). */
export type JobStatus = "IN_QUEUE" | "IN_PROGRESS" | "COMPLETED" | "FAILED" | "CANCELLED" | "TIMED_OUT";
export type TerminalStatus = Extract<JobStatus, "COMPLETED" | "FAILED" | "CANCELLED" | "TIMED_OUT">;

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]);
export const isTerminal = (s: JobStatus): s is TerminalStatus => TERMINAL_STATUSES.has(s);

/** The job object of `/runsync`, `/status`, `/status-sync` (and, later, the webhook body). */
export interface JobView {
  id: string;
  status: JobStatus;
  /** ms queued before a worker took it; present once started. */
  delayTime?: number;
  /** ms the handler ran; present once finished. */
  executionTime?: number;
  output?: unknown;
  error?: string;
  workerId?: string;
  retries: number;
}

export interface HealthView {
  jobs: { completed: number; failed: number; inProgress: number; inQueue: number; retried: number };
  workers: { idle: number; initializing: number; ready: number; running: number; throttled: number; unhealthy: number };
}
