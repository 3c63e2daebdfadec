import { randomBytes } from "node:crypto";
import { ReplyError, type Redis } from "ioredis";
import type { RedisKeys } from "../core/queue/keys.ts";
import { errorFields, type Log } from "../core/log/process-log.ts";
import { parseWorkerUserName, prefixTag, workerAclRules, workerRedisUrl, workerUserName } from "../core/redis/worker-acl.ts";

export interface WorkerRedisUsersOptions {
  /** The scheduler's connection; its user needs `+acl|setuser +acl|deluser +acl|users`. Not closed here. */
  redis: Redis;
  /** The scheduler's Redis URL: workers' URLs keep its host, port, TLS and database, with their own user. */
  redisUrl: string;
  keys: RedisKeys;
  /** HEARTH_WORKER_REDIS_ACL. Off: every worker gets `redisUrl` itself, and no ACL command is sent. */
  enabled: boolean;
  log: Log;
}

export interface SweepResult {
  /** Users of workers gone without this scheduler seeing them go (a previous scheduler's, a missed exit). */
  removed: string[];
  /** Users of this scheduler's running workers that Redis had lost (a restart: ACL SETUSER is not in the AOF). */
  restored: string[];
}

/**
 * One Redis ACL user per worker (see core/redis/worker-acl.ts for its name and rules): created with a
 * random password before the worker starts, deleted when its session ends (ACL DELUSER also closes
 * the connections it authenticated). Users are in memory only in Redis, so after a reconnect (a Redis
 * restart) this scheduler's users are set again; `sweep` removes users whose workers are gone and
 * restores any still missing.
 *
 * Fails open: where Redis has no ACL (before 6) or refuses this scheduler's user ACL SETUSER, it
 * warns once and workers get the scheduler's own credential, as with the option off. Anything else
 * (Redis unreachable) rejects, and the worker is not started.
 */
export class WorkerRedisUsers {
  /** Users this scheduler created and has not deleted: name → what re-creating it needs. */
  private readonly live = new Map<string, { endpointId: string; password: string }>();
  private readonly tag: string;
  private refused: string | undefined;
  private sweepRefused = false;
  /** The connection's first `ready` is its connect, not a reconnect: nothing to restore then. */
  private connected: boolean;
  private readonly onReady = () => {
    if (this.connected) void this.restoreAll();
    this.connected = true;
  };

  constructor(private readonly opts: WorkerRedisUsersOptions) {
    this.tag = prefixTag(opts.keys.prefix);
    this.connected = opts.redis.status === "ready";
    if (opts.enabled) opts.redis.on("ready", this.onReady);
  }

  /** True while workers get users of their own (on, and not refused by Redis). */
  get active(): boolean {
    return this.opts.enabled && this.refused === undefined;
  }

  /** Creates the worker's user; resolves with the REDIS_URL to hand the worker. */
  async create(endpointId: string, workerId: string): Promise<string> {
    if (!this.active) return this.opts.redisUrl;
    const name = workerUserName(this.opts.keys.prefix, endpointId, workerId);
    const password = randomBytes(32).toString("hex");
    this.live.set(name, { endpointId, password });
    try {
      await this.setUser(name, endpointId, password);
    } catch (err) {
      this.live.delete(name);
      if (!(err instanceof ReplyError)) throw err;
      this.refuse(err);
      return this.opts.redisUrl;
    }
    return workerRedisUrl(this.opts.redisUrl, name, password);
  }

  /** Deletes the worker's user (and so its connections); a no-op for a user that is not there. */
  async remove(endpointId: string, workerId: string): Promise<void> {
    if (!this.opts.enabled) return;
    const name = workerUserName(this.opts.keys.prefix, endpointId, workerId);
    this.live.delete(name);
    if (this.refused !== undefined) return;
    await this.opts.redis.call("ACL", "DELUSER", name);
  }

  /**
   * Deletes this installation's worker users that this scheduler did not create and whose worker
   * `isLive` says is gone, and re-creates this scheduler's users that Redis no longer has. Run by
   * a new leader (users of a scheduler that died with its workers) and periodically after.
   */
  async sweep(isLive: (endpointId: string, workerId: string) => Promise<boolean>): Promise<SweepResult> {
    const result: SweepResult = { removed: [], restored: [] };
    if (!this.active || this.sweepRefused) return result;
    let users: string[];
    try {
      users = (await this.opts.redis.call("ACL", "USERS")) as string[];
    } catch (err) {
      if (!(err instanceof ReplyError)) throw err;
      this.sweepRefused = true;
      this.opts.log({ level: "warn", msg: "worker Redis users of dead workers cannot be found and removed: ACL USERS refused; grant +acl|users", ...errorFields(err) });
      return result;
    }
    const present = new Set(users);
    for (const name of users) {
      const parsed = parseWorkerUserName(name);
      if (parsed === undefined || parsed.tag !== this.tag || this.live.has(name)) continue;
      if (await isLive(parsed.endpointId, parsed.workerId)) continue;
      await this.opts.redis.call("ACL", "DELUSER", name);
      result.removed.push(name);
    }
    for (const [name, user] of this.live) {
      if (present.has(name)) continue;
      await this.setUser(name, user.endpointId, user.password);
      result.restored.push(name);
    }
    return result;
  }

  /** Stops listening for reconnects. Users stay: their workers' exits remove them. */
  close(): void {
    this.opts.redis.off("ready", this.onReady);
  }

  private async setUser(name: string, endpointId: string, password: string): Promise<void> {
    await this.opts.redis.call("ACL", "SETUSER", name, ...workerAclRules(this.opts.keys, endpointId, password));
  }

  private async restoreAll(): Promise<void> {
    if (!this.active) return;
    for (const [name, user] of this.live) {
      try {
        await this.setUser(name, user.endpointId, user.password);
      } catch (err) {
        this.opts.log({ level: "warn", msg: "worker Redis user not restored after reconnect", user: name, ...errorFields(err) });
      }
    }
  }

  private refuse(err: unknown): void {
    this.refused = errorFields(err).error;
    this.opts.log({
      level: "warn",
      msg:
        "Redis refused ACL SETUSER: workers get the scheduler's own Redis credential, not one limited to their endpoint. " +
        "Use Redis 6.2+ and give the scheduler's user +acl|setuser +acl|deluser +acl|users, or set HEARTH_WORKER_REDIS_ACL=off to silence this",
      ...errorFields(err),
    });
  }
}
