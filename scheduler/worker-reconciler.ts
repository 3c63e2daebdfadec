import type { Redis } from "ioredis";
import type { Db } from "../core/db/client.ts";
import type { RedisKeys } from "../core/queue/keys.ts";
import { errorFields, type Log } from "../core/log/process-log.ts";
import { workerHeartbeat } from "../core/contracts/worker-state.ts";
import { loadOpenSessions } from "./endpoints.ts";
import type { Fleet } from "./fleet.ts";
import type { WorkerRedisUsers } from "./worker-redis-users.ts";

export interface WorkerReconcilerOptions {
  db: Db;
  redis: Redis;
  keys: RedisKeys;
  fleet: Fleet;
  /** A heartbeat older than this (ms) no longer keeps a foreign worker's Redis user. */
  staleHeartbeatMs: number;
  /** See SchedulerOptions.workerRedisUsers. Default: none, nothing to sweep. */
  workerRedisUsers?: WorkerRedisUsers;
  /** See SchedulerOptions.userSweepMs. Default 30_000. */
  userSweepMs?: number;
  now: () => number;
  log: Log;
}

/**
 * The leader's bookkeeping for workers whose end this scheduler never saw (a dead scheduler's):
 * their sessions are closed as lost and their Redis users removed; users Redis lost are restored.
 */
export class WorkerReconciler {
  private readonly keys: RedisKeys;
  private readonly fleet: Fleet;
  private readonly now: () => number;
  private readonly log: Log;
  /** When the worker users were last swept (ms); 0 makes a new leader's first tick sweep. */
  private usersSweptAt = 0;

  constructor(private readonly opts: WorkerReconcilerOptions) {
    this.keys = opts.keys;
    this.fleet = opts.fleet;
    this.now = opts.now;
    this.log = opts.log;
  }

  /** Makes the next `sweepWorkerUsers` sweep whatever the time, as a new leader's first tick must. */
  sweepUsersNext(): void {
    this.usersSweptAt = 0;
  }

  /**
   * Closes worker sessions a dead scheduler left open: a session the records show open, whose
   * worker no provider of ours runs and that has no heartbeat in Redis (so the observer will never
   * see it go stale), is logged lost. Sessions younger than a minute are left alone: the records
   * may simply not have caught up with their exit yet.
   */
  async reconcileSessions(): Promise<void> {
    try {
      const open = await loadOpenSessions(this.opts.db, this.now() - 60_000);
      const ours = new Set(this.fleet.held().map((w) => w.workerId));
      for (const s of open) {
        if (ours.has(s.id) || (await this.fleet.workerLog.present(s.endpointId, s.id))) continue;
        if (await this.fleet.workerLog.lost(s.endpointId, s.id, "session left open by a stopped scheduler", { force: true })) {
          this.log({ level: "warn", msg: "worker session reconciled as lost", endpointId: s.endpointId, workerId: s.id });
        }
        await this.opts.workerRedisUsers?.remove(s.endpointId, s.id);
      }
    } catch (err) {
      this.log({ level: "warn", msg: "session reconcile failed", ...errorFields(err) });
    }
  }

  /**
   * Every `userSweepMs` (and at once on leadership): removes Redis users of workers that are gone
   * without an exit this scheduler saw (a dead scheduler's workers, once they have drained) and
   * restores this scheduler's users that Redis lost. A foreign worker still beating keeps its user.
   */
  async sweepWorkerUsers(now: number): Promise<void> {
    const users = this.opts.workerRedisUsers;
    if (!users || now - this.usersSweptAt < (this.opts.userSweepMs ?? 30_000)) return;
    this.usersSweptAt = now;
    try {
      const { removed, restored } = await users.sweep(async (endpointId, workerId) => {
        const raw = await this.opts.redis.hget(this.keys.workers(endpointId), workerId);
        let at: number | undefined;
        try {
          at = raw === null ? undefined : workerHeartbeat.parse(JSON.parse(raw)).at;
        } catch {
          at = undefined; // unreadable: the observer removes the entry; the user goes with it
        }
        return at !== undefined && this.now() - at <= this.opts.staleHeartbeatMs;
      });
      if (removed.length > 0) this.log({ msg: "worker Redis users of gone workers removed", users: removed });
      if (restored.length > 0) this.log({ level: "warn", msg: "worker Redis users restored (Redis had lost them)", users: restored });
    } catch (err) {
      this.log({ level: "warn", msg: "worker Redis user sweep failed", ...errorFields(err) });
    }
  }
}
