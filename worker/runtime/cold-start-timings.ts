import { performance } from "node:perf_hooks";
import type { ColdStartReport } from "../../core/log/log-entry.ts";
import type { BootPhase, PhaseProgress } from "../../core/policy/wait-reason.ts";
import type { TransitionReport } from "./heartbeat.ts";
import type { WorkerRuntimeOptions } from "./worker-runtime-options.ts";

/** The largest `weightsFetchMs` a worker log entry may carry (a week). */
const MAX_WEIGHTS_FETCH_MS = 7 * 86_400_000;

/** The runtime's options the cold start is read from, each read when it is reported. */
export type ColdStartSources = Pick<WorkerRuntimeOptions, "bootOrigin" | "provisionMs" | "weightsFetchMs" | "weightsCacheHit" | "engineCacheReport" | "bootPhase">;

/**
 * The worker's cold start: its boot phase while the engine starts (for the heartbeat) and the
 * phases' lengths, handed to `attach` (the heartbeat's next transition) as the worker leaves boot
 * and as its first job finishes.
 */
export class ColdStartTimings {
  /** Boot phases, each on this process's monotonic clock (performance.now: ms since the process started). */
  private bootPhase: BootPhase = "process_start";
  private readonly processStartMs: number;
  private engineStartMs: number | undefined;
  private readyAt: number | undefined;
  private firstJobReported = false;

  constructor(
    private readonly options: ColdStartSources,
    private readonly attach: (report: TransitionReport) => void,
  ) {
    this.processStartMs = performance.now() - (options.bootOrigin ?? 0);
  }

  /** The engine has begun to load. */
  engineLoading(): void {
    this.bootPhase = "engine_load";
  }

  /** The engine has started; `from` is when its start began (`performance.now()`). */
  engineStarted(from: number): void {
    this.engineStartMs = performance.now() - from;
  }

  /** The worker takes jobs from now on. */
  ready(): void {
    this.readyAt = performance.now();
  }

  /** The boot phase for the heartbeat: the engine's own report where it gives one. */
  phaseNow(): { phase: BootPhase; progress?: PhaseProgress } {
    return (this.bootPhase === "engine_load" ? this.options.bootPhase?.() : undefined) ?? { phase: this.bootPhase };
  }

  /** Hands the weights-fetch length, once known, to the heartbeat for the next transition it logs. */
  reportWeightsFetch(): void {
    const ms = this.options.weightsFetchMs?.();
    if (ms === undefined || !Number.isFinite(ms)) return;
    // Within what the log's schema accepts (core/log/log-entry.ts): an entry it refuses would be set aside whole.
    this.attach({ weightsFetchMs: Math.min(Math.max(0, Math.round(ms)), MAX_WEIGHTS_FETCH_MS) });
  }

  /** The cold start's phases, for the first entry out of boot (core/log/log-entry.ts `coldStart`). */
  reportColdStart(): void {
    const weights = this.options.weightsFetchMs?.();
    const cacheHit = this.options.weightsCacheHit?.();
    const engineCache = this.options.engineCacheReport?.() ?? {};
    const report: ColdStartReport = {
      kind: cacheHit === true ? "cache-warm" : "cold",
      processStartMs: clampMs(this.processStartMs),
      ...(this.options.bootOrigin !== undefined && this.options.bootOrigin > 0 && { prestarted: true }),
      ...(this.options.provisionMs !== undefined && { provisionMs: clampMs(this.options.provisionMs) }),
      ...(weights !== undefined && Number.isFinite(weights) && { weightsFetchMs: clampMs(weights) }),
      ...(cacheHit !== undefined && { cacheHit }),
      ...(engineCache.engineCacheRestoreMs !== undefined && { engineCacheRestoreMs: clampMs(engineCache.engineCacheRestoreMs) }),
      ...(engineCache.engineCacheHit !== undefined && { engineCacheHit: engineCache.engineCacheHit }),
      ...(this.engineStartMs !== undefined && { engineLoadMs: clampMs(this.engineStartMs - (weights ?? 0) - (engineCache.engineCacheRestoreMs ?? 0)) }),
    };
    this.attach({ coldStart: report });
  }

  /** A job finished: the first one after `ready()` reports how long it took to get there. */
  jobFinished(): void {
    if (!this.firstJobReported && this.readyAt !== undefined) {
      // Ready → first job finished, logged on the transition that follows.
      this.firstJobReported = true;
      this.attach({ coldStart: { firstJobMs: clampMs(performance.now() - this.readyAt) } });
    }
  }
}

/** A span as the log's schema takes it: whole ms, 0 to a week. */
function clampMs(ms: number): number {
  return Math.min(Math.max(0, Math.round(ms)), MAX_WEIGHTS_FETCH_MS);
}
