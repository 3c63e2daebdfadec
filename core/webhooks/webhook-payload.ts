import { createHash } from "node:crypto";
import type { JobView } from "../contracts/job-view.ts";
import type { RemovalReason } from "../log/log-entry.ts";
import type { JobResult } from "../queue/job-catalog.ts";
import { finishedView } from "../policy/job-view.ts";

/** The request fields a job may name a webhook in; both are delivered (RunPod's types carry `webhookV2` without saying what it means). */
export const WEBHOOK_FIELDS = ["webhook", "webhookV2"] as const;
export type WebhookField = (typeof WEBHOOK_FIELDS)[number];

/** How a job ended, as its terminal log entry says. */
export type TerminalState = { kind: "completed"; result: JobResult } | { kind: "failed"; reason: string } | { kind: "removed"; reason: RemovalReason | null };

export interface WebhookJob {
  jobId: string;
  retries: number;
  submittedAt: number;
  /** The job's input; undefined once Redis no longer holds it (the delivery says so). */
  input: unknown;
  url: string;
}

/** Terminal views of a job removed from its queue (as the records show them). */
const REMOVED: Record<RemovalReason, Pick<JobView, "status" | "error">> = {
  cancelled: { status: "CANCELLED" },
  purged: { status: "CANCELLED", error: "purged from the queue" },
  expired: { status: "TIMED_OUT", error: "ttl expired before the job started" },
};

/**
 * What a webhook POSTs: the job as `/status` returns it at its end, plus `input` and `webhook`, as
 * RunPod does. Pure; serialised once and sent byte for byte on every attempt.
 */
export function webhookPayload(job: WebhookJob, end: TerminalState): Record<string, unknown> {
  const base = { id: job.jobId, retries: job.retries };
  let view: JobView;
  if (end.kind === "completed") view = finishedView(base, { submittedAt: job.submittedAt }, end.result);
  else if (end.kind === "failed") view = { ...base, status: "FAILED", error: end.reason };
  else view = { ...base, ...REMOVED[end.reason ?? "cancelled"] };
  return { ...view, ...(job.input !== undefined && { input: job.input }), webhook: job.url };
}

/**
 * The Standard Webhooks `webhook-id` of one delivery: the same on every attempt, different for each
 * terminal transition (a job retried under its id ends again) and each URL field. Header-safe.
 */
export function deliveryId(endpointId: string, jobId: string, terminalEntryId: string, field: WebhookField): string {
  return `msg_${createHash("sha256").update(`${endpointId}\n${jobId}\n${terminalEntryId}\n${field}`).digest("hex").slice(0, 32)}`;
}
