import type { GenerationStats } from "../../core/queue/job-catalog.ts";

/**
 * The seam between the worker runtime and whatever computes a job's output: a handler module
 * today, a supervised OpenAI-compatible engine process later. The runtime owns queues, timeouts,
 * streaming to Redis and bookkeeping; an engine only turns one input into a value or a stream.
 */

/** One job as an engine sees it: RunPod's handler job (`{ id, input }`). */
export interface EngineJob {
  id: string;
  input: unknown;
  /** W3C `traceparent` of the worker's span for the job: engines that make requests send it on. */
  traceparent?: string;
  /**
   * Shows `value` as the job's `output` in `/status` while it still runs (RunPod's
   * `progress_update`). Best effort and not terminal: a later call replaces it, the finish ends it.
   */
  progress?: (value: unknown) => void;
}

/**
 * A finished value, or a stream of chunks. A stream job's chunks are the RunPod generator yields;
 * the runtime writes each one to the job's stream buffer as it arrives.
 */
export type EngineResult = (
  | { kind: "value"; value: unknown }
  | {
      kind: "stream";
      chunks: AsyncIterable<unknown>;
      /**
       * The job's output once the chunks are done, where the engine decides it (a RunPod protocol
       * worker says it in its job-done). Without it: all chunks with `returnAggregateStream`, else none.
       */
      output?: () => unknown;
    }
) & {
  /** LLM engines: token counts and timings, read once the value is returned or the stream is done. */
  generation?: () => GenerationStats | undefined;
};

/** What an engine tells the runtime once it is ready. */
export interface EngineInfo {
  /** Jobs this worker may run at once (engines that batch continuously want more than one). */
  concurrency: number;
  /** RunPod `return_aggregate_stream`: a stream job's final output is the array of all its chunks. */
  returnAggregateStream: boolean;
}

export interface Engine {
  /** Loads the engine; rejects when it cannot serve (the worker then refuses to take jobs). */
  start(): Promise<EngineInfo>;
  /** Cheap liveness check, polled on every heartbeat. */
  health(): Promise<boolean>;
  /**
   * Runs one job. `signal` fires on cancel, execution timeout, TTL and drain; an engine should stop
   * work promptly when it does, but the runtime does not wait for it to.
   */
  run(job: EngineJob, signal: AbortSignal): Promise<EngineResult>;
  /**
   * Sleep mode (vLLM's `--enable-sleep-mode`, the embedded engine's `/sleep`): releases the model and
   * its contexts before the worker is paused, keeping the process. Absent: the engine is frozen as it is.
   */
  sleep?(): Promise<void>;
  /** Undoes `sleep` (reloads the model) when the worker is resumed. */
  wakeUp?(): Promise<void>;
  /** Releases whatever `start` acquired; called once, after the last job. */
  stop(): Promise<void>;
}

/** Raised by `Engine.start` when an engine refuses to start (bad module path, bad exports, a worker that exits before its first take). */
export class EngineStartError extends Error {
  readonly code = "ENGINE_START_FAILED";
}
