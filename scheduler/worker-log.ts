import type { Redis } from "ioredis";
import type { RedisKeys } from "../core/queue/keys.ts";
import { HEARTH_EVENTS, hearthEntry, type WorkerPayload } from "../core/log/log-entry.ts";
import type { WorkerHeartbeat } from "../core/contracts/worker-state.ts";
import { WorkerPresence } from "../core/log/worker-presence-scripts.ts";

/**
 * The scheduler's side of the worker log: `requested` (with the stand-in heartbeat, in one MULTI),
 * `draining` when it asks a worker to stop, `exited` with the exit code when the provider reports the
 * process gone, and `lost` for a worker that went silent without exiting through us.
 */
export class WorkerLog {
  private readonly presence: WorkerPresence;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    this.presence = new WorkerPresence(redis, keys);
  }

  /** Logs the start of a worker session and writes its `requested` stand-in heartbeat, atomically. */
  async requested(endpointId: string, standIn: WorkerHeartbeat, session: { tenantId: string; provider: string; gpuType: string; specHash?: string }): Promise<void> {
    const entry: WorkerPayload = { workerId: standIn.id, state: "requested", ...session };
    const results = await this.redis
      .multi()
      .hset(this.keys.workers(endpointId), standIn.id, JSON.stringify(standIn))
      .xadd(this.keys.log(endpointId), "*", ...hearthEntry(HEARTH_EVENTS.worker, entry))
      .exec();
    for (const [err] of results ?? []) if (err) throw err;
  }

  async draining(endpointId: string, workerId: string, reason: string): Promise<void> {
    const entry: WorkerPayload = { workerId, state: "draining", reason };
    await this.redis.xadd(this.keys.log(endpointId), "*", ...hearthEntry(HEARTH_EVENTS.worker, entry));
  }

  async exited(endpointId: string, workerId: string, detail: { exitCode?: number; reason: string }): Promise<void> {
    await this.presence.exited(endpointId, workerId, { ...detail, by: "scheduler" });
  }

  /** Returns true when this call logged the worker lost (see WorkerPresence.lost). */
  lost(endpointId: string, workerId: string, reason: string, options: { force?: boolean } = {}): Promise<boolean> {
    return this.presence.lost(endpointId, workerId, reason, options);
  }

  /** True while the worker has a heartbeat entry (its own or the scheduler's stand-in). */
  async present(endpointId: string, workerId: string): Promise<boolean> {
    return (await this.redis.hexists(this.keys.workers(endpointId), workerId)) === 1;
  }
}
