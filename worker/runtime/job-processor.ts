import type { Redis } from "ioredis";
import { WaitingError, type Job } from "bullmq";
import { z } from "zod";
import { jobData, type JobData, type JobProgress, type JobResult } from "../../core/queue/job-catalog.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { Engine, EngineInfo, EngineResult } from "../engines/engine.ts";
import { STREAM_MARGIN_MS, StreamWriter } from "./stream-writer.ts";
import { OffloadError, type OffloadClient } from "./offload-client.ts";
import { JobOffload, type AggregateUpload, type JobOffloadOptions } from "./job-offload.ts";
import type { Tracer } from "@opentelemetry/api";
import { withFields, type Log } from "../../core/log/process-log.ts";
import { formatTraceparent, parseTraceparent } from "../../core/trace/trace-context.ts";
import { SpanKind, startSpan } from "../../core/trace/tracing.ts";
import { jobLogContext } from "./job-log-context.ts";
import { JobOutputGuard, type OutputGuardDeps } from "./output-guard.ts";

/**
 * The abort reason the runtime gives BullMQ (`worker.cancelAllJobs(DRAIN_REASON)`) when a drain
 * runs out of time: the job is handed back to the queue, not finished. Any other abort of BullMQ's
 * signal is a user cancel.
 */
export const DRAIN_REASON = "hearth:drain";

export interface JobProcessorOptions {
  engine: Engine;
  engineInfo: EngineInfo;
  /** For our own commands (stream buffer, pub/sub publishes). */
  redis: Redis;
  keys: RedisKeys;
  endpointId: string;
  workerId: string;
  /** Cancels broadcast before the job reached this processor (see CancelRequests). */
  cancels: { take(jobId: string): boolean };
  /** True once a drain has run out of time: a job that starts now is handed back at once. */
  handingBack?: () => boolean;
  /** Least ms between two stream writes of one job (see StreamWriter); default 0. */
  streamLingerMs?: number;
  /** Asks the control plane for presigned URLs (jobs with `offloadBytes` or `inputRef`); without it such jobs fail. */
  offload?: OffloadClient;
  /** One call per part and per object uploaded (the worker logs it). */
  onOffloadProgress?: JobOffloadOptions["onProgress"];
  /** The worker's log: a line as each job ends (debug: as it starts), with its jobId and traceId. Default none. */
  log?: Log;
  /** Exports each job's span when tracing is on (see core/trace/tracing.ts). */
  tracer?: Tracer;
  /** Runs jobs' output guardrails (set per job by the API in its data); without it, a job that has some fails rather than run unchecked. */
  guardrails?: OutputGuardDeps;
  now?: () => number;
}

export type JobProcessor = (job: Job, token: string | undefined, signal: AbortSignal | undefined) => Promise<JobResult>;

type AbortCause = "cancel" | "drain" | "timeout" | "ttl";
type Outcome = Pick<JobResult, "status" | "output" | "error" | "generation" | "chunks">;

const ABORTED = Symbol("aborted");

/**
 * BullMQ processor of an endpoint's jobs. It never throws for anything a job did: a handler
 * error, a timeout, a cancel, bad job data all come back as a `JobResult` envelope, so BullMQ's own
 * `failed` state only ever means an infrastructure failure. The one exception is a drain hand-back:
 * the job is moved back to wait and BullMQ's `WaitingError` tells the worker not to finish it.
 *
 * BullMQ passes the abort signal only to processors that declare three parameters, so the returned
 * function keeps all three.
 */
