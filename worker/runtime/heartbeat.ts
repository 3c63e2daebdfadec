import type { Redis } from "ioredis";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { WorkerHeartbeat, WorkerState } from "../../core/contracts/worker-state.ts";
import { HEARTH_EVENTS, type WorkerPayload } from "../../core/log/log-entry.ts";

/** What the heartbeat reads from the runtime at the moment it writes. */
export interface HeartbeatSnapshot {
  state: WorkerState;
  running: number;
  concurrency: number;
  idleSince: number | null;
}

export interface HeartbeatOptions {
  redis: Redis;
  keys: RedisKeys;
  endpointId: string;
  workerId: string;
  /** Period of the unconditional write, ms; the scheduler treats a worker silent for a few periods as gone. */
  intervalMs: number;
  snapshot: () => HeartbeatSnapshot;
  /** State changes within this many ms share one write (`beatSoon`). Default 25. */
  coalesceMs?: number;
  /** A failed write is reported here and retried on the next beat; default logs to stderr. */
  onError?: (err: unknown) => void;
  now?: () => number;
}

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
 * --[[ Removes a worker's heartbeat and logs its end, together.
 *   KEYS[1] heartbeat hash, KEYS[2] last-seen hash, KEYS[3] log stream
 *   ARGV[1] worker id, ARGV[2] event name, ARGV[3] the worker entry's payload (JSON)
 *   Returns: 1
 * ]]
 */
const END_LUA = `
redis.call("HDEL", KEYS[1], ARGV[1])
redis.call("HDEL", KEYS[2], ARGV[1])
redis.call("XADD", KEYS[3], "*", "event", ARGV[2], "d", ARGV[3])
return 1
`;

type BeatRedis = Redis & {
  hearthBeat(hb: string, seen: string, log: string, workerId: string, json: string, event: string, entry: string): Promise<number>;
  hearthBeatEnd(hb: string, seen: string, log: string, workerId: string, event: string, entry: string): Promise<number>;
};

function withBeatScripts(redis: Redis): BeatRedis {
  if (!("hearthBeat" in redis)) {
    redis.defineCommand("hearthBeat", { numberOfKeys: 3, lua: BEAT_LUA });
    redis.defineCommand("hearthBeatEnd", { numberOfKeys: 3, lua: END_LUA });
  }
  return redis as BeatRedis;
}

/**
 * Keeps `HSET workers:{endpoint} {workerId} <heartbeat JSON>` fresh: on every `beat()` (the runtime
 * calls it on each state change) and every `intervalMs`. Each write also dates the beat on Redis'
 * clock (what a `lost` worker's session ends at) and, when the state changed since the last one
 * logged, appends the transition to the endpoint's log in the same script. Writes go out in call
 * order on one connection, so the hash never shows an older state after a newer one. `stop()`
 * removes the entry and logs the worker's exit.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private soon: NodeJS.Timeout | undefined;
  private logged: WorkerState | undefined;
  private readonly redis: BeatRedis;
  private readonly onError: (err: unknown) => void;
  private readonly now: () => number;

  constructor(private readonly options: HeartbeatOptions) {
    this.redis = withBeatScripts(options.redis);
    this.onError = options.onError ?? ((err) => console.error("heartbeat write failed:", err));
    this.now = options.now ?? Date.now;
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.beat(), this.options.intervalMs);
    this.timer.unref();
  }

  /**
   * Writes the current snapshot shortly, once for all changes until then: a short job's
   * idle → running → idle costs one write instead of two Redis commands on the job's path (and the
   * log sees the state the worker settled in, not every flip).
   */
  beatSoon(): void {
    if (this.soon || this.stopped) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      void this.beat();
    }, this.options.coalesceMs ?? 25);
  }

  /** Writes the current snapshot now. Never rejects. */
  async beat(): Promise<void> {
    if (this.stopped) return;
    const { keys, endpointId, workerId } = this.options;
    const s = this.options.snapshot();
    const hb: WorkerHeartbeat = {
      id: workerId,
      endpointId,
      state: s.state,
      running: s.running,
      concurrency: s.concurrency,
      idleSince: s.idleSince,
      at: this.now(),
    };
    const entry: WorkerPayload | undefined = s.state === this.logged ? undefined : { workerId, state: s.state };
    try {
      await this.redis.hearthBeat(keys.workers(endpointId), keys.workersSeen(endpointId), keys.log(endpointId), workerId, JSON.stringify(hb), HEARTH_EVENTS.worker, entry ? JSON.stringify(entry) : "");
      if (entry) this.logged = s.state;
    } catch (err) {
      this.onError(err);
    }
  }

  /** Stops beating, removes this worker from the hash and logs it `exited` with `reason`. */
  async stop(reason: string): Promise<void> {
    this.stopped = true;
    if (this.soon) clearTimeout(this.soon);
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const { keys, endpointId, workerId } = this.options;
    const entry: WorkerPayload = { workerId, state: "exited", reason };
    try {
      await this.redis.hearthBeatEnd(keys.workers(endpointId), keys.workersSeen(endpointId), keys.log(endpointId), workerId, HEARTH_EVENTS.worker, JSON.stringify(entry));
    } catch (err) {
      this.onError(err);
    }
  }
}
