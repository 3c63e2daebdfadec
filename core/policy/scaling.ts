import type { ScalerType } from "../contracts/endpoint.ts";
import type { WorkerState } from "../contracts/worker-state.ts";

/** The scaling-relevant settings of an endpoint (RunPod names; idleTimeout in seconds). */
export interface ScalingConfig {
  workersMin: number;
  workersMax: number;
  idleTimeout: number;
  scalerType: ScalerType;
  scalerValue: number;
  /**
   * Warm pool: idle booted or paused workers kept ready besides the demand (see core/policy/warm-pool.ts
   * for sizing it from recent arrivals). Default 0.
   */
  workersStandby?: number;
  /**
   * Scale-down pauses instead of stopping (snapshot pool: the endpoint's `flashboot`, on a provider
   * that can pause). Paused workers then count towards the warm pool. Default false.
   */
  pausesIdle?: boolean;
}

/** One live worker as the scheduler sees it. */
export interface ObservedWorker {
  id: string;
  state: WorkerState;
  /** ms epoch it became idle; null when it is not idle. */
  idleSince: number | null;
  /** ms epoch the provider started it. */
  startedAt: number;
  /** Its process runs but its heartbeat stopped: hung. It is no capacity and is replaced. */
  heartbeatLost?: boolean;
  /** A paused worker's pause time (ms epoch): the most recently paused resumes first. */
  pausedAt?: number;
}

/** A snapshot of one endpoint's demand and fleet. */
export interface EndpointSnapshot {
  /** Normal-priority jobs waiting. */
  queued: number;
  /** Low-priority jobs waiting: they never cause a scale-up. */
  queuedLowPriority: number;
  inProgress: number;
  /** ms epoch the oldest normal-priority waiting job was submitted; null when none waits. */
  oldestQueuedAt: number | null;
  workers: ObservedWorker[];
}

export interface ScalingDecision {
  /** Workers the endpoint should have after this step. */
  desired: number;
  /** How many new workers to start now (besides the resumes). */
  start: number;
  /** Paused workers to resume now, before any new one starts: most recently paused first. */
  resume: string[];
  /** Which idle workers to stop (or, with `pausesIdle`, pause) now (longest idle first). */
  stop: string[];
  /** Hung workers to kill; replacements for them are counted in `start`. */
  replace: string[];
  /** Why, for logs and tests. */
  reason: string;
}

const clamp = (n: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, n));

/**
 * Pure scaling step for one endpoint at `now` (ms epoch).
 *
 * - REQUEST_COUNT: desired = ceil((queued + inProgress) / scalerValue) (RunPod's formula); the
 *   queued term counts normal-priority jobs only.
 * - QUEUE_DELAY: with work and no worker, one worker (the first request always adds one; "work"
 *   includes jobs left active by a worker that died, which only a live worker's stalled-job check
 *   hands back to the queue); when the oldest queued job has waited longer than scalerValue seconds
 *   and no worker is still booting, one more than now; otherwise keep the current count.
 * Both are clamped to [workersMin, workersMax]. Scale-down only stops workers idle for at least
 * idleTimeout seconds, never below the larger of workersMin and the demand-based target, so a
 * worker that has work is never stopped by the scheduler. A hung worker (`heartbeatLost`) is no
 * capacity: it is listed in `replace`, and the count above starts its replacement.
 *
 * Paused workers are no capacity either, but the first to serve demand: they are resumed before any
 * new worker starts. `workersStandby` (clamped to what workersMax leaves) is kept on top of the
 * demand: as idle workers that are never stopped for idleness, or with `pausesIdle`, as paused
 * workers (idle ones are paused at the idle timeout, and new ones start only to fill the pool).
 */
export function decideScaling(snapshot: EndpointSnapshot, config: ScalingConfig, now: number): ScalingDecision {
  const replace = snapshot.workers.filter((w) => w.heartbeatLost && w.state !== "exited" && w.state !== "lost" && w.state !== "draining").map((w) => w.id);
  const live = snapshot.workers.filter((w) => w.state !== "exited" && w.state !== "lost" && w.state !== "draining" && w.state !== "paused" && !w.heartbeatLost);
  const paused = snapshot.workers.filter((w) => w.state === "paused" && !w.heartbeatLost).sort((a, b) => (b.pausedAt ?? 0) - (a.pausedAt ?? 0));
  const current = live.length;
  const booting = live.filter((w) => w.state === "initializing" || w.state === "requested").length;

  let target: number;
  let reason: string;
  if (config.scalerType === "REQUEST_COUNT") {
    target = Math.ceil((snapshot.queued + snapshot.inProgress) / config.scalerValue);
    reason = `request-count ceil((${snapshot.queued}+${snapshot.inProgress})/${config.scalerValue})=${target}`;
  } else {
    const waitedMs = snapshot.oldestQueuedAt === null ? 0 : now - snapshot.oldestQueuedAt;
    if (snapshot.queued + snapshot.inProgress > 0 && current === 0) {
      target = 1;
      reason = "queue-delay: work and no worker";
    } else if (snapshot.queued > 0 && waitedMs > config.scalerValue * 1000 && booting === 0) {
      target = current + 1;
      reason = `queue-delay: oldest waited ${waitedMs}ms > ${config.scalerValue}s`;
    } else {
      // Keep what is busy; idle workers beyond this are left to the idle timeout.
      target = Math.min(current, snapshot.inProgress + snapshot.queued);
      reason = "queue-delay: steady";
    }
  }

  const desired = clamp(target, config.workersMin, config.workersMax);
  const standby = clamp(config.workersStandby ?? 0, 0, Math.max(0, config.workersMax - desired));
  const pool = config.pausesIdle ? Math.max(0, standby - paused.length) : standby;
  const wanted = desired + pool;
  if (wanted > current) {
    const need = wanted - current;
    // Demand is served from the paused pool first (a resume takes ms, a start seconds); the pool is refilled by starts.
    const resume = paused.slice(0, clamp(desired - current, 0, need)).map((w) => w.id);
    const start = need - resume.length;
    const parts = [resume.length > 0 && `resume ${resume.length}`, start > 0 && `start ${start}`, pool > 0 && `standby ${pool}`].filter(Boolean).join(", ");
    return { desired: wanted, start, resume, stop: [], replace, reason: `${reason}; ${parts}` };
  }

  // Never go below desired (and an idle warm pool); stop only workers idle past the timeout, longest idle first.
  const floor = Math.max(desired, config.workersMin) + (config.pausesIdle ? 0 : standby);
  const removable = current - floor;
  const idleLongEnough = live
    .filter((w) => w.state === "idle" && w.idleSince !== null && now - w.idleSince >= config.idleTimeout * 1000)
    .sort((a, b) => (a.idleSince ?? 0) - (b.idleSince ?? 0));
  const stop = removable > 0 ? idleLongEnough.slice(0, removable).map((w) => w.id) : [];
  return {
    desired: current - stop.length,
    start: 0,
    resume: [],
    stop,
    replace,
    reason: stop.length > 0 ? `${reason}; stop ${stop.length} idle past ${config.idleTimeout}s` : reason,
  };
}
