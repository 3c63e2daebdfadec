import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import { isTerminal, type JobView } from "../../../core/contracts/job-view.ts";
import { newJobId } from "../../../core/ids/random-id.ts";
import type { JobEvent } from "../../../core/queue/messages.ts";
import { jobFailure } from "../openai-error.ts";
import type { JobControl } from "./job-control.ts";
import type { JobEvents } from "./job-events.ts";
import type { JobOrigin, JobSubmitter } from "./job-submitter.ts";
import { DEFAULT_RETENTION, syncRetentionMs, type ResultRetention } from "../../../core/policy/retention.ts";
import type { JobReader } from "./job-reader.ts";
import type { SyncRuns } from "./sync-runs.ts";

export interface OpenAIRelayOptions {
  submitter: JobSubmitter;
  reader: JobReader;
  events: JobEvents;
  control: JobControl;
  /** Submit-and-wait for the non-streaming requests. */
  syncRuns: SyncRuns;
  /** Idle time after which an SSE response gets a `: keep-alive` comment (ms). Default 15000. */
  heartbeatMs?: number;
  /** Longest a request waits for its job (ms); OpenAI's own clients wait 10 minutes. Default 600000. */
  maxWaitMs?: number;
  /** How long results stay readable (HEARTH_RETENTION_*). Default core/policy's DEFAULT_RETENTION. */
  retention?: ResultRetention;
}

const encoder = new TextEncoder();
const DONE = encoder.encode("data: [DONE]\n\n");
const KEEP_ALIVE = encoder.encode(": keep-alive\n\n");

/**
 * OpenAI requests as jobs: the request body becomes the passthrough input
 * `{openai_route, openai_input}` of a job on the endpoint's queue (RunPod's own mapping), and the
 * job's result or stream becomes the response. A request whose client goes away cancels its job,
 * which aborts the engine's generation on the worker.
 */
export class OpenAIRelay {
  private readonly heartbeatMs: number;
  private readonly maxWaitMs: number;

  constructor(private readonly options: OpenAIRelayOptions) {
    this.heartbeatMs = options.heartbeatMs ?? 15_000;
    this.maxWaitMs = options.maxWaitMs ?? 600_000;
  }

  /** Runs the request to completion: the engine's JSON on success, an OpenAI error otherwise. */
  async complete(
    ep: Endpoint,
    route: string,
    body: Record<string, unknown> | undefined,
    signal: AbortSignal,
    origin?: JobOrigin,
    /** The job's id when the caller made it beforehand (admission held tokens under it). */
    presetJobId?: string,
  ): Promise<{ status: 200; body: unknown } | ReturnType<typeof jobFailure>> {
    const wait = this.waitMs(ep);
    let jobId: string | undefined;
    const cancelIfGone = () => {
      if (jobId !== undefined) void this.options.control.cancel(ep.id, jobId).catch(() => {});
    };
    signal.addEventListener("abort", cancelIfGone, { once: true });
    try {
      const { id, view } = await this.options.syncRuns.run(ep, { input: passthrough(route, body) }, { retentionMs: syncRetentionMs(this.options.retention ?? DEFAULT_RETENTION, wait), ...(origin && { origin }), ...(presetJobId !== undefined && { id: presetJobId }) }, wait, signal, (submittedId) => {
        jobId = submittedId;
        if (signal.aborted) cancelIfGone(); // gone while the job was being queued
      });
      if (view?.status === "COMPLETED") return { status: 200, body: view.output ?? null };
      if (view && !isTerminal(view.status) && !signal.aborted) cancelIfGone(); // nobody will read it
      return jobFailure(view ?? { id, status: "IN_QUEUE", retries: 0 });
    } finally {
      signal.removeEventListener("abort", cancelIfGone);
    }
  }

