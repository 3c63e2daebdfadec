import { z } from "zod";

/**
 * A worker's lifecycle: booting → idle ⇄ running → draining → stopped (paused comes with snapshots).
 * `unhealthy` is reported by a worker whose engine cannot serve.
 */
export const workerState = z.enum(["booting", "idle", "running", "draining", "stopped", "unhealthy"]);
export type WorkerState = z.infer<typeof workerState>;

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
  /** ms epoch of this heartbeat. */
  at: z.number(),
});
export type WorkerHeartbeat = z.infer<typeof workerHeartbeat>;
