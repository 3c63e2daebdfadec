import { z } from "zod";
import { bootPhase, phaseProgress } from "../policy/wait-reason.ts";

/**
 * The one worker-state vocabulary: the event log, heartbeats, `/health`, the API and billing all
 * speak it.
 *
 *   requested ─► initializing ─► idle ⇄ running ─► draining ─► exited
 *                     │           │  ▲    │
 *                     ▼           ▼  │    ▼
 *                   (exited)     unhealthy          idle ⇄ paused ─► draining
 *
 * `requested`: the scheduler asked its provider for the worker (the billed session starts here);
 * `initializing`: its process runs and its engine is loading; `idle`/`running`: ready, without or
 * with jobs in flight; `unhealthy`: its engine fails its health check (it takes no jobs);
 * `paused`: in the snapshot pool (its process group stopped, its model resident; silent, not hung,
 * not billed); `draining`: asked to stop, finishing its jobs; `exited`: its process ended (with a reason and an
 * exit code where known); `lost`: it died without a word, dated by its last heartbeat received.
 */
export const workerState = z.enum(["requested", "initializing", "idle", "running", "paused", "unhealthy", "draining", "exited", "lost"]);
export type WorkerState = z.infer<typeof workerState>;

/** States after which a worker session is closed. */
export const FINAL_WORKER_STATES: ReadonlySet<WorkerState> = new Set(["exited", "lost"]);

/** Where a worker serves its `/metrics` (port in its heartbeat's `metricsPort`): loopback, on the provider's host. */
export const WORKER_METRICS_HOST = "127.0.0.1";

/** What a worker writes to Redis on every change of state and on every heartbeat. */
export const workerHeartbeat = z.object({
  id: z.string(),
  endpointId: z.string(),
  state: workerState,
  /** Jobs in flight now. */
  running: z.number().int().min(0),
  concurrency: z.number().int().min(1),
  /** ms epoch when the worker last became idle; null while it has work or is booting. */
  idleSince: z.number().nullable(),
  /** ms epoch of this heartbeat (the writer's clock: for staleness on that host, never for billing). */
  at: z.number(),
  /**
   * The worker's process id on its host, for operators (and tests) looking for it: a prestarted
   * worker's `/proc/<pid>/environ` shows the environment it booted with, not its worker id.
   */
  pid: z.number().int().min(1).optional().catch(undefined),
  /**
   * The loopback port the worker serves its `/metrics` on (HEARTH_WORKER_METRICS=on); absent when it
   * serves none. The scheduler lists it in its Prometheus service discovery file. A malformed one
   * reads as absent: it must not make the rest of the heartbeat (the worker's state) unreadable.
   */
  metricsPort: z.number().int().min(1).max(65535).optional().catch(undefined),
  /**
   * While booting: the phase it is in and that phase's progress (weights bytes fetched), for a
   * queued job's `waitReason: starting`. Malformed reads as absent, like `metricsPort`.
   */
  phase: bootPhase.optional().catch(undefined),
  progress: phaseProgress.optional().catch(undefined),
  /** The engine spec hash it runs (core/policy/rolling.ts): a worker of an older one is replaced. */
  specHash: z.string().max(64).optional().catch(undefined),
});
export type WorkerHeartbeat = z.infer<typeof workerHeartbeat>;
