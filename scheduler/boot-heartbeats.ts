import type { Redis } from "ioredis";
import type { WorkerHeartbeat } from "../core/contracts/worker-state.ts";
import type { RedisKeys } from "../core/queue/keys.ts";

/*
  Refreshes the scheduler's stand-in heartbeat of a worker only while the worker has not written its
  own: a worker's first beat must never be overwritten by an older "requested".

    Input:
      KEYS[1] heartbeat hash of the endpoint
      ARGV[1] worker id (the hash field)
      ARGV[2] the entry exactly as the scheduler last wrote it
      ARGV[3] the refreshed entry

    Output:
      1 - refreshed
      0 - the entry changed (the worker took over) or is gone: nothing done
*/
const REFRESH_LUA = `
if redis.call("HGET", KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
`;

type BootRedis = Redis & {
  hearthRefreshBootHeartbeat(key: string, field: string, expected: string, next: string): Promise<number>;
};

/**
 * The `requested` heartbeat the scheduler writes for a worker it has just started, so the API counts it
 * as initializing at once, and keeps fresh until the worker's own first beat (process start can take
 * longer than the API's staleness window, which would show the worker as unhealthy meanwhile).
 */
export class BootHeartbeats {
  private readonly redis: BootRedis;
  /** workerId → the entry as last written. */
  private readonly written = new Map<string, { endpointId: string; json: string }>();

  constructor(
    redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    this.redis = redis as BootRedis;
    if (!("hearthRefreshBootHeartbeat" in redis)) {
      redis.defineCommand("hearthRefreshBootHeartbeat", { numberOfKeys: 1, lua: REFRESH_LUA });
    }
  }

  /**
   * The stand-in to write before starting the worker (so its own first beat lands over it), kept
   * fresh by `refresh` from then on; the caller writes it (with the session's log entry).
   */
  standIn(endpointId: string, workerId: string, at: number): WorkerHeartbeat {
    const hb = standInOf(endpointId, workerId, at);
    this.written.set(workerId, { endpointId, json: JSON.stringify(hb) });
    return hb;
  }

  /** Re-dates every stand-in the workers have not replaced yet; forgets the rest. */
  async refresh(now: number): Promise<void> {
    const entries = [...this.written];
    if (entries.length === 0) return;
    const pipeline = this.redis.pipeline() as ReturnType<Redis["pipeline"]> & {
      hearthRefreshBootHeartbeat(key: string, field: string, expected: string, next: string): unknown;
    };
    const nextJson = new Map<string, string>();
    for (const [workerId, { endpointId, json }] of entries) {
      const next = JSON.stringify(standInOf(endpointId, workerId, now));
      nextJson.set(workerId, next);
      pipeline.hearthRefreshBootHeartbeat(this.keys.workers(endpointId), workerId, json, next);
    }
    const results = (await pipeline.exec()) ?? [];
    entries.forEach(([workerId, entry], i) => {
      const [err, replaced] = results[i] ?? [null, 0];
      if (err) return; // try again next time
      if (replaced === 1) entry.json = nextJson.get(workerId) ?? entry.json;
      else this.written.delete(workerId);
    });
  }

  forget(workerId: string): void {
    this.written.delete(workerId);
  }
}

function standInOf(endpointId: string, workerId: string, at: number): WorkerHeartbeat {
  return { id: workerId, endpointId, state: "requested", running: 0, concurrency: 1, idleSince: null, at };
}
