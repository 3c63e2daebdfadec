import type { Redis } from "ioredis";
import type { RedisKeys } from "../core/queue/keys.ts";
import { HEARTH_EVENTS, hearthEntry, type WorkerPayload } from "../core/log/log-entry.ts";
import type { WorkerHeartbeat } from "../core/contracts/worker-state.ts";

/**
 * --[[ Ends a worker's presence in Redis and logs its exit, together.
 *   KEYS[1] heartbeat hash, KEYS[2] last-seen hash, KEYS[3] the endpoint's log stream
 *   ARGV[1] worker id, ARGV[2] event name, ARGV[3] the `exited` entry's payload (JSON)
 *   Returns: 1
 * ]]
 */
const EXITED_LUA = `
redis.call("HDEL", KEYS[1], ARGV[1])
redis.call("HDEL", KEYS[2], ARGV[1])
redis.call("XADD", KEYS[3], "*", "event", ARGV[2], "d", ARGV[3])
return 1
`;

/**
 * --[[ Declares a silent worker lost, once: only if its heartbeat entry is still there (a worker
 *   that exits cleanly removes it in the same script as its own `exited` entry), unless `force`
 *   (a session left open with no trace in Redis at all). The session ends at the worker's last
 *   heartbeat as Redis received it.
 *   KEYS[1] heartbeat hash, KEYS[2] last-seen hash, KEYS[3] the endpoint's log stream
 *   ARGV[1] worker id, ARGV[2] event name, ARGV[3] reason, ARGV[4] "force" or ""
 *   Returns: 1 when logged lost, 0 when the worker was already gone
 * ]]
 */
const LOST_LUA = `
if redis.call("HDEL", KEYS[1], ARGV[1]) == 0 and ARGV[4] ~= "force" then return 0 end
local seen = redis.call("HGET", KEYS[2], ARGV[1])
redis.call("HDEL", KEYS[2], ARGV[1])
local payload = {workerId = ARGV[1], state = "lost", reason = ARGV[3]}
if seen then payload["at"] = tonumber(seen) end
redis.call("XADD", KEYS[3], "*", "event", ARGV[2], "d", cjson.encode(payload))
return 1
`;

type WorkerLogRedis = Redis & {
  hearthWorkerExited(hb: string, seen: string, log: string, workerId: string, event: string, payload: string): Promise<number>;
  hearthWorkerLost(hb: string, seen: string, log: string, workerId: string, event: string, reason: string, force: string): Promise<number>;
};

/**
 * The scheduler's side of the worker log: `requested` (with the stand-in heartbeat, in one MULTI),
 * `draining` when it asks a worker to stop, `exited` with the exit code when the provider reports the
 * process gone, and `lost` for a worker that went silent without exiting through us.
 */
export class WorkerLog {
  private readonly redis: WorkerLogRedis;

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    this.redis = redis as WorkerLogRedis;
    if (!("hearthWorkerExited" in redis)) {
      redis.defineCommand("hearthWorkerExited", { numberOfKeys: 3, lua: EXITED_LUA });
      redis.defineCommand("hearthWorkerLost", { numberOfKeys: 3, lua: LOST_LUA });
    }
  }

  /** Logs the start of a worker session and writes its `requested` stand-in heartbeat, atomically. */
  async requested(endpointId: string, standIn: WorkerHeartbeat, session: { tenantId: string; provider: string; gpuType: string }): Promise<void> {
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
    const entry: WorkerPayload = { workerId, state: "exited", reason: detail.reason, ...(detail.exitCode !== undefined && { exitCode: detail.exitCode }) };
    await this.redis.hearthWorkerExited(this.keys.workers(endpointId), this.keys.workersSeen(endpointId), this.keys.log(endpointId), workerId, HEARTH_EVENTS.worker, JSON.stringify(entry));
  }

  /**
   * Returns true when this call logged the worker lost (false: it was already gone). `force` logs
   * it even without a heartbeat entry (a session the records show open that Redis knows nothing of).
   */
  async lost(endpointId: string, workerId: string, reason: string, options: { force?: boolean } = {}): Promise<boolean> {
    const r = await this.redis.hearthWorkerLost(
      this.keys.workers(endpointId),
      this.keys.workersSeen(endpointId),
      this.keys.log(endpointId),
      workerId,
      HEARTH_EVENTS.worker,
      reason,
      options.force ? "force" : "",
    );
    return r === 1;
  }

  /** True while the worker has a heartbeat entry (its own or the scheduler's stand-in). */
  async present(endpointId: string, workerId: string): Promise<boolean> {
    return (await this.redis.hexists(this.keys.workers(endpointId), workerId)) === 1;
  }
}