  /**
   * Runs a `stream: true` request as server-sent events: each chunk the worker publishes is
   * written as `data: <chunk>` the moment its message arrives (no polling), then `data: [DONE]`.
   * A job that fails mid-stream ends with an OpenAI error event, which OpenAI's clients raise.
   */
  async stream(ep: Endpoint, route: string, body: Record<string, unknown>, signal: AbortSignal, origin?: JobOrigin, presetJobId?: string): Promise<ReadableStream<Uint8Array>> {
    const { submitter, events, control, reader } = this.options;
    const jobId = presetJobId ?? newJobId(true);
    const wait = this.waitMs(ep);
    let ended = false;
    let lastWrite = Date.now();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body$ = new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
      },
      cancel: () => finish("client gone"),
    });

    const write = (bytes: Uint8Array) => {
      if (ended) return;
      lastWrite = Date.now();
      controller.enqueue(bytes);
    };
    const finish = (how: "done" | "client gone" | { error: ReturnType<typeof jobFailure>["body"] }) => {
      if (ended) return;
      if (how === "client gone") void control.cancel(ep.id, jobId).catch(() => {});
      else if (how !== "done") write(encoder.encode(`data: ${JSON.stringify(how.error)}\n\n`));
      if (how !== "client gone") write(DONE);
      ended = true;
      stopListening();
      clearInterval(ticker);
      clearTimeout(deadline);
      signal.removeEventListener("abort", onAbort);
      if (how !== "client gone") controller.close();
    };
    let relayed = 0;
    const onEvent = (event: JobEvent) => {
      if (event.type === "chunk") {
        const chunks = event.chunks ?? [];
        relayed += chunks.length;
        if (chunks.length > 0) write(encoder.encode(chunks.map((c) => `data: ${JSON.stringify(c.output)}\n\n`).join("")));
        return;
      }
      // A worker that answered with one value instead of chunks (a handler that does not stream): that value is the one event.
      if (relayed === 0 && event.outputOmitted && event.result?.status === "COMPLETED") {
        // Too large for the message: read it from the job, then finish.
        void reader.settledView(ep.id, jobId).then(
          (v) => onEvent({ ...event, outputOmitted: false, result: { ...event.result!, ...(v?.output !== undefined && { output: v.output }) } }),
          () => onEvent({ ...event, outputOmitted: false }),
        );
        return;
      }
      const output = event.result?.output;
      if (relayed === 0 && event.result?.status === "COMPLETED" && output !== undefined && !(Array.isArray(output) && output.length === 0)) write(encoder.encode(`data: ${JSON.stringify(output)}\n\n`));
      const view = event.result && ({ id: jobId, status: event.result.status, error: event.result.error, retries: 0 } as JobView);
      finish(!view || view.status === "COMPLETED" ? "done" : { error: jobFailure(view).body });
    };
    const onAbort = () => finish("client gone");

    // Listening starts before the job exists, so not one chunk can be published unheard.
    await events.ready(ep.id);
    const stopListening = events.listen(ep.id, jobId, onEvent);
    signal.addEventListener("abort", onAbort, { once: true });
    const ticker = setInterval(() => {
      if (Date.now() - lastWrite >= this.heartbeatMs) write(KEEP_ALIVE);
      // A finish message lost with a dropped subscription must not hold the response open forever.
      void reader.view(ep.id, jobId).then((v) => {
        if (v && isTerminal(v.status)) finish(v.status === "COMPLETED" ? "done" : { error: jobFailure(v).body });
      }, () => {});
    }, Math.min(this.heartbeatMs, 5000));
    const deadline = setTimeout(() => {
      finish({ error: jobFailure({ id: jobId, status: "IN_PROGRESS", retries: 0 }).body });
      void control.cancel(ep.id, jobId).catch(() => {});
    }, wait);

    try {
      await submitter.submit(ep, ep.tenantId, { input: passthrough(route, body) }, { sync: true, retentionMs: syncRetentionMs(this.options.retention ?? DEFAULT_RETENTION, wait), id: jobId, ...(origin && { origin }) });
    } catch (err) {
      stopListening();
      clearInterval(ticker);
      clearTimeout(deadline);
      signal.removeEventListener("abort", onAbort);
      throw err;
    }
    // A client gone while the job was being queued: its cancel found no job then; the job exists now.
    if (ended) void control.cancel(ep.id, jobId).catch(() => {});
    return body$;
  }

  private waitMs(ep: Endpoint): number {
    return Math.min(this.maxWaitMs, ep.executionTimeoutMs + 60_000);
  }
}

function passthrough(route: string, body: Record<string, unknown> | undefined): Record<string, unknown> {
  return body === undefined ? { openai_route: route } : { openai_route: route, openai_input: body };
}