export function createJobProcessor(options: JobProcessorOptions): JobProcessor {
  const { engine, engineInfo, redis, keys, endpointId, workerId, cancels } = options;
  const now = options.now ?? Date.now;
  const handingBack = options.handingBack ?? (() => false);

  const log = options.log ?? (() => {});

  return async function processJob(job: Job, token: string | undefined, signal: AbortSignal | undefined): Promise<JobResult> {
    const startedAt = now();
    // The job's span is a child of the submitting request's (the trace id the API records); read before the job data is validated, so even a job that fails validation is in its trace.
    const given: unknown = (job.data as { traceparent?: unknown } | undefined)?.traceparent;
    const span = startSpan(options.tracer, "job", parseTraceparent(typeof given === "string" ? given : undefined), SpanKind.CONSUMER, {
      "hearth.job_id": job.id ?? "",
      "hearth.endpoint_id": endpointId,
      "hearth.worker_id": workerId,
    });
    const jobLog = withFields(log, { jobId: job.id, traceId: span.context.traceId });
    jobLog({ level: "debug", msg: "job started" });
    let result: JobResult;
    try {
      result = await jobLogContext.run({ jobId: job.id ?? "", traceId: span.context.traceId }, () => run(job, token, signal, startedAt, formatTraceparent(span.context)));
    } catch (err) {
      if (err instanceof WaitingError) {
        jobLog({ msg: "job handed back" });
        span.end({ "hearth.status": "HANDED_BACK" });
        throw err;
      }
      // Only our own Redis calls can get here; the job still finishes, with the reason.
      result = { status: "FAILED", error: `worker error: ${errorMessage(err)}`, workerId, startedAt, finishedAt: now() };
    }
    const failed = result.status !== "COMPLETED" && result.status !== "CANCELLED";
    jobLog({ level: failed ? "warn" : "info", msg: "job finished", status: result.status, ms: result.finishedAt - result.startedAt, ...(failed && result.error !== undefined && { error: result.error.slice(0, 500) }) });
    span.end({ "hearth.status": result.status }, failed ? (result.error ?? result.status) : undefined);
    return result;
  };

  async function run(job: Job, token: string | undefined, signal: AbortSignal | undefined, startedAt: number, traceparent: string): Promise<JobResult> {
    const envelope = (o: Outcome, finishedAt = now()): JobResult => ({ ...definedOnly(o), workerId, startedAt, finishedAt });

    const parsed = jobData.safeParse(job.data);
    if (!parsed.success) return envelope({ status: "FAILED", error: `invalid job data: ${z.prettifyError(parsed.error)}` });
    const data = parsed.data;

    if (startedAt >= data.expiresAt) return envelope({ status: "TIMED_OUT", error: "ttl expired before the job started" });
    if (handingBack() || signal?.reason === DRAIN_REASON) return handBack(job, token);
    if (cancels.take(job.id!) || signal?.aborted) return envelope({ status: "CANCELLED" });

    const jobId = job.id!;
    let guard: JobOutputGuard | undefined;
    if (data.guardrails) {
      if (!options.guardrails) return envelope({ status: "FAILED", error: "guardrail_unavailable: this worker cannot run the endpoint's output guardrails" });
      guard = new JobOutputGuard(data.guardrails, options.guardrails, { endpointId, jobId, openai: isOpenAIPassthrough(data.input) });
    }

    // One signal for the engine, fired by whichever comes first; the first cause is the one reported.
    const controller = new AbortController();
    let cause: AbortCause | undefined;
    const fire = (c: AbortCause, message: string) => {
      if (cause) return;
      cause = c;
      controller.abort(Object.assign(new Error(message), { name: "AbortError" }));
    };
    const onBullAbort = () => fire(signal?.reason === DRAIN_REASON ? "drain" : "cancel", "job cancelled");
    signal?.addEventListener("abort", onBullAbort, { once: true });
    // A cancel that landed during the awaits above has already fired; listeners added later never hear it.
    if (signal?.aborted) onBullAbort();
    const timers = [
      setTimeout(() => fire("timeout", `execution timeout of ${data.executionTimeoutMs} ms exceeded`), timerMs(data.executionTimeoutMs)),
      setTimeout(() => fire("ttl", "ttl expired"), timerMs(data.expiresAt - startedAt)),
    ];
    // Raced against every engine step (raceAbort), so a handler that ignores its signal cannot hold the job.
    const aborted = controller.signal;
    const deadline = Math.min(startedAt + data.executionTimeoutMs, data.expiresAt);
    const stream = new StreamWriter({
      redis,
      keys,
      jobId,
      endpointId,
      liveTtlMs: () => Math.max(0, deadline - now()) + data.retentionMs + STREAM_MARGIN_MS,
      lingerMs: options.streamLingerMs ?? 0,
    });

    // Jobs with a bucket (s3Config, or the platform's) upload what is large; see JobOffload.
    const offload =
      (data.offloadBytes !== undefined || data.inputRef !== undefined) && options.offload
        ? new JobOffload({
            client: options.offload,
            jobId,
            thresholdBytes: data.offloadBytes ?? Number.POSITIVE_INFINITY,
            ...(options.onOffloadProgress && { onProgress: options.onOffloadProgress }),
          })
        : undefined;
    let aggregate: AggregateUpload | undefined;
    let outcome: Outcome | undefined;
    let generation: EngineResult["generation"];
    let iterator: AsyncIterator<unknown> | undefined;
    let exhausted = false;
    /** The job's error once its output guardrails blocked it. */
    let blocked: string | undefined;
    try {
      let input = data.input;
      if (data.inputRef !== undefined) {
        if (!offload) throw new OffloadError(`inputRef ${data.inputRef}: this worker has no way to the control plane's offload broker`);
        const fetched = await raceAbort(labelled(`inputRef ${data.inputRef}`, offload.input()), aborted);
        if (fetched === ABORTED) throw controller.signal.reason;
        input = fetched;
      }
      const progress = (value: unknown) => {
        // Shown by /status while the job runs (core/policy/job-view.ts reads it back); a lost update is only a stale view.
        const shown = guard ? guard.progress(value) : { value };
        if (cause === undefined && shown) job.updateProgress({ output: shown.value } satisfies JobProgress).catch((err: unknown) => log({ level: "warn", msg: "progress update failed", jobId, error: errorMessage(err) }));
      };
      const result = await raceAbort(engine.run({ id: jobId, input, traceparent, progress }, controller.signal), aborted);
      if (result !== ABORTED) {
        generation = result.generation;
        if (result.kind === "value") {
          outcome = valueOutcome(result.value);
          if (guard && outcome.output !== undefined) {
            const checked = await raceAbort(guard.value(outcome.output), aborted);
            if (checked !== ABORTED) outcome = checked.ok ? { ...outcome, output: checked.output } : { status: "FAILED", error: checked.error };
          }
          if (offload && outcome.output !== undefined) {
            const output = await raceAbort(labelled("output upload failed", offload.value(outcome.output)), aborted);
            if (output !== ABORTED) outcome = { ...outcome, output };
          }
        } else {
          iterator = result.chunks[Symbol.asyncIterator]();
          const all: unknown[] = [];
          if (offload && engineInfo.returnAggregateStream) aggregate = offload.aggregate();
          let n = 0;
          /** Writes one chunk (as the guardrails left it) everywhere it goes; false once aborted. */
          const emit = async (value: unknown): Promise<boolean> => {
            let chunk = value;
            if (offload) {
              const sent = await raceAbort(labelled("stream chunk upload failed", offload.chunk(n++, chunk)), aborted);
              if (sent === ABORTED) return false;
              chunk = sent;
            }
            const backlog = stream.add(chunk);
            if (backlog && (await raceAbort(backlog, aborted)) === ABORTED) return false;
            if (aggregate) {
              const uploading = aggregate.add(value);
              if (uploading && (await raceAbort(labelled("output upload failed", uploading), aborted)) === ABORTED) return false;
            } else if (engineInfo.returnAggregateStream) all.push(value);
            return true;
          };
          for (;;) {
            const step = await raceAbort(iterator.next(), aborted);
            if (step === ABORTED) break;
            if (step.done) {
              exhausted = true;
              break;
            }
            if (!guard) {
              if (!(await emit(step.value))) break;
              continue;
            }
            // Checked before anything is written: what a pattern could still span waits for the next chunk.
            const checked = guard.chunk(step.value);
            if (checked.kind === "block") {
              blocked = guard.blockedError(checked.rule);
              break;
            }
            let going = true;
            for (const c of checked.chunks) if (!(going = await emit(c))) break;
            if (!going) break;
          }
          if (guard && exhausted && blocked === undefined) {
            const rest = guard.endStream();
            if (rest.kind === "block") blocked = guard.blockedError(rest.rule);
            else for (const c of rest.chunks) if (!(await emit(c))) break;
          }
          // Every chunk is in Redis before the job is reported finished (the relay's order).
          await stream.flush();
          if (blocked !== undefined) outcome = { status: "FAILED", error: blocked };
          else if (cause === undefined) {
            let output: unknown = engineInfo.returnAggregateStream ? all : undefined;
            if (aggregate) output = await raceAbort(labelled("output upload failed", aggregate.finish()), aborted);
            else if (result.output) {
              // The engine's own final output (a RunPod worker's job-done), offloaded like any value.
              output = result.output();
              if (guard && output !== undefined) {
                const checked = await raceAbort(guard.value(output), aborted);
                output = checked === ABORTED ? ABORTED : checked.ok ? checked.output : undefined;
                if (checked !== ABORTED && !checked.ok) blocked = checked.error;
              }
              if (offload && output !== undefined && output !== ABORTED) output = await raceAbort(labelled("output upload failed", offload.value(output)), aborted);
            }
            if (blocked !== undefined) outcome = { status: "FAILED", error: blocked };
            else if (output !== ABORTED) outcome = { status: "COMPLETED", output };
          }
        }
      }
    } catch (err) {
      // A handler that rejects because it was aborted reports the abort, not its own error.
      if (cause === undefined) outcome = { status: "FAILED", error: errorMessage(err) };
    } finally {
      signal?.removeEventListener("abort", onBullAbort);
      for (const t of timers) clearTimeout(t);
      // A stream left early (abort, failed write) still gets to run its `finally` blocks; not awaited.
      if (iterator && !exhausted) void Promise.resolve(iterator.return?.()).catch(() => {});
      // An aggregate not finished (abort, failure) leaves no parts behind; finished, this is a no-op.
      if (aggregate && outcome?.status !== "COMPLETED") void aggregate.abort();
    }

    // Chunks produced before an abort are still delivered, ahead of the finish.
    await stream.flush().catch(() => {});
    if (cause === "drain") return handBack(job, token);
    if (cause !== undefined) outcome = abortOutcome(cause, data);
    await stream.seal(data.retentionMs).catch(() => {});
    if (guard) await guard.finish().catch((err: unknown) => log({ level: "warn", msg: "guardrail triggers not logged", jobId, error: errorMessage(err) }));
    const stats = safely(generation);
    return envelope({
      ...(outcome ?? { status: "FAILED", error: "engine produced no result" }),
      ...(stats && { generation: stats }),
      ...(stream.chunks > 0 && { chunks: stream.chunks }),
    });
  }

  /** Puts the job back at the head of the queue for another worker; BullMQ must not finish it. */
  async function handBack(job: Job, token: string | undefined): Promise<never> {
    // BullMQ's move logs the job `waiting` again (prev: active), atomically with the move.
    try {
      await job.moveToWait(token);
    } catch {
      // Lock already lost: the stalled checker (or whoever holds it now) owns the job.
    }
    throw new WaitingError();
  }
}

