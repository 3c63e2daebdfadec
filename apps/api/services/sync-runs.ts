import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import type { RunRequest } from "../../../core/contracts/job-request.ts";
import type { JobView } from "../../../core/contracts/job-view.ts";
import { newJobId } from "../../../core/ids/random-id.ts";
import type { JobReader } from "./job-reader.ts";
import type { JobSubmitter, SubmitMode } from "./job-submitter.ts";

/**
 * A job submitted and waited for in one request (`/runsync`, OpenAI completions): listening starts
 * before the job exists, because a fast worker's finish message can overtake the reply to the
 * submit itself (they come on different connections).
 */
export class SyncRuns {
  constructor(private readonly options: { submitter: JobSubmitter; reader: JobReader }) {}

  /**
   * Submits and waits up to `waitMs` for the job to finish; `view` is its state then (terminal or
   * not). `onSubmitted` is told the job's id once it exists, before the wait (to cancel it when the
   * caller goes away). With a repeated `Idempotency-Key`, the id is the first job's; `mode.id` names a new job.
   */
  async run(
    ep: Endpoint,
    req: RunRequest,
    mode: Omit<SubmitMode, "sync">,
    waitMs: number,
    signal?: AbortSignal,
    onSubmitted?: (jobId: string) => void,
  ): Promise<{ id: string; view: JobView | undefined }> {
    const { submitter, reader } = this.options;
    // A caller may name the job beforehand (a token hold is recorded under its id before it is queued).
    const id = mode.id ?? newJobId(true);
    await reader.ready(ep.id);
    const watch = reader.watchFinish(ep.id, id);
    try {
      const submitted = await submitter.submit(ep, ep.tenantId, req, { ...mode, sync: true, id });
      onSubmitted?.(submitted.id);
      const view = submitted.repeated
        ? await reader.waitFinished(ep.id, submitted.id, waitMs, signal)
        : await reader.waitFinished(ep.id, submitted.id, waitMs, signal, { data: submitted.data, watch });
      return { id: submitted.id, view };
    } finally {
      watch.dispose();
    }
  }
}
