import type { Redis } from "ioredis";
import type { RedisKeys } from "../queue/keys.ts";
import { HEARTH_EVENTS, type WorkerPayload } from "./log-entry.ts";

/*
 * A worker's presence in Redis (its heartbeat, and the Redis time of its last beat) and its log
 * entries change together, in one script: the worker's own beats and exit, and the scheduler's
 * record of an exit or a loss, use the same scripts. One per operation, each documented as
 * BullMQ documents its own.
 */

/**
 * --[[ Writes a worker's heartbeat, dated on Redis' own clock, and logs its state when it changed.
 *   KEYS[1] heartbeat hash of the endpoint
 *   KEYS[2] last-seen hash of the endpoint (worker id → Redis ms)
 *   KEYS[3] the endpoint's log stream
 *   ARGV[1] worker id
 *   ARGV[2] heartbeat JSON
 *   ARGV[3] event name of worker entries
 *   ARGV[4] "" or the worker entry's payload (JSON), when the state changed since the last one logged
 *   Returns: the beat's time, ms on Redis' clock.
 * ]]
 */
const BEAT_LUA = `
local t = redis.call("TIME")
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
redis.call("HSET", KEYS[2], ARGV[1], ms)
if ARGV[4] ~= "" then
  redis.call("XADD", KEYS[3], "*", "event", ARGV[3], "d", ARGV[4])
end
return ms
`;

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

type PresenceRedis = Redis & {
  hearthBeat(hb: string, seen: string, log: string, workerId: string, json: string, event: string, entry: string): Promise<number>;
  hearthWorkerExited(hb: string, seen: string, log: string, workerId: string, event: string, payload: string): Promise<number>;
  hearthWorkerLost(hb: string, seen: string, log: string, workerId: string, event: string, reason: string, force: string): Promise<number>;
};

/** The presence scripts of one endpoint's workers, on a connection (defined once per connection). */
export class WorkerPresence {
  private readonly redis: PresenceRedis;

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    if (!("hearthBeat" in redis)) {
      redis.defineCommand("hearthBeat", { numberOfKeys: 3, lua: BEAT_LUA });
      redis.defineCommand("hearthWorkerExited", { numberOfKeys: 3, lua: EXITED_LUA });
      redis.defineCommand("hearthWorkerLost", { numberOfKeys: 3, lua: LOST_LUA });
    }
    this.redis = redis as PresenceRedis;
  }

  private presenceKeys(endpointId: string): [string, string, string] {
    return [this.keys.workers(endpointId), this.keys.workersSeen(endpointId), this.keys.log(endpointId)];
  }

  /** Writes a heartbeat; with `entry`, logs a state change in the same script. Returns the beat's Redis time. */
  beat(endpointId: string, workerId: string, heartbeatJson: string, entry: WorkerPayload | undefined): Promise<number> {
    return this.redis.hearthBeat(...this.presenceKeys(endpointId), workerId, heartbeatJson, HEARTH_EVENTS.worker, entry ? JSON.stringify(entry) : "");
  }

  /** Removes the worker's heartbeat and logs it `exited` (with an exit code where known). */
  async exited(endpointId: string, workerId: string, detail: { reason: string; exitCode?: number; by: "worker" | "scheduler"; coldStart?: WorkerPayload["coldStart"] }): Promise<void> {
    const entry: WorkerPayload = {
      workerId,
      state: "exited",
      reason: detail.reason,
      by: detail.by,
      ...(detail.exitCode !== undefined && { exitCode: detail.exitCode }),
      ...(detail.coldStart !== undefined && { coldStart: detail.coldStart }),
    };
    await this.redis.hearthWorkerExited(...this.presenceKeys(endpointId), workerId, HEARTH_EVENTS.worker, JSON.stringify(entry));
  }

  /**
   * Logs the worker lost at its last heartbeat; true when this call did (false: it was already
   * gone). `force` logs it even without a heartbeat entry (a session the records show open that
   * Redis knows nothing of).
   */
  async lost(endpointId: string, workerId: string, reason: string, options: { force?: boolean } = {}): Promise<boolean> {
    return (await this.redis.hearthWorkerLost(...this.presenceKeys(endpointId), workerId, HEARTH_EVENTS.worker, reason, options.force ? "force" : "")) === 1;
  }
}