/** RunPod: a returned object with an `error` fails the job; the rest of it, if any, is still the output. */
export function valueOutcome(value: unknown): Outcome {
  let outcome: Outcome = { status: "COMPLETED", output: value };
  if (isPlainObject(value) && value.error !== undefined && value.error !== null) {
    const { error, ...rest } = value;
    outcome = {
      status: "FAILED",
      error: typeof error === "string" ? error : (JSON.stringify(error) ?? String(error)),
      output: Object.keys(rest).length > 0 ? rest : undefined,
    };
  }
  try {
    JSON.stringify(outcome.output);
  } catch (err) {
    return { status: "FAILED", error: `output is not JSON-serialisable: ${errorMessage(err)}` };
  }
  return outcome;
}

function abortOutcome(cause: Exclude<AbortCause, "drain">, data: JobData): Outcome {
  switch (cause) {
    case "cancel":
      return { status: "CANCELLED" };
    case "timeout":
      return { status: "TIMED_OUT", error: `execution timeout of ${data.executionTimeoutMs} ms exceeded` };
    case "ttl":
      return { status: "TIMED_OUT", error: "ttl expired" };
  }
}

/** An engine's stats are bookkeeping: a getter that throws must not change the job's outcome. */
function safely(get: EngineResult["generation"]): JobResult["generation"] {
  try {
    return get?.();
  } catch {
    return undefined;
  }
}

/** Node fires a timer longer than 2^31-1 ms at once; such deadlines (over 24 days) are treated as the maximum. */
function timerMs(ms: number): number {
  return Math.min(Math.max(0, ms), 2 ** 31 - 1);
}

/** An offload failure, said as what it failed to do; other errors pass unchanged. */
async function labelled<T>(what: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw err instanceof OffloadError ? new OffloadError(`${what}: ${err.message}`) : err;
  }
}

/**
 * Settles with `p` or with ABORTED once `signal` aborts, whichever is first; a late rejection of `p`
 * is swallowed. Not Promise.race against one long-lived "aborted" promise: each race leaves a
 * reaction on it that keeps the race's value alive until that promise settles, which kept every
 * chunk of a stream (64 MB of them, measured) in memory until the job ended.
 */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T | typeof ABORTED> {
  p.catch(() => {});
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

/** A job from the OpenAI routes (RunPod's passthrough input): its errors are read as engine refusals. */
function isOpenAIPassthrough(input: unknown): boolean {
  return isPlainObject(input) && typeof input.openai_route === "string";
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function definedOnly<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return typeof err === "string" ? err : (JSON.stringify(err) ?? String(err));
}
