import type { Redis } from "ioredis";
import type { Tracer } from "@opentelemetry/api";
import type { Engine } from "../engines/engine.ts";
import type { Log } from "../../core/log/process-log.ts";
import type { ColdStartReport } from "../../core/log/log-entry.ts";
import type { BootPhase, PhaseProgress } from "../../core/policy/wait-reason.ts";
import type { UrlPolicy } from "../../core/net/url-policy.ts";

/** Milestones the composition root logs with timings. */
export type RuntimePhase = "engine-ready" | "first-job" | "draining" | "exited" | "offload" | "paused" | "resumed";

export interface WorkerRuntimeOptions {
  endpointId: string;
  workerId: string;
  /** BullMQ and key prefix (`HEARTH_REDIS_PREFIX`). */
  redisPrefix: string;
  /** BullMQ lock, ms: how long a job of a dead worker waits before another worker re-runs it. */
  lockMs: number;
  /** Heartbeat and engine health-check period, ms. */
  heartbeatMs: number;
  /** How long a drain lets running jobs finish before handing them back to the queue, ms. */
  drainTimeoutMs: number;
  /** Least ms between two stream writes of one job (see StreamWriter); default 0. */
  streamLingerMs?: number;
  engine: Engine;
  /**
   * When the engine's start began (`performance.now()`), where it began before the runtime was
   * created (worker/engines/early-start.ts); the engine's load is measured from there. Default: the
   * runtime starts it.
   */
  engineStartedAt?: number;
  /**
   * Where the process's phases count from (`performance.now()`): its assignment for a prestarted
   * process (worker/prestart.ts). Default 0, the process's own start.
   */
  bootOrigin?: number;
  /**
   * ms the engine spent fetching its weights (model download or cache fill; worker/main.ts reads
   * the model store's `weightsFetchMs`), read as the worker leaves `initializing` and logged on that
   * transition's entry, which billing subtracts from the session. Undefined (or no option, the
   * default) reports nothing: a handler fetches no model.
   */
  weightsFetchMs?: () => number | undefined;
  /** True when every model the engine asked for came from the local cache (a `cache-warm` start). Default: unknown (`cold`). */
  weightsCacheHit?: () => boolean | undefined;
  /** The engine cache restore's length and outcome (worker/engine-cache), read with the weights'. Default: none. */
  engineCacheReport?: () => Pick<ColdStartReport, "engineCacheRestoreMs" | "engineCacheHit">;
  /**
   * The boot phase and its progress while the engine starts (weights bytes fetched), put in the
   * heartbeat for a queued job's `waitReason: starting`. Default: `engine_load` for the whole start.
   */
  bootPhase?: () => { phase: BootPhase; progress?: PhaseProgress } | undefined;
  /** HEARTH_PROVISION_MS: the scheduler's part of this worker's cold start (a span, ms), logged with the rest. */
  provisionMs?: number;
  /** HEARTH_SPEC_HASH: the engine spec hash this worker runs, in its heartbeat. */
  specHash?: string;
  /** Our commands and BullMQ's (BullMQ duplicates it for its blocking reads). Not closed here. */
  redis: Redis;
  /** A connection of its own for the control channel; unsubscribed on drain, not closed here. */
  subscriber: Redis;
  onPhase?: (phase: RuntimePhase, detail?: Record<string, unknown>) => void;
  /** Errors that do not stop the worker (Redis hiccups, a failed heartbeat); default stderr. */
  onError?: (err: unknown, context: string) => void;
  /** The worker's log, for the lines about each job (see JobProcessorOptions.log). Default none. */
  log?: Log;
  /** Exports job spans when tracing is on. */
  tracer?: Tracer;
  /**
   * Where jobs' external guards may be (HEARTH_EGRESS_ALLOWLIST, HEARTH_EGRESS_ALLOW_HTTP of the
   * worker). Default: https:// to public addresses only.
   */
  guardEgress?: UrlPolicy;
  now?: () => number;
}
