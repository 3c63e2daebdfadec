/**
 * How long a finished job's result stays readable through `/status` (RunPod: 30 min after a `/run`,
 * 1 min after a `/runsync`, up to 5 min with `wait`). After it `/status` is 404; the durable record
 * (`GET /api/v1/jobs/:id`) stays.
 */
export interface ResultRetention {
  /** HEARTH_RETENTION_ASYNC_S, in ms. */
  asyncMs: number;
  /** HEARTH_RETENTION_SYNC_S, in ms. */
  syncMs: number;
}

export const DEFAULT_RETENTION: ResultRetention = { asyncMs: 30 * 60_000, syncMs: 60_000 };

/** A `/runsync` result when the caller gave `wait`: the sync retention, or that wait (up to 5 min) when longer. */
export function syncRetentionMs(retention: ResultRetention, waitMs: number): number {
  return Math.max(retention.syncMs, Math.min(5 * 60_000, waitMs));
}
