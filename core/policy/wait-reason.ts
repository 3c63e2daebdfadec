import { z } from "zod";
import type { CapacityReport } from "./capacity.ts";
import type { BreakerState } from "./start-breaker.ts";
import type { WorkerHeartbeat } from "../contracts/worker-state.ts";

/**
 * Why a queued job (or an endpoint's queue) waits, so a capacity wait is never mistaken for a crash
 * loop. Extends the capacity gate's reasons (core/policy/capacity.ts: `no_capacity`, `quota`,
 * `billing`) with what the workers themselves say: `starting` (a worker boots; its phase and
 * progress in `waitDetail`), `resuming` (a paused worker is brought back) and `crash_loop` (starts
 * keep failing; the last start error in `waitDetail`).
 */
export const JOB_WAIT_REASONS = ["starting", "resuming", "no_capacity", "quota", "crash_loop", "billing"] as const;
export const jobWaitReason = z.enum(JOB_WAIT_REASONS);
export type JobWaitReason = z.infer<typeof jobWaitReason>;

/** A job that has waited this long without a ready worker carries a reason (ms). */
export const WAIT_REASON_AFTER_MS = 5000;

/** Boot phases a starting worker reports in its heartbeat (`provision` is the scheduler's stand-in). */
export const BOOT_PHASES = ["provision", "process_start", "weights_fetch", "engine_load"] as const;
export const bootPhase = z.enum(BOOT_PHASES);
export type BootPhase = z.infer<typeof bootPhase>;

/** Progress of a phase that has some: bytes of weights fetched so far, of how many when known. */
export const phaseProgress = z.object({ bytes: z.number().int().min(0), totalBytes: z.number().int().min(0).optional() });
export type PhaseProgress = z.infer<typeof phaseProgress>;

export const waitDetail = z
  .object({
    /** `starting`: the phase of the furthest worker along, and its progress where it reports one. */
    phase: z.union([bootPhase, z.literal("queued")]).optional(),
    progress: phaseProgress.optional(),
    /** `crash_loop`: the last start error and how many starts failed in a row; `open` once jobs fail instead of waiting. */
    error: z.string().optional(),
    failedStarts: z.number().int().optional(),
    open: z.boolean().optional(),
    /** `no_capacity`, `quota`, `billing`: starts held back. */
    throttled: z.number().int().optional(),
  })
  .meta({ id: "WaitDetail" });
export type WaitDetail = z.infer<typeof waitDetail>;

export interface WaitInput {
  /** ms the job (or the queue's oldest job) has waited, on one clock. */
  waitedMs: number;
  /** The endpoint's workers as their heartbeats say (stale ones already left out). */
  workers: readonly Pick<WorkerHeartbeat, "state" | "phase" | "progress">[];
  /** What the scheduler holds back (its `/health` report), if anything. */
  capacity?: CapacityReport;
  /** The endpoint's start breaker for its current revision. */
  breaker?: Pick<BreakerState, "failedStarts" | "lastError" | "openedAt">;
}

export interface WaitExplanation {
  waitReason: JobWaitReason;
  waitDetail: WaitDetail;
}

const PHASE_ORDER: Record<BootPhase, number> = { provision: 0, process_start: 1, weights_fetch: 2, engine_load: 3 };

/**
 * The reason, or undefined when the job has waited `WAIT_REASON_AFTER_MS` or less, or a ready worker
 * exists (it waits for a free slot, which is no start problem). An open breaker is named first, even
 * beside ready workers of nobody: nothing will start. Billing is named before the workers (no new one
 * starts); a paused worker coming back before a cold one booting; failed starts before a booting
 * worker (the booting one is likely to fail the same way); the capacity gate after both.
 */
export function explainWait(s: WaitInput): WaitExplanation | undefined {
  const b = s.breaker;
  if (b && b.openedAt !== null) return crashLoop(b, true);
  if (s.waitedMs <= WAIT_REASON_AFTER_MS) return undefined;
  if (s.workers.some((w) => w.state === "idle" || w.state === "running")) return undefined;
  if (s.capacity?.waitReason === "billing") return { waitReason: "billing", waitDetail: { throttled: s.capacity.throttled } };
  if (s.workers.some((w) => w.state === "paused")) return { waitReason: "resuming", waitDetail: {} };
  if (b && b.failedStarts > 0) return crashLoop(b, false);
  const booting = s.workers.filter((w) => w.state === "requested" || w.state === "initializing");
  if (booting.length > 0) {
    const furthest = booting.reduce((a, w) => (PHASE_ORDER[phaseOf(w)] > PHASE_ORDER[phaseOf(a)] ? w : a));
    return { waitReason: "starting", waitDetail: { phase: phaseOf(furthest), ...(furthest.progress && { progress: furthest.progress }) } };
  }
  if (s.capacity) return { waitReason: s.capacity.waitReason, waitDetail: { throttled: s.capacity.throttled } };
  // Nothing asked for yet: the scheduler's next step (or its restart backoff) will start one.
  return { waitReason: "starting", waitDetail: { phase: "queued" } };
}

function phaseOf(w: Pick<WorkerHeartbeat, "state" | "phase">): BootPhase {
  return w.phase ?? (w.state === "requested" ? "provision" : "process_start");
}

function crashLoop(b: NonNullable<WaitInput["breaker"]>, open: boolean): WaitExplanation {
  return { waitReason: "crash_loop", waitDetail: { ...(b.lastError !== null && { error: b.lastError }), failedStarts: b.failedStarts, open } };
}
